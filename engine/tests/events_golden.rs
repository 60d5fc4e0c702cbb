//! Golden vectors shared with pytest (tests/golden/): MIDI files with their expected text or
//! refusal keyword, and streaming-decoder cases. Written by hand from docs/FORMAT.md.

use std::fs;
use std::path::{Path, PathBuf};

use midicopilot_engine::events::{
    encode_file, events_to_text, parse_text, GrammarState, LanguageParams, NoteEvent, StreamDecoder,
};
use serde_json::Value;

fn golden() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden"))
}

fn midi_cases() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(golden().join("midi"))
        .expect("tests/golden/midi exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "mid"))
        .collect();
    files.sort();
    files
}

fn sibling(path: &Path, ext: &str) -> Option<String> {
    fs::read_to_string(path.with_extension(ext)).ok()
}

#[test]
fn every_golden_midi_file_encodes_to_its_text_or_is_refused() {
    let params = LanguageParams::default();
    let cases = midi_cases();
    assert!(cases.len() >= 10, "only {} golden MIDI files", cases.len());
    let mut texts = 0;
    let mut refusals = 0;
    for mid in &cases {
        let name = mid.display();
        match (sibling(mid, "txt"), sibling(mid, "err")) {
            (Some(expected), None) => {
                let got =
                    encode_file(mid, &params, &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
                assert_eq!(got, expected, "{name}");
                texts += 1;
            }
            (None, Some(keyword)) => {
                let err = encode_file(mid, &params, &[]).expect_err(&name.to_string());
                let line = format!("{err:#}").to_lowercase();
                let keyword = keyword.trim().to_lowercase();
                assert!(
                    line.contains(&keyword),
                    "{name}: {line:?} lacks {keyword:?}"
                );
                assert!(
                    !line.contains('\n'),
                    "{name}: error is not one line: {line:?}"
                );
                refusals += 1;
            }
            other => panic!("{name}: needs exactly one of .txt and .err, found {other:?}"),
        }
    }
    assert!(texts > 0 && refusals > 0);
}

#[test]
fn golden_texts_parse_back_and_every_prefix_is_accepted_by_the_grammar() {
    let params = LanguageParams::default();
    let mut checked = 0;
    for mid in midi_cases() {
        let Some(text) = sibling(&mid, "txt") else {
            continue;
        };
        let (meta, events) = parse_text(&text, &params).expect("golden text parses");
        assert!(meta.is_empty());
        // Re-encoding the parsed events gives the text back.
        assert_eq!(events_to_text(&events, &params, &[]), text);
        let body = text.trim_end_matches('\n').as_bytes();
        let mut state = GrammarState::new(params);
        for (i, b) in body.iter().enumerate() {
            state
                .feed(&[*b])
                .unwrap_or_else(|r| panic!("{}: byte {i}: {r}", mid.display()));
        }
        assert!(state.is_complete(), "{}", mid.display());
        let mut decoder = StreamDecoder::new(params);
        for w in text.split_whitespace() {
            decoder.feed_word(w).expect("word");
        }
        assert_eq!(state.sounding(), decoder.sounding());
        checked += 1;
    }
    assert!(checked > 0);
}

fn expected_events(v: &Value) -> Vec<NoteEvent> {
    v.as_array()
        .expect("events array")
        .iter()
        .map(|e| {
            let e = e.as_array().expect("event array");
            let tick = e[0].as_u64().expect("tick");
            let channel = e[2].as_u64().expect("channel") as u8;
            let pitch = e[3].as_u64().expect("pitch") as u8;
            match e[1].as_str().expect("kind") {
                "on" => NoteEvent::on(tick, channel, pitch, e[4].as_u64().expect("bin") as u8),
                "off" => NoteEvent::off(tick, channel, pitch),
                k => panic!("unknown kind {k}"),
            }
        })
        .collect()
}

fn words_of(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("words array")
        .iter()
        .map(|w| w.as_str().expect("word").to_string())
        .collect()
}

/// Feed a body word to the grammar (with the space before it when a body word preceded).
fn grammar_word(g: &mut GrammarState, started: &mut bool, w: &str) {
    if w.starts_with('[') {
        return;
    }
    if *started {
        g.feed(b" ").expect("space after a complete word");
    }
    g.feed(w.as_bytes())
        .unwrap_or_else(|r| panic!("grammar refuses {w}: {r}"));
    *started = true;
}

#[test]
fn streaming_decoder_golden_cases() {
    let raw = fs::read_to_string(golden().join("words.json")).expect("words.json");
    let doc: Value = serde_json::from_str(&raw).expect("words.json is JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    let params = LanguageParams::default();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let words = words_of(&case["words"]);
        let mut dec = StreamDecoder::new(params);
        let mut got = Vec::new();
        // The grammar must agree with the decoder word by word.
        let mut grammar = GrammarState::new(params);
        let mut started = false;
        if let Some(reject_at) = case.get("reject_at").and_then(Value::as_u64) {
            let reason = case["reason"].as_str().expect("reason").to_lowercase();
            for (i, w) in words.iter().enumerate() {
                let before = dec.clone();
                let result = dec.feed_word(w);
                if i as u64 == reject_at {
                    let err = result.expect_err(name).to_string().to_lowercase();
                    assert!(err.contains(&reason), "{name}: {err:?} lacks {reason:?}");
                    assert_eq!(dec, before, "{name}: a rejected word changed the state");
                    if !w.starts_with('[') || started {
                        let sep: &[u8] = if started { b" " } else { b"" };
                        let bytes = [sep, w.as_bytes(), b" "].concat();
                        assert!(
                            grammar.after(&bytes).is_none(),
                            "{name}: grammar accepts {w}"
                        );
                    }
                    break;
                }
                got.extend(result.unwrap_or_else(|e| panic!("{name}: word {i}: {e}")));
                grammar_word(&mut grammar, &mut started, w);
            }
            if let Some(after) = case.get("after_reject") {
                let mut more = Vec::new();
                for w in words_of(&after["words"]) {
                    more.extend(dec.feed_word(&w).unwrap_or_else(|e| panic!("{name}: {e}")));
                }
                assert_eq!(more, expected_events(&after["events"]), "{name}");
            }
        } else {
            for w in &words {
                got.extend(
                    dec.feed_word(w)
                        .unwrap_or_else(|e| panic!("{name}: {w}: {e}")),
                );
                grammar_word(&mut grammar, &mut started, w);
            }
            assert_eq!(got, expected_events(&case["events"]), "{name}");
            assert_eq!(grammar.sounding(), dec.sounding(), "{name}");
            assert_eq!(grammar.tick_if_word_ends(), dec.tick(), "{name}");
        }
    }
}
