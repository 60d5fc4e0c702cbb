//! `midicopilot-engine render` as a user runs it: a real MIDI file in, a MIDI file out with the
//! human parts and the model's channel 0; reproducible for a seed on the virtual clock; one-line
//! errors.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use midicopilot_engine::events::{encode_midi_bytes, events_to_midi, LanguageParams, NoteEvent};
use midly::{MidiMessage, Smf, TrackEventKind};
use support::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_midicopilot-engine"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The first `ticks` of a real chorale's channels 1–15, written as a MIDI file.
fn short_input(dir: &Path, ticks: u64) -> (PathBuf, Vec<NoteEvent>) {
    let params = LanguageParams::default();
    let human = human_part(&music21_file("bach-bwv1.6.mid"), &params, ticks);
    let path = dir.join("in.mid");
    std::fs::write(&path, events_to_midi(&human, &params, 120.0)).expect("write input");
    (path, human)
}

fn render(bundle: &Path, input: &Path, out: &Path, extra: &[&str]) -> Output {
    bin()
        .args(["render", "--bundle", s(bundle), s(input), "-o", s(out)])
        .args(extra)
        .output()
        .expect("the binary runs")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn one_line_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "exit code");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "stderr is not one line: {err:?}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    err
}

/// Channel-0 notes of a MIDI file, checking that each note-on is closed by a note-off (or a
/// note-on of velocity 0) before the same pitch starts again and before the file ends.
fn channel0_notes(bytes: &[u8]) -> usize {
    let smf = Smf::parse(bytes).expect("a valid MIDI file");
    let mut notes = 0;
    for track in &smf.tracks {
        let mut sounding = [false; 128];
        for ev in track {
            if let TrackEventKind::Midi { channel, message } = ev.kind {
                if channel.as_int() != 0 {
                    continue;
                }
                match message {
                    MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                        let k = usize::from(key.as_int());
                        assert!(!sounding[k], "pitch {k} struck again while sounding");
                        sounding[k] = true;
                        notes += 1;
                    }
                    MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                        let k = usize::from(key.as_int());
                        assert!(sounding[k], "note-off of silent pitch {k}");
                        sounding[k] = false;
                    }
                    _ => {}
                }
            }
        }
        assert!(sounding.iter().all(|s| !s), "a channel-0 note is left open");
    }
    notes
}

#[test]
fn one_seed_renders_byte_identical_files_with_closed_channel0_notes() {
    let bundle = random_bundle(0);
    let dir = scratch("render-virtual");
    let (input, human) = short_input(&dir, 288);
    let (a, b, c) = (dir.join("a.mid"), dir.join("b.mid"), dir.join("c.mid"));
    let report = dir.join("report.json");
    // The input is laid out for the copilot already (channel 6): keep its channels.
    let keep = ["--channels", "keep", "--context", "96"];
    let args = [&keep[..], &["--seed", "7", "--report", s(&report)]].concat();
    ok(&render(&bundle, &input, &a, &args));
    ok(&render(
        &bundle,
        &input,
        &b,
        &[&keep[..], &["--seed", "7"]].concat(),
    ));
    ok(&render(
        &bundle,
        &input,
        &c,
        &[&keep[..], &["--seed", "8"]].concat(),
    ));
    let (a, b, c) = (
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        std::fs::read(c).unwrap(),
    );
    assert_eq!(a, b, "two runs with one seed differ");
    assert_ne!(a, c, "two seeds gave the same file");

    let notes = channel0_notes(&a);
    assert!(notes > 0, "the model played nothing");
    // The human part comes back as it went in.
    let params = LanguageParams::default();
    let back = encode_midi_bytes(&a, &params).expect("the output reads back");
    let back_human: Vec<NoteEvent> = back.iter().copied().filter(|e| e.channel != 0).collect();
    assert_eq!(back_human, human);

    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(rep["clock"], "virtual");
    assert_eq!(rep["events_in"].as_u64(), Some(human.len() as u64));
    assert_eq!(rep["model_notes"].as_u64(), Some(notes as u64));
    assert_eq!(rep["late"].as_u64(), Some(0));
    assert!(rep["tokens_generated"].as_u64().unwrap() > 0);
    assert!(rep["prefix_cuts"].as_u64().unwrap() > 0, "{rep}");
    assert!(rep["flushes"].as_u64().unwrap() > 0, "{rep}");
    assert!(rep["ms_per_token"].as_f64().unwrap() > 0.0);
}

#[test]
fn with_channels_keep_channel0_of_the_input_is_left_out() {
    let bundle = random_bundle(0);
    let dir = scratch("render-ch0");
    let params = LanguageParams::default();
    // Put a channel-0 note in the input: with `--channels keep` it must not come back (channel 0
    // is the model's), and stderr says so.
    let mut events = human_part(&music21_file("bach-bwv1.6.mid"), &params, 96);
    events.push(NoteEvent::on(0, 0, 100, 3));
    events.push(NoteEvent::off(90, 0, 100));
    events.sort();
    let input = dir.join("in.mid");
    std::fs::write(&input, events_to_midi(&events, &params, 120.0)).unwrap();
    let out = dir.join("out.mid");
    let run = render(
        &bundle,
        &input,
        &out,
        &[
            "--temperature",
            "0",
            "--max-polyphony",
            "2",
            "--channels",
            "keep",
        ],
    );
    ok(&run);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("1 notes on channel 0 left out"), "{err}");
    let back = encode_midi_bytes(&std::fs::read(&out).unwrap(), &params).unwrap();
    assert!(!back
        .iter()
        .any(|e| e.channel == 0 && e.pitch == 100 && e.tick == 0 && e.is_on()));
    let human = |evs: &[NoteEvent]| -> Vec<NoteEvent> {
        evs.iter().copied().filter(|e| e.channel != 0).collect()
    };
    assert_eq!(human(&back), human(&events));
}

/// Note-ons per channel of a MIDI file.
fn note_ons_by_channel(bytes: &[u8]) -> [usize; 16] {
    let smf = Smf::parse(bytes).expect("a MIDI file");
    let mut counts = [0; 16];
    for track in &smf.tracks {
        for ev in track {
            if let TrackEventKind::Midi {
                channel,
                message: MidiMessage::NoteOn { vel, .. },
            } = ev.kind
            {
                if vel.as_int() > 0 {
                    counts[usize::from(channel.as_int())] += 1;
                }
            }
        }
    }
    counts
}

#[test]
fn every_part_of_the_input_gets_a_human_channel() {
    // music21 writes a chorale as four tracks, every one on channel 0: by default each part
    // takes a channel of its own, 1–4, and nothing is lost.
    let bundle = random_bundle(0);
    let dir = scratch("render-parts");
    let input = music21_file("bach-bwv10.7.mid");
    let source = note_ons_by_channel(&std::fs::read(&input).unwrap());
    assert!(
        source[0] > 100 && source[1..].iter().all(|&n| n == 0),
        "{source:?}"
    );
    let (out, report) = (dir.join("out.mid"), dir.join("report.json"));
    let run = render(
        &bundle,
        &input,
        &out,
        &["--tail-ticks", "1", "--report", s(&report)],
    );
    ok(&run);
    assert!(
        run.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["channels"], "parts");
    assert_eq!(report["notes_left_out"], 0);
    let parts = report["parts"].as_array().unwrap();
    let moves: Vec<(u64, u64, u64)> = parts
        .iter()
        .map(|p| {
            (
                p["track"].as_u64().unwrap(),
                p["channel"].as_u64().unwrap(),
                p["to"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(moves, vec![(1, 0, 1), (2, 0, 2), (3, 0, 3), (4, 0, 4)]);
    let total: u64 = parts.iter().map(|p| p["notes"].as_u64().unwrap()).sum();
    assert_eq!(total as usize, source[0]);
    let back = note_ons_by_channel(&std::fs::read(&out).unwrap());
    for p in parts {
        let to = p["to"].as_u64().unwrap() as usize;
        assert_eq!(
            back[to] as u64,
            p["notes"].as_u64().unwrap(),
            "channel {to}"
        );
    }
    assert_eq!(report["events_in"].as_u64().unwrap(), 2 * total);
}

#[test]
fn the_wall_clock_runs_in_real_time_and_reports_lateness() {
    let bundle = random_bundle(0);
    let dir = scratch("render-wall");
    let (input, human) = short_input(&dir, 96);
    let out = dir.join("out.mid");
    let report = dir.join("report.json");
    let started = std::time::Instant::now();
    ok(&render(
        &bundle,
        &input,
        &out,
        &[
            "--clock",
            "wall",
            "--bpm",
            "240",
            "--tail-ticks",
            "24",
            "--report",
            s(&report),
        ],
    ));
    // 96 + 24 ticks at 240 BPM (96 ticks a second) take at least 1.25 s of real time.
    assert!(started.elapsed().as_secs_f64() >= 1.2);
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(rep["clock"], "wall");
    assert_eq!(rep["events_in"].as_u64(), Some(human.len() as u64));
    assert!(rep["late"].is_u64() && rep["late_max_ms"].is_f64());
    channel0_notes(&std::fs::read(&out).unwrap());
}

#[test]
fn bad_input_is_one_line_on_stderr() {
    let bundle = random_bundle(0);
    let dir = scratch("render-errors");
    let (input, _) = short_input(&dir, 48);
    let out = dir.join("out.mid");

    let err = one_line_error(&render(&dir.join("no-such-bundle"), &input, &out, &[]));
    assert!(err.contains("no-such-bundle"), "{err}");

    let not_midi = dir.join("not.mid");
    std::fs::write(&not_midi, b"hello, not a MIDI file").unwrap();
    let err = one_line_error(&render(&bundle, &not_midi, &out, &[]));
    assert!(err.contains("not.mid"), "{err}");

    let err = one_line_error(&render(&bundle, &input, &out, &["--genre", "polka"]));
    assert!(
        err.contains("[GENRE_POLKA]") && err.contains("[GENRE_CHORALE]"),
        "{err}"
    );

    let err = one_line_error(&render(&bundle, &input, &out, &["--top-p", "0"]));
    assert!(err.contains("top-p"), "{err}");

    let err = one_line_error(&render(&bundle, &input, &out, &["--context", "100000"]));
    assert!(err.contains("positions"), "{err}");

    let err = one_line_error(&render(&bundle, &input, &out, &["--max-polyphony", "0"]));
    assert!(err.contains("polyphony"), "{err}");

    let missing = dir.join("missing.mid");
    let err = one_line_error(&render(&bundle, &missing, &out, &[]));
    assert!(err.contains("missing.mid"), "{err}");
    assert!(!out.exists(), "no output is written on an error");
}

/// The first Set Tempo of a MIDI file (microseconds a quarter), read with midly.
fn first_tempo(bytes: &[u8]) -> Option<u32> {
    let smf = Smf::parse(bytes).expect("a MIDI file");
    let mut found: Option<(u64, u32)> = None;
    for track in &smf.tracks {
        let mut tick = 0u64;
        for ev in track {
            tick += u64::from(ev.delta.as_int());
            if let TrackEventKind::Meta(midly::MetaMessage::Tempo(t)) = ev.kind {
                if found.is_none_or(|(at, _)| tick < at) {
                    found = Some((tick, t.as_int()));
                }
            }
        }
    }
    found.map(|(_, t)| t)
}

#[test]
fn the_output_keeps_the_inputs_tempo_unless_told() {
    let bundle = random_bundle(0);
    let dir = scratch("render-tempo");
    let input = music21_file("bach-bwv1.6.mid");
    let source = first_tempo(&std::fs::read(&input).unwrap()).expect("music21 writes a tempo");
    assert_ne!(
        source, 500_000,
        "pick a file whose tempo is not the 120 BPM default"
    );
    let (out, report) = (dir.join("out.mid"), dir.join("report.json"));
    let base = ["--tail-ticks", "1", "--report", s(&report)];
    ok(&render(&bundle, &input, &out, &base));
    assert_eq!(first_tempo(&std::fs::read(&out).unwrap()), Some(source));
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(rep["bpm_from_file"], true);
    let bpm = rep["bpm"].as_f64().unwrap();
    assert!((bpm - 60e6 / f64::from(source)).abs() < 1e-9, "{bpm}");

    // --bpm wins; a file without a tempo plays at the MIDI default, 120
    ok(&render(
        &bundle,
        &input,
        &out,
        &[&base[..], &["--bpm", "90"]].concat(),
    ));
    assert_eq!(first_tempo(&std::fs::read(&out).unwrap()), Some(666_667));
    let params = LanguageParams::default();
    let events = encode_midi_bytes(&std::fs::read(&input).unwrap(), &params).unwrap();
    let plain = dir.join("no-tempo.mid");
    // events_to_midi always writes one tempo: strip it to make a file that sets none
    let with_tempo = events_to_midi(&events[..40], &params, 77.0);
    let mut stripped = Smf::parse(&with_tempo).unwrap();
    for track in &mut stripped.tracks {
        track.retain(|e| !matches!(e.kind, TrackEventKind::Meta(midly::MetaMessage::Tempo(_))));
    }
    let mut smf_bytes = Vec::new();
    stripped.write_std(&mut smf_bytes).unwrap();
    assert_eq!(first_tempo(&smf_bytes), None);
    std::fs::write(&plain, &smf_bytes).unwrap();
    ok(&render(&bundle, &plain, &out, &base));
    assert_eq!(first_tempo(&std::fs::read(&out).unwrap()), Some(500_000));
}
