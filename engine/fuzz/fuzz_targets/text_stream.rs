//! Bytes → words: the byte-level grammar and the word decoder must agree on every input, a
//! refused word must leave the decoder unchanged, and the streaming encoder's text from arbitrary
//! live events must always decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use midicopilot_engine::events::{
    parse_text, GrammarState, LanguageParams, NoteEvent, StreamDecoder, StreamEncoder,
};

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let tpq = [2u32, 4, 24, 24, 48, 30, 6, 96][usize::from(first & 7)];
    let bins = [1u8, 3, 8, 26][usize::from(first >> 3 & 3)];
    let params = LanguageParams {
        ticks_per_quarter: tpq,
        velocity_bins: bins,
    };

    if first & 0x20 == 0 {
        // Grammar vs decoder on the body text.
        let mut g = GrammarState::new(params);
        let grammar_ok = g.feed(body).is_ok() && g.is_complete();
        let mut d = StreamDecoder::new(params);
        let mut decoder_ok = !body.is_empty();
        if let Ok(text) = std::str::from_utf8(body) {
            for w in text.split(' ') {
                let before = d.clone();
                if w.starts_with('[') || d.feed_word(w).is_err() {
                    assert_eq!(d, before, "a refused word changed the decoder");
                    decoder_ok = false;
                    break;
                }
            }
        } else {
            decoder_ok = false;
        }
        if body.is_empty() {
            assert!(grammar_ok);
            return;
        }
        assert_eq!(
            grammar_ok, decoder_ok,
            "grammar and decoder disagree on {body:?}"
        );
        if grammar_ok {
            assert_eq!(g.sounding(), d.sounding());
            assert_eq!(g.tick_if_word_ends(), d.tick());
        }
    } else {
        // Arbitrary live events through the streaming encoder.
        let mut enc = StreamEncoder::new(params);
        let mut text = String::new();
        let mut tick = 0u64;
        for c in body.chunks_exact(3) {
            tick += u64::from(c[0] & 0x3F);
            let (ch, pitch) = (c[1] & 0x0F, c[2] & 0x7F);
            let e = if c[1] & 0x10 != 0 {
                NoteEvent::on(tick, ch, pitch, (c[1] >> 5) % bins)
            } else {
                NoteEvent::off(tick, ch, pitch)
            };
            text += &enc.push(e).expect("events are in tick order");
        }
        text += &enc.flush();
        text += &enc.flush();
        parse_text(&text, &params).expect("the stream encoder's text decodes");
    }
});
