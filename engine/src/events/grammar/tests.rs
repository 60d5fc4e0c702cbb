//! Unit tests of the byte grammar.

use super::*;

fn g() -> GrammarState {
    GrammarState::new(LanguageParams::default())
}

#[test]
fn partial_words() {
    let s = g();
    assert!(s.accepts(b"P_1"));
    assert!(s.accepts(b"P_12"));
    assert!(s.accepts(b"P_9")); // P_9 or P_96
    assert!(!s.accepts(b"P_13"));
    assert!(!s.accepts(b"P_0"));
    assert!(!s.accepts(b"P_97"));
    assert!(s.accepts(b"P_12 P_2 0+060e"));
    assert!(!s.accepts(b"P_12 P_24"));
    assert!(!s.accepts(b"P_2 P_"));
    assert!(s.accepts(b"P_96 P_9"));
    assert!(!s.accepts(b"0+060e 0")); // instant after instant
    assert!(!s.accepts(b"0-060")); // nothing sounding
    assert!(s.accepts(b"0+060e P_12 0-0600+06"));
    assert!(s.accepts(b"0+060e P_12 0-0600+061a0")); // 0+062… may follow 0+061a
    assert!(!s.accepts(b"0+060e P_12 0-0600+061a0-")); // a note-off after a note-on
    assert!(!s.accepts(b"0+060e P_12 0-0600+061a0+061")); // 61 is sounding now
    assert!(s.accepts(b"0+060e P_12 0-0600+061a1"));
    assert!(!s.accepts(b"0+060e P_12 0-0610")); // 61 is not sounding
    assert!(!s.accepts(b"0+128"));
    assert!(!s.accepts(b"0+060i"));
    assert!(!s.accepts(b"0+060e  "));
    assert!(!s.accepts(b" 0+060e"));
}

#[test]
fn word_end_and_tick() {
    let s = g().after(b"P_96 P_1").unwrap();
    assert_eq!(s.tick(), 96);
    assert_eq!(s.pending_time(), Some(1));
    assert_eq!(s.tick_if_word_ends(), 97);
    assert!(s.word_can_end());
    let s = s.after(b"1").unwrap();
    assert_eq!(s.pending_time(), Some(11));
    let s = g().after(b"P_9").unwrap();
    assert!(s.word_can_end()); // P_9 is an offset word
    assert!(g().after(b"0+060e1-").is_none()); // a note-off after a note-on
    let s = g().after(b"0+060e1+06").unwrap();
    assert!(s.in_item() && s.in_instant() && !s.word_can_end());
    assert_eq!(s.last_item(), Some((1, 0, 60)));
}

#[test]
fn channel_filter_limits_new_items() {
    let mut s = g();
    s.set_channel_filter(1);
    assert!(s.accepts(b"0+060e"));
    assert!(!s.accepts(b"1"));
    let t =
        GrammarState::from_events_prefix(LanguageParams::default(), &[NoteEvent::on(0, 3, 60, 1)]);
    assert!(t.accepts(b" P_12 3-060"));
    let mut t = t;
    t.set_channel_filter(1);
    assert!(!t.accepts(b" P_12 3"));
    assert!(t.accepts(b" P_12 0+"));
    assert!(!t.accepts(b" P_12 0-"));
}

#[test]
fn feed_reports_offset_and_keeps_state() {
    let mut s = g();
    s.feed(b"0+060e P_1").unwrap();
    let before = s;
    let r = s.feed(b"2 P_24").unwrap_err(); // after P_12 only an offset word or an instant
    assert_eq!(
        r,
        Reject {
            offset: 5,
            byte: b'4'
        }
    );
    assert_eq!(s, before);
}
