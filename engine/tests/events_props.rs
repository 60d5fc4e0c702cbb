//! Property tests of the event language: text round trips, sort order, canonical time words,
//! the streaming encoder, MIDI round trips, and the grammar automaton against the word decoder.

use midicopilot_engine::events::{
    encode_midi_bytes, events_to_midi, events_to_text, parse_text, time_words, EventKind,
    GrammarState, LanguageParams, NoteEvent, StreamDecoder, StreamEncoder,
};
use proptest::prelude::*;

fn params_strategy() -> impl Strategy<Value = LanguageParams> {
    (
        prop_oneof![Just(2u32), Just(4), Just(6), Just(24), Just(24), Just(30)],
        prop_oneof![Just(1u8), Just(3), Just(8), Just(8), Just(26)],
    )
        .prop_map(|(t, b)| LanguageParams {
            ticks_per_quarter: t,
            velocity_bins: b,
        })
}

/// Random valid events: a few voices (channel, pitch), each a run of non-overlapping notes.
fn events_strategy(params: LanguageParams) -> impl Strategy<Value = Vec<NoteEvent>> {
    let voice = (
        0u8..16,
        0u8..128,
        prop::collection::vec((0u64..150, 1u64..150, 0u8..26), 1..5),
    );
    prop::collection::vec(voice, 0..6).prop_map(move |voices| {
        let mut events = Vec::new();
        let mut used = std::collections::HashSet::new();
        for (ch, pitch, notes) in voices {
            if !used.insert((ch, pitch)) {
                continue;
            }
            let mut t = 0u64;
            for (gap, len, bin) in notes {
                let start = t + gap;
                let end = start + len;
                events.push(NoteEvent::on(start, ch, pitch, bin % params.velocity_bins));
                events.push(NoteEvent::off(end, ch, pitch));
                t = end;
            }
        }
        events.sort();
        events
    })
}

fn valid_case() -> impl Strategy<Value = (LanguageParams, Vec<NoteEvent>)> {
    params_strategy().prop_flat_map(|p| (Just(p), events_strategy(p)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn text_round_trip((params, events) in valid_case()) {
        let text = events_to_text(&events, &params, &["[GENRE_X]".to_string()]);
        let (meta, back) = parse_text(&text, &params).expect("own text parses");
        prop_assert_eq!(meta, vec!["[GENRE_X]".to_string()]);
        prop_assert_eq!(&back, &events);
        // Items inside each instant word strictly increase by (kind, channel, pitch).
        for w in text.trim_end().split(' ').skip(1).filter(|w| !w.starts_with('P')) {
            let mut d = StreamDecoder::new(params);
            // a lone instant word: check its order with a decoder that has every note sounding
            let items: Vec<&str> = split_items(w);
            let keys: Vec<(u8, u8, u8)> = items.iter().map(|i| item_key(i)).collect();
            prop_assert!(keys.windows(2).all(|k| k[0] < k[1]), "unsorted {}", w);
            let _ = d.feed_word("P_1");
        }
    }

    #[test]
    fn time_words_are_canonical(delta in 0u64..2000, params in params_strategy()) {
        let words = time_words(delta, &params);
        let values: Vec<u64> = words.iter().map(|w| w[2..].parse().expect("number")).collect();
        prop_assert_eq!(values.iter().sum::<u64>(), delta);
        let max = u64::from(params.max_grid());
        prop_assert!(words.len() as u64 <= delta / max + 2);
        // The decoder accepts the sequence (canonical), followed by an instant.
        let mut d = StreamDecoder::new(params);
        d.feed_word("0+000a").expect("first instant");
        for w in &words {
            d.feed_word(w).expect("canonical time word");
        }
        if delta > 0 {
            d.feed_word("0-000").expect("instant after time");
            prop_assert_eq!(d.tick(), delta);
        }
    }

    #[test]
    fn stream_encoder_writes_the_batch_text((params, events) in valid_case()) {
        let mut enc = StreamEncoder::new(params);
        let mut text = String::new();
        for e in &events {
            text += &enc.push(*e).expect("events in tick order");
        }
        text += &enc.flush();
        text.push('\n');
        prop_assert_eq!(text, events_to_text(&events, &params, &[]));
    }

    #[test]
    fn stream_encoder_output_is_always_valid(
        params in params_strategy(),
        raw in prop::collection::vec((0u64..30, 0u8..3, 58u8..62, any::<bool>(), 0u8..26), 0..40),
    ) {
        // Arbitrary live input: repeated note-ons, stray note-offs, same-tick on/off.
        let mut enc = StreamEncoder::new(params);
        let mut text = String::new();
        let mut t = 0;
        for (gap, ch, pitch, on, bin) in raw {
            t += gap;
            let e = if on {
                NoteEvent::on(t, ch, pitch, bin % params.velocity_bins)
            } else {
                NoteEvent::off(t, ch, pitch)
            };
            text += &enc.push(e).expect("in order");
        }
        text += &enc.flush();
        text += &enc.flush();
        let parsed = parse_text(&text, &params);
        prop_assert!(parsed.is_ok(), "{:?}: {:?}", text, parsed);
        let mut d = StreamDecoder::new(params);
        for w in text.split_whitespace() {
            d.feed_word(w).expect("word");
        }
        prop_assert_eq!(d.sounding(), enc.sounding());
    }

    #[test]
    fn midi_round_trip((params, events) in valid_case()) {
        let midi = events_to_midi(&events, &params, 120.0);
        let back = encode_midi_bytes(&midi, &params).expect("own MIDI file reads back");
        prop_assert_eq!(back, events);
    }

    #[test]
    fn grammar_accepts_every_prefix_of_valid_texts((params, events) in valid_case()) {
        let text = events_to_text(&events, &params, &[]);
        let body = text.trim_end_matches('\n').as_bytes();
        let mut g = GrammarState::new(params);
        for (i, b) in body.iter().enumerate() {
            prop_assert!(g.feed(&[*b]).is_ok(), "byte {} of {:?}", i, text);
        }
        prop_assert!(g.is_complete());
        let mut d = StreamDecoder::new(params);
        for w in text.split_whitespace() {
            d.feed_word(w).expect("word");
        }
        prop_assert_eq!(g.sounding(), d.sounding());
        prop_assert_eq!(g.tick(), d.tick());
    }

    #[test]
    fn grammar_rejects_mutations_at_the_first_bad_byte(
        (params, events) in valid_case(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..3, any::<prop::sample::Index>()), 1..3),
    ) {
        let text = events_to_text(&events, &params, &[]);
        let mut body = text.trim_end_matches('\n').as_bytes().to_vec();
        // Mutate with bytes that keep the text close to the language.
        const ALPHABET: &[u8] = b"0123456789abcdefhP_+- z[";
        for (at, op, byte) in edits {
            let b = *byte.get(ALPHABET);
            if body.is_empty() {
                body.push(b);
                continue;
            }
            let i = at.index(body.len());
            match op {
                0 => body[i] = b,
                1 => body.insert(i, b),
                _ => { body.remove(i); }
            }
        }
        let mut g = GrammarState::new(params);
        let mut rejected_at = None;
        for (i, b) in body.iter().enumerate() {
            if g.feed(&[*b]).is_err() {
                rejected_at = Some(i);
                break;
            }
        }
        match rejected_at {
            Some(i) => {
                prop_assert!(feasible(&params, &body[..i]), "grammar refused a feasible prefix {:?}", String::from_utf8_lossy(&body[..=i]));
                prop_assert!(!feasible(&params, &body[..=i]), "grammar refused {:?} but it can complete", String::from_utf8_lossy(&body[..=i]));
            }
            None => {
                prop_assert!(feasible(&params, &body), "grammar accepted {:?}", String::from_utf8_lossy(&body));
                // And the grammar's completeness agrees with the decoder's.
                let complete = !body.is_empty() && words_ok(&params, &body).is_some();
                prop_assert_eq!(g.is_complete(), complete || body.is_empty());
            }
        }
    }
}

fn split_items(w: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < w.len() {
        let len = if w.as_bytes()[i + 1] == b'+' { 6 } else { 5 };
        out.push(&w[i..i + len]);
        i += len;
    }
    out
}

fn item_key(item: &str) -> (u8, u8, u8) {
    let b = item.as_bytes();
    let ch = u8::from_str_radix(&item[0..1], 16).expect("hex");
    (
        u8::from(b[1] == b'+'),
        ch,
        item[2..5].parse().expect("pitch"),
    )
}

/// The decoder after every complete word of `body` (all of it when it does not end in a partial
/// word), or `None` if a word is refused. Metadata words are not body words.
fn words_ok(params: &LanguageParams, body: &[u8]) -> Option<StreamDecoder> {
    let text = std::str::from_utf8(body).ok()?;
    let mut d = StreamDecoder::new(*params);
    for w in text.split(' ') {
        if w.starts_with('[') {
            return None;
        }
        d.feed_word(w).ok()?;
    }
    Some(d)
}

/// The oracle: can `prefix` be completed to a valid body? Brute force over the ways to finish
/// the last word, checked by the word decoder (an independent implementation).
fn feasible(params: &LanguageParams, prefix: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(prefix) else {
        return false;
    };
    if text.is_empty() {
        return true;
    }
    let (done, partial) = match text.rfind(' ') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => ("", text),
    };
    let base = if done.is_empty() && !text.contains(' ') {
        Some(StreamDecoder::new(*params))
    } else {
        words_ok(params, done.as_bytes())
    };
    let Some(base) = base else { return false };
    completions(params, partial)
        .into_iter()
        .any(|w| base.clone().feed_word(&w).is_ok())
}

/// Every word of the language that starts with `partial` and has at most one more item.
fn completions(params: &LanguageParams, partial: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut items = Vec::new();
    for ch in 0..16u8 {
        for pitch in 0..128u8 {
            items.push(format!("{ch:x}-{pitch:03}"));
            for v in 0..params.velocity_bins {
                items.push(format!("{ch:x}+{pitch:03}{}", char::from(b'a' + v)));
            }
        }
    }
    if partial.is_empty() || partial.starts_with('P') {
        for n in 1..=params.max_grid() {
            let w = format!("P_{n}");
            if w.starts_with(partial) {
                words.push(w);
            }
        }
    }
    if partial.is_empty() {
        words.extend(items);
        return words;
    }
    let b = partial.as_bytes();
    if !b[0].is_ascii_hexdigit() || b[0].is_ascii_uppercase() {
        return words;
    }
    // Complete items of the partial instant word, then its partial tail.
    let mut pos = 0;
    while b.len() - pos >= 2 {
        let len = match b[pos + 1] {
            b'+' => 6,
            b'-' => 5,
            _ => return words,
        };
        if pos + len > b.len() {
            break;
        }
        pos += len;
    }
    let (head, tail) = partial.split_at(pos);
    if tail.is_empty() {
        words.push(partial.to_string());
    } else {
        for item in &items {
            if item.starts_with(tail) {
                words.push(format!("{head}{item}"));
            }
        }
    }
    words
}

#[test]
fn oracle_sanity() {
    let p = LanguageParams::default();
    assert!(feasible(&p, b"P_9"));
    assert!(!feasible(&p, b"P_97"));
    assert!(feasible(&p, b"0+060a P_12 0-06"));
    assert!(!feasible(&p, b"0+060a P_12 0-061"));
    assert!(!feasible(&p, b"0+060a 0"));
    assert!(feasible(&p, b"0+060a "));
}

#[test]
fn decoded_events_keep_kind_order() {
    let p = LanguageParams::default();
    let (_, ev) = parse_text("0+060a1+060b P_1 0-0601-060\n", &p).expect("valid");
    assert!(matches!(ev[0].kind, EventKind::On { velocity_bin: 0 }));
    assert!(matches!(ev[1].kind, EventKind::On { velocity_bin: 1 }));
    assert_eq!(ev[2].tick, 1);
}
