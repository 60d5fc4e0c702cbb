//! Listening (docs/ENGINE.md, "Listening") on a real (random-weights) model: the model imagines
//! each instant whole and waits for the band where the band is in it; while it waits it writes
//! nothing; a wait runs out when the band does not come, and the model goes on from "now"; the
//! band's events end a wait; nothing the model writes is ever before now.

mod support;

use midicopilot_engine::events::{LanguageParams, NoteEvent};
use midicopilot_engine::session::{Session, SessionConfig};
use support::*;

fn session(seed: u64, listen: bool) -> Session {
    let loaded = engine(0);
    let engine = loaded.engine.clone();
    let header = engine.header(None, None).expect("header");
    let mut cfg = SessionConfig::defaults(&engine.params);
    cfg.seed = seed;
    cfg.listen = listen;
    cfg.policy.max_polyphony = 2;
    Session::new(engine, &header, cfg).expect("session")
}

#[test]
fn a_silent_band_makes_every_wait_run_out_and_nothing_is_late() {
    let mut left = 0;
    for seed in 0..4 {
        let mut s = session(seed, true);
        let wait = s.config().wait_ticks;
        for now in 0..24 * 16 {
            let before = s.stats().tokens;
            let waiting = s.waiting_at();
            let released = s.advance(now).expect("advance");
            if let Some(w) = waiting {
                if now <= w + wait {
                    // Still waiting for the band: not a token written, nothing to release past
                    // the instant it shares with the band (its own part of it may go out).
                    assert_eq!(s.stats().tokens, before, "seed {seed}: wrote while waiting");
                    assert_eq!(s.waiting_at(), Some(w));
                    assert!(released.iter().all(|e| e.tick <= w), "seed {seed}");
                } else {
                    assert_ne!(
                        s.waiting_at(),
                        Some(w),
                        "seed {seed}: the wait did not run out"
                    );
                }
            }
            for e in &released {
                assert!(e.tick >= now, "seed {seed}: {e:?} released late at {now}");
            }
        }
        let st = s.stats();
        assert_eq!(st.late, 0);
        assert_eq!(st.fallbacks, 0, "seed {seed}");
        // The band never plays: every wait but a last one still open runs out.
        assert!(st.waits_expired + 1 >= st.left_to_band, "{st:?}");
        left += st.left_to_band;
    }
    // A random model gives the band's opening tokens some probability: it does leave instants.
    assert!(left > 0);
}

#[test]
fn the_band_ends_a_wait_and_the_model_goes_on_after_its_instant() {
    let params = LanguageParams::default();
    let band = human_part(&music21_file("bach-bwv1.6.mid"), &params, 24 * 32);
    let mut ended_by_band = 0;
    for seed in 0..4 {
        let mut s = session(seed, true);
        let mut next = 0;
        for now in 0..=24 * 32 {
            let mut came: Vec<NoteEvent> = Vec::new();
            while next < band.len() && band[next].tick <= now {
                s.human(band[next]);
                came.push(band[next]);
                next += 1;
            }
            let waiting = s.waiting_at();
            let released = s.advance(now).expect("advance");
            if waiting.is_some() && !came.is_empty() {
                ended_by_band += 1;
                // The band's instant is in; the model's text is past it or waits again later.
                assert!(s.model_tick() >= now || s.waiting_at().is_some_and(|w| w > now));
            }
            assert!(released.iter().all(|e| e.tick >= now), "seed {seed}: late");
            if s.is_ahead(now) {
                s.idle(32).expect("idle");
            }
        }
        let st = s.stats();
        assert_eq!((st.late, st.fallbacks), (0, 0), "seed {seed}: {st:?}");
        s.stop(24 * 33);
    }
    assert!(ended_by_band > 0, "no wait was ended by the band");
}

#[test]
fn without_listening_the_model_never_waits() {
    let mut s = session(1, false);
    for now in 0..24 * 8 {
        s.advance(now).expect("advance");
        assert_eq!(s.waiting_at(), None);
    }
    assert_eq!(s.stats().left_to_band, 0);
}
