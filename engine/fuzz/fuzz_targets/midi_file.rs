//! MIDI bytes → events. Must never panic; the midly-based reader and the mido-compatible reader
//! must agree on every input; what reads must round-trip through text and through a MIDI file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use midicopilot_engine::events::midi::encode_midi_bytes_unguarded;
use midicopilot_engine::events::smf::{parse_smf, parse_smf_compat};
use midicopilot_engine::events::{
    encode_midi_bytes, events_to_midi, events_to_text, parse_text, LanguageParams,
};

fuzz_target!(|data: &[u8]| {
    let a = parse_smf(data);
    let b = parse_smf_compat(data);
    match (&a, &b) {
        (Ok(x), Ok(y)) => assert_eq!(x, y, "midly and compat readers disagree"),
        (Err(_), Err(_)) => {}
        _ => panic!("one reader refuses: midly {a:?} compat {b:?}"),
    }
    let params = LanguageParams::default();
    let Ok(events) = encode_midi_bytes_unguarded(data, &params) else {
        return;
    };
    assert!(events.windows(2).all(|w| w[0] <= w[1]), "events not sorted");
    // Keep the text small: a huge gap is a valid file but a long text of P_96 words.
    if events.last().is_some_and(|e| e.tick > 200_000) {
        return;
    }
    let text = events_to_text(&events, &params, &[]);
    let (_, back) = parse_text(&text, &params).expect("the encoder's text parses");
    assert_eq!(back, events);
    let midi = events_to_midi(&events, &params, 120.0);
    let again = encode_midi_bytes(&midi, &params).expect("the decoder's file reads");
    assert_eq!(again, events);
});
