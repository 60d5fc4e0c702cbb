//! The write lead (docs/LIVE.md, "The write lead") on a real (random-weights) model, in the live
//! backends' loop on a virtual clock: each pass "now" jumps by up to `JUMP` ticks (a slow
//! model's pass), the band's events arrive two ticks behind the release point (the horizon),
//! and the session is driven as the decoder thread drives it: `release_due`, then `advance`.
//! With a lead of `JUMP` ticks nothing it releases is ever late, forced note-offs and cut
//! tentative events included; with none, the same loop releases late events.

mod support;

use midicopilot_engine::events::{LanguageParams, NoteEvent};
use midicopilot_engine::session::{Session, SessionConfig};
use support::*;

const JUMP: u64 = 4;

/// (events released late, events released, deadlines deferred) over 16 beats of a chorale.
fn play(seed: u64, lead: u64) -> (u64, u64, u64) {
    let loaded = engine(0);
    let engine = loaded.engine.clone();
    let header = engine.header(None, None).expect("header");
    let mut cfg = SessionConfig::defaults(&engine.params);
    cfg.seed = seed;
    cfg.release_ticks = 0;
    cfg.max_steps_per_advance = 2;
    cfg.policy.max_polyphony = 2;
    cfg.policy.max_note_ticks = 30; // short notes: forced note-offs come often
    let mut s = Session::new(engine, &header, cfg).expect("session");
    let band = human_part(
        &music21_file("bach-bwv1.6.mid"),
        &LanguageParams::default(),
        24 * 16,
    );
    let (mut next, mut now, mut released, mut late) = (0, 0u64, 0u64, 0u64);
    let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    while now <= 24 * 16 {
        while next < band.len() && band[next].tick + 2 <= now {
            s.human(band[next]);
            next += 1;
        }
        s.set_write_lead(lead);
        let mut out: Vec<NoteEvent> = s.release_due(now).expect("release");
        out.extend(s.advance(now).expect("advance"));
        released += out.len() as u64;
        late += out.iter().filter(|e| e.tick < now).count() as u64;
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        now += 1 + (rng >> 33) % JUMP;
    }
    let st = s.stats();
    assert_eq!(st.late, late, "the session counts what the loop saw");
    (late, released, st.deadlines_deferred)
}

#[test]
fn with_a_lead_as_long_as_a_pass_nothing_is_late() {
    let (mut released, mut deferred, mut late_without) = (0, 0, 0);
    for seed in 0..4 {
        let (late, n, d) = play(seed, JUMP);
        assert_eq!(
            late, 0,
            "seed {seed}: {late} of {n} events late with the lead"
        );
        released += n;
        deferred += d;
        late_without += play(seed, 0).0;
    }
    assert!(released > 20, "the model played ({released} events)");
    assert!(deferred > 0, "no forced note-off met the lead");
    assert!(
        late_without > 0,
        "without the lead the same loop releases late events"
    );
}
