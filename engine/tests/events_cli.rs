//! The `encode` and `decode` subcommands as a user runs them: real golden files, exit codes, and
//! one-line errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_midicopilot-engine"))
}

fn golden_midi() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/midi"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn stderr_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "stderr is not one line: {err:?}");
    err.trim_end().to_string()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("midicopilot-events-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn encode_prints_the_golden_text() {
    let mid = golden_midi().join("basic.mid");
    let out = run(&["encode", path_str(&mid)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = std::fs::read_to_string(golden_midi().join("basic.txt")).expect("basic.txt");
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn encode_writes_metadata_words_like_the_python_cli() {
    let mid = golden_midi().join("basic.mid");
    let out = run(&[
        "encode",
        path_str(&mid),
        "--genre",
        "hip hop",
        "--part",
        "piano",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("[GENRE_HIP_HOP] [PART_PIANO] 0+060g "),
        "{text}"
    );
}

#[test]
fn refused_files_give_one_line_and_exit_1() {
    for (name, keyword) in [
        ("empty", "empty"),
        ("smpte", "smpte"),
        ("truncated_track", "corrupt"),
    ] {
        let mid = golden_midi().join(format!("{name}.mid"));
        let out = run(&["encode", path_str(&mid)]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let line = stderr_line(&out);
        let prefix = format!("midicopilot-engine: {}: ", mid.display());
        assert!(line.starts_with(&prefix), "{line}");
        assert!(line.to_lowercase().contains(keyword), "{line}");
        assert!(out.stdout.is_empty());
    }
    // midly panics in debug builds on a division word 0x80xx: refused before midly sees it.
    let f = tmp("smpte-0x8000.mid");
    std::fs::write(
        &f,
        b"MThd\0\0\0\x06\0\0\0\x01\x80\x00MTrk\0\0\0\x04\0\xff\x2f\0",
    )
    .expect("write");
    let out = run(&["encode", path_str(&f)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("SMPTE"));
    let out = run(&["encode", "/nonexistent/file.mid"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("/nonexistent/file.mid: cannot read the file"));
}

#[test]
fn bad_arguments_give_one_line() {
    let mid = golden_midi().join("basic.mid");
    for args in [
        vec!["encode", path_str(&mid), "--tpq", "25"],
        vec!["encode", path_str(&mid), "--velocity-bins", "0"],
        vec!["encode"],
        vec!["frobnicate"],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        stderr_line(&out);
    }
}

#[test]
fn decode_then_encode_gives_the_text_back() {
    for name in [
        "basic",
        "sort_order",
        "time_words",
        "pedal",
        "zero_length_and_quantize",
    ] {
        let txt = golden_midi().join(format!("{name}.txt"));
        let out_mid = tmp(&format!("{name}.mid"));
        let out = run(&[
            "decode",
            path_str(&txt),
            "-o",
            path_str(&out_mid),
            "--bpm",
            "90",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let again = run(&["encode", path_str(&out_mid)]);
        assert!(again.status.success());
        let expected = std::fs::read_to_string(&txt).expect("txt");
        assert_eq!(String::from_utf8_lossy(&again.stdout), expected, "{name}");
        // The tempo event says 90 BPM: 666667 µs per quarter = 0x0A2C2B.
        let bytes = std::fs::read(&out_mid).expect("written");
        assert!(bytes
            .windows(6)
            .any(|w| w == [0xFF, 0x51, 0x03, 0x0A, 0x2C, 0x2B]));
    }
}

#[test]
fn decode_refuses_bad_text_with_the_word() {
    let txt = tmp("bad.txt");
    std::fs::write(&txt, "0+060a P_12 P_24 0-060\n").expect("write");
    let out = run(&["decode", path_str(&txt), "-o", path_str(&tmp("bad.mid"))]);
    assert_eq!(out.status.code(), Some(1));
    let line = stderr_line(&out);
    assert!(
        line.contains("word 2 `P_24`") && line.contains("canonical"),
        "{line}"
    );
}

#[test]
fn decode_closes_notes_still_sounding() {
    let txt = tmp("open.txt");
    std::fs::write(&txt, "0+060a P_24 1+062h P_12\n").expect("write");
    let mid = tmp("open.mid");
    assert!(run(&["decode", path_str(&txt), "-o", path_str(&mid)])
        .status
        .success());
    let out = run(&["encode", path_str(&mid)]);
    // Both notes close at the text's end, tick 36.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0+060a P_24 1+062h P_12 0-0601-062\n"
    );
}
