//! The band's velocities reach the model as the bins it heard the band in during training
//! (the bundle's `band_velocities`; docs/ENGINE.md, "Velocities"), on a real (random-weights)
//! model: a band played at any dynamics writes the same context as the band at the trained one,
//! and `band_velocity_as_trained = false` writes it as played.

mod support;

use midicopilot_engine::events::{EventKind, LanguageParams, NoteEvent};
use midicopilot_engine::session::{band_bins, Session, SessionConfig};
use support::*;

/// The context's body after a bar of a Bach chorale's lower parts, its note-ons struck at
/// `bin(pitch)`, with the engine told the band was trained at `trained`.
fn context_after(bin: impl Fn(u8) -> u8, trained: Option<&str>, as_trained: bool) -> String {
    let params = LanguageParams::default();
    let mut engine = engine(0).engine.clone();
    engine.band_bins = band_bins(trained, &params).expect("letters");
    let header = engine.header(None, None).expect("header");
    let mut cfg = SessionConfig::defaults(&engine.params);
    cfg.listen = false; // the band's items alone decide the context here
    cfg.band_velocity_as_trained = as_trained;
    let mut s = Session::new(engine, &header, cfg).expect("session");
    let band = human_part(&music21_file("bach-bwv1.6.mid"), &params, 24 * 8);
    assert!(band.len() > 8, "the chorale's bar has notes");
    let mut next = 0;
    for now in 0..=24 * 8 {
        while next < band.len() && band[next].tick <= now {
            let mut e = band[next];
            if let EventKind::On { .. } = e.kind {
                e = NoteEvent::on(e.tick, e.channel, e.pitch, bin(e.pitch));
            }
            s.human(e);
            next += 1;
        }
        s.advance(now).expect("advance");
    }
    String::from_utf8(s.context().body_text().to_vec()).expect("utf-8")
}

/// The velocity letters of the band's note-ons (channels 1–f) in a body text.
fn band_letters(body: &str) -> std::collections::BTreeSet<char> {
    let b = body.as_bytes();
    (0..b.len().saturating_sub(5))
        .filter(|&i| b[i] != b'0' && b[i].is_ascii_hexdigit() && b[i + 1] == b'+')
        .filter(|&i| b[i + 2..i + 5].iter().all(u8::is_ascii_digit))
        .map(|i| b[i + 5] as char)
        .collect()
}

#[test]
fn a_band_at_any_dynamics_is_heard_at_the_trained_one() {
    let varied = |pitch: u8| pitch % 8;
    let heard = context_after(varied, Some("f"), true);
    assert_eq!(band_letters(&heard), ['f'].into());
    // The same as the band played at f (bin 5) to begin with, token for token.
    assert_eq!(heard, context_after(|_| 5, Some("f"), true));
    // As played: every bin the band struck is there.
    let played = context_after(varied, Some("f"), false);
    assert!(
        band_letters(&played).len() >= 4,
        "{:?}",
        band_letters(&played)
    );
    // A bundle that does not say keeps them as played.
    assert_eq!(
        band_letters(&context_after(varied, None, true)),
        band_letters(&played)
    );
}
