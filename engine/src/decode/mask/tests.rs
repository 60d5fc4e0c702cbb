//! The mask against hand-written texts: polyphony, deadlines, "now", the band.

use super::*;
use crate::events::{Grammar, LanguageParams};

fn policy() -> Policy {
    Policy {
        max_note_ticks: 48,
        max_polyphony: 2,
    }
}

fn state(text: &[u8]) -> MaskState {
    let mut g = Grammar::new(LanguageParams::default()).start();
    g.feed(text).unwrap();
    let word = text.rsplit(|b| *b == b' ').next().unwrap_or(&[]);
    MaskState::new(g, word)
}

#[test]
fn polyphony_cap_refuses_a_third_note() {
    let s = state(b"0+060e0+064e");
    let d = Deadlines::default();
    assert!(!s.accepts(b"0+067e", &policy(), &d));
    assert!(!s.accepts(b"0+", &policy(), &d));
    assert!(s.accepts(b" P_12 0-0600+067e", &policy(), &d));
    let s = state(b"0+060e0+06");
    assert!(s.accepts(b"4e", &policy(), &d));
    // After a note-on only note-ons may follow in the instant: at the cap, no new item.
    let s = state(b"0+060e0+064e");
    assert!(!s.accepts(b"0", &policy(), &d));
    let s = state(b"0+060e0+064e P_1 ");
    assert!(s.accepts(b"0", &policy(), &d)); // 0-060 or 0-064
    assert!(!s.accepts(b"0+", &policy(), &d));
}

#[test]
fn no_note_on_before_the_earliest_tick() {
    let d = Deadlines::default();
    // The model is at tick 12 (a musician's instant it resumed at after a prefix cut).
    let s = state(b"0+060e P_12 1+040e").with_earliest_on(14);
    assert!(!s.accepts(b"0+062e", &policy(), &d)); // into the musician's instant: too early
    assert!(!s.accepts(b" P_1 0+062e", &policy(), &d)); // tick 13: still too early
    assert!(s.accepts(b" P_2 0+062e", &policy(), &d)); // tick 14: on time
    assert!(s.accepts(b" P_1 0-060", &policy(), &d)); // a note can always end
                                                      // A note-on the context already began (`0` after a note-on, so only `0+` can follow) is
                                                      // finished even if "now" moved past its tick meanwhile: the bound never strands an item.
    let s = state(b"0+060e P_12 0-0600+038h0").with_earliest_on(14);
    assert!(s.accepts(b"+040a", &policy(), &d));
    let s = state(b"0+060e P_12 0-0600+038h").with_earliest_on(14);
    assert!(!s.accepts(b"0+040a", &policy(), &d)); // a note-on begun now is refused
                                                   // Without the bound the early strike is fine.
    let s = state(b"0+060e P_12 1+040e");
    assert!(s.accepts(b" P_1 0+062e", &policy(), &d));
}

#[test]
fn no_instant_before_the_earliest_tick() {
    let d = Deadlines::default();
    let p = policy();
    // At tick 12 after the musician's instant; nothing may open before tick 20.
    let s = state(b"0+060e P_12 1+040e").with_earliest_instant(20);
    assert!(!s.accepts(b" P_1 0-060", &p, &d)); // an instant at 13: in the past
    assert!(s.accepts(b" P_12 0-060", &p, &d)); // at 24
    assert!(!s.accepts(b" P_6 ", &p, &d)); // an offset word forces an instant at 18
    assert!(s.accepts(b" P_8 ", &p, &d)); // at 20: on time
    assert!(s.accepts(b" P_12", &p, &d)); // a grid word may still take an offset
                                          // A smaller grid word whose largest offset cannot reach the bound is a dead end.
    let s = state(b"0+060e P_12 0-0601+040e").with_earliest_instant(40);
    assert!(!s.accepts(b" P_12 ", &p, &d)); // 24 + 11 < 40
    assert!(s.accepts(b" P_24 ", &p, &d)); // 36 + 11 ≥ 40
    assert!(s.accepts(b" P_96 ", &p, &d)); // the bar word can be followed by more time
                                           // Nor a new item in an instant that is past (an item the context began may end).
    let s = state(b"0+060e P_12 0-060").with_earliest_instant(20);
    assert!(!s.accepts(b"0", &p, &d) && s.accepts(b" P_8 ", &p, &d));
    let s = state(b"0+060e P_12 0-0600+0").with_earliest_instant(20);
    assert!(s.accepts(b"62e", &p, &d));
}

#[test]
fn the_instant_about_to_open_and_how_far_time_words_reach() {
    let (p, d) = (policy(), Deadlines::default());
    let reach = |s: &MaskState| s.latest_instant(&p, &d);
    // C4 (struck at 0) must end by 48: time can reach no further.
    let s = state(b"0+060e P_12 ");
    assert_eq!((s.instant_start(), reach(&s)), (Some(12), Some(23)));
    let s = state(b"0+060e P_12 P_3 ");
    assert_eq!((s.instant_start(), reach(&s)), (Some(15), Some(15)));
    // Inside a time word: the instant opens where the word would end (a space next); more
    // digits may still move it (P_1 → P_12: 12 + 11), and P_9 may still become the bar word.
    let s = state(b"0+060e P_12");
    assert_eq!((s.instant_start(), reach(&s)), (Some(12), Some(23)));
    let s = state(b"0+060e P_1");
    assert_eq!((s.instant_start(), reach(&s)), (Some(1), Some(23)));
    let s = state(b"0+060e P_3");
    assert_eq!((s.instant_start(), reach(&s)), (Some(3), Some(47)));
    let s = state(b"0+060e P_9");
    assert_eq!((s.instant_start(), reach(&s)), (Some(9), Some(9))); // P_96 passes 48
    let s = state(b"0+060e P_12 P_");
    assert_eq!(reach(&s), Some(23)); // only an offset word can follow P_12
                                     // With nothing sounding on channel 0, the bar word leaves time unbounded.
    let s = state(b"1+060e P_9");
    assert_eq!((s.instant_start(), reach(&s)), (Some(9), Some(u64::MAX)));
    let s = state(b"0+060e");
    assert_eq!((s.instant_start(), reach(&s)), (None, None));
    let s = state(b"0+060e P_");
    assert_eq!(s.instant_start(), None); // no complete time word yet
}

#[test]
fn with_the_band_its_items_are_accepted_and_the_policy_still_holds_for_channel_0() {
    let (p, d) = (policy(), Deadlines::default());
    let s = state(b"0+060e1+052c P_12 ");
    assert!(!s.accepts(b"1-052", &p, &d)); // channel 0 only
    let s = s.with_band();
    assert!(s.accepts(b"1-0520+062e2+040a", &p, &d));
    assert!(s.accepts(b"0-0601-052", &p, &d));
    assert!(!s.accepts(b"1+052a", &p, &d)); // the grammar: 52 still sounds on channel 1
                                            // Polyphony counts channel 0 only: a third channel-0 note is refused, a band note is not.
    let s = state(b"0+060e0+064e1+050a P_12 ").with_band();
    assert!(!s.accepts(b"0+067e", &p, &d));
    assert!(s.accepts(b"2+067e3+070e", &p, &d));
    assert!(s.opens_instant(b"2+0") && !s.opens_instant(b"P_3") && !s.opens_instant(b""));
}

#[test]
fn deadline_forces_the_off() {
    // C4 struck at tick 0, deadline 48.
    let mut d = Deadlines::default();
    d.set(60, 48);
    let s = state(b"0+060e P_24 0+062e ");
    let p = policy();
    assert!(s.accepts(b"P_24", &p, &d)); // reaches 48 exactly
    assert!(!s.accepts(b"P_36", &p, &d)); // passes 48
    assert!(!s.accepts(b"P_24 P_1", &p, &d));
    assert!(s.accepts(b"P_24 0-060", &p, &d));
    assert!(s.accepts(b"P_24 0-060 P_12", &p, &d));
    assert!(s.accepts(b"P_12 P_2 0-060", &p, &d)); // closing early is fine too
                                                   // At the deadline only an instant that writes the off may come.
    let s = state(b"0+060e P_48 ");
    assert!(!s.accepts(b"0+062e", &p, &d));
    assert!(!s.accepts(b"P", &p, &d));
    assert!(s.accepts(b"0-0600+062e", &p, &d));
    // A partial off for a higher pitch would pass 0-060's place.
    let s = state(b"0+060e0+070e P_48 0-07");
    let mut d2 = d.clone();
    d2.set(70, 200);
    assert!(!s.accepts(b"0", &p, &d2));
    let s = state(b"0+060e0+070e P_48 0-0");
    assert!(s.accepts(b"60", &p, &d2));
    assert!(!s.accepts(b"70", &p, &d2));
}

#[test]
fn relax_moves_a_missed_deadline_to_the_next_tick() {
    // C4 due at 48, but the instant at 48 already holds a channel-1 item after its place.
    let mut g = GrammarState::from_events_prefix(
        LanguageParams::default(),
        &[
            crate::events::NoteEvent::on(0, 0, 60, 4),
            crate::events::NoteEvent::on(48, 1, 30, 1),
        ],
    );
    g.feed(b"").unwrap();
    let s = MaskState::new(g, b"");
    let mut d = Deadlines::default();
    d.set(60, 48);
    let p = policy();
    assert!(!s.accepts(b" P_1", &p, &d));
    assert_eq!(d.relax_for(&s, &p), 1);
    assert_eq!(d.of(60), Some(49));
    assert!(s.accepts(b" P_1 0-060", &p, &d));
    assert!(!s.accepts(b" P_2", &p, &d));
}
