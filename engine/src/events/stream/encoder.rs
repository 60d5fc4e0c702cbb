//! The streaming encoder (FORMAT.md "Streaming: Encoder"): live note events in, canonical text
//! out, an instant at a time.

use crate::events::item::{for_each_time_word, push_item, NoteSet};
use crate::events::{EventError, EventKind, LanguageParams, NoteEvent};

/// A streaming encoder: fed note events in tick order, it writes time words and each instant word
/// once a later tick (or [`flush`](Self::flush)) closes it.
///
/// It applies the file rules to live input, so its text is always valid: a note-on for a sounding
/// note is written as off-then-on (rule 9), a second note-on of a pitch in the same instant is
/// dropped (rule 9), a note-off of a note that is not sounding is ignored (rule 4), and a note-off
/// in the same instant as its own note-on moves one tick later (rule 8).
#[derive(Clone, Debug)]
pub struct StreamEncoder {
    params: LanguageParams,
    /// The tick the text so far reaches.
    written_tick: u64,
    /// Whether an instant word was written at `written_tick`.
    instant_at_written: bool,
    /// Whether any word precedes (a space is needed before the next one).
    nonempty: bool,
    pending_tick: Option<u64>,
    pending: Vec<NoteEvent>,
    /// Sounding notes once the pending instant is written.
    sounding: NoteSet,
    /// Note-offs moved to `pending_tick + 1`.
    deferred: Vec<(u8, u8)>,
}

impl StreamEncoder {
    /// An encoder at the start of an empty text.
    pub fn new(params: LanguageParams) -> Self {
        StreamEncoder {
            params,
            written_tick: 0,
            instant_at_written: false,
            nonempty: false,
            pending_tick: None,
            pending: Vec::new(),
            sounding: NoteSet::default(),
            deferred: Vec::new(),
        }
    }

    /// An encoder continuing a non-empty text (at least a header) that reaches `tick` with
    /// `sounding` notes; `instant_at_tick` tells whether its last word is an instant at `tick`.
    /// The text must not end with time words (cut it after an instant or the header).
    pub fn resume(
        params: LanguageParams,
        tick: u64,
        sounding: NoteSet,
        instant_at_tick: bool,
    ) -> Self {
        StreamEncoder {
            written_tick: tick,
            instant_at_written: instant_at_tick,
            nonempty: true,
            sounding,
            ..StreamEncoder::new(params)
        }
    }

    /// Sounding notes, counting the pending instant.
    pub fn sounding(&self) -> &NoteSet {
        &self.sounding
    }

    /// The tick the written text reaches.
    pub fn written_tick(&self) -> u64 {
        self.written_tick
    }

    /// The tick of the instant not yet written, if any.
    pub fn pending_tick(&self) -> Option<u64> {
        self.pending_tick
    }

    /// Add one event (its velocity already binned). Returns the text this completes (words with
    /// their separating spaces, a leading space when text precedes), often empty. An event
    /// earlier than the pending instant, or at the tick of an instant already written, is refused
    /// and changes nothing.
    pub fn push(&mut self, ev: NoteEvent) -> Result<String, EventError> {
        if ev.channel > 15 || ev.pitch > 127 {
            return Err(EventError::Stream(format!(
                "channel {} pitch {} out of range",
                ev.channel, ev.pitch
            )));
        }
        let floor = self.pending_tick.unwrap_or(self.written_tick);
        if ev.tick < floor
            || (self.pending_tick.is_none() && self.instant_at_written && ev.tick == floor)
        {
            return Err(EventError::Stream(format!(
                "event at tick {} comes after the text reached tick {floor}",
                ev.tick
            )));
        }
        let mut out = String::new();
        while let Some(t) = self.pending_tick {
            if ev.tick <= t {
                break;
            }
            self.write_pending(&mut out);
        }
        if self.pending_tick.is_none() {
            self.pending_tick = Some(ev.tick);
        }
        self.add(ev);
        Ok(out)
    }

    /// Write the pending instant now. Note-offs deferred by rule 8 become the next pending
    /// instant (one tick later); call again to write them too.
    pub fn flush(&mut self) -> String {
        let mut out = String::new();
        if self.pending_tick.is_some() {
            self.write_pending(&mut out);
        }
        out
    }

    fn add(&mut self, ev: NoteEvent) {
        let (ch, p) = (ev.channel, ev.pitch);
        let pending_on = self
            .pending
            .iter()
            .any(|e| e.is_on() && e.channel == ch && e.pitch == p);
        match ev.kind {
            EventKind::On { .. } => {
                if pending_on {
                    return; // the first note-on of the instant wins
                }
                if self.sounding.contains(ch, p) {
                    self.pending.push(NoteEvent::off(ev.tick, ch, p));
                }
                self.pending.push(ev);
                self.sounding.insert(ch, p);
            }
            EventKind::Off => {
                if pending_on {
                    if !self.deferred.contains(&(ch, p)) {
                        self.deferred.push((ch, p));
                    }
                } else if self.sounding.contains(ch, p) {
                    self.pending.push(ev);
                    self.sounding.remove(ch, p);
                }
            }
        }
    }

    fn write_pending(&mut self, out: &mut String) {
        let Some(tick) = self.pending_tick.take() else {
            return;
        };
        let mut items = std::mem::take(&mut self.pending);
        if !items.is_empty() {
            items.sort();
            let delta = tick - self.written_tick;
            let nonempty = &mut self.nonempty;
            for_each_time_word(delta, &self.params, |n| {
                if *nonempty {
                    out.push(' ');
                }
                *nonempty = true;
                out.push_str("P_");
                out.push_str(&n.to_string());
            });
            if *nonempty {
                out.push(' ');
            }
            *nonempty = true;
            for e in &items {
                push_item(out, e);
            }
            self.written_tick = tick;
            self.instant_at_written = true;
        }
        items.clear();
        self.pending = items;
        if !self.deferred.is_empty() {
            let next = tick + 1;
            self.pending_tick = Some(next);
            for (ch, p) in std::mem::take(&mut self.deferred) {
                self.pending.push(NoteEvent::off(next, ch, p));
                self.sounding.remove(ch, p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> LanguageParams {
        LanguageParams::default()
    }

    #[test]
    fn encoder_writes_canonical_text() {
        let mut e = StreamEncoder::new(p());
        let mut text = String::new();
        text += &e.push(NoteEvent::on(0, 1, 60, 4)).unwrap();
        text += &e.push(NoteEvent::on(0, 0, 64, 7)).unwrap();
        assert_eq!(text, "");
        text += &e.push(NoteEvent::off(14, 1, 60)).unwrap();
        assert_eq!(text, "0+064h1+060e");
        text += &e.push(NoteEvent::on(14, 0, 64, 0)).unwrap(); // re-strike: off then on
        text += &e.push(NoteEvent::off(200, 0, 64)).unwrap();
        text += &e.flush();
        assert_eq!(
            text,
            "0+064h1+060e P_12 P_2 0-0641-0600+064a P_96 P_84 P_6 0-064"
        );
        assert!(e.push(NoteEvent::on(199, 0, 1, 0)).is_err());
        assert!(e.push(NoteEvent::on(200, 0, 1, 0)).is_err());
        assert!(e.sounding().is_empty());
    }

    #[test]
    fn encoder_moves_a_same_tick_off_one_tick_later() {
        let mut e = StreamEncoder::resume(p(), 0, NoteSet::default(), false);
        let mut text = String::new();
        text += &e.push(NoteEvent::on(5, 9, 36, 7)).unwrap();
        text += &e.push(NoteEvent::off(5, 9, 36)).unwrap();
        text += &e.push(NoteEvent::on(24, 9, 38, 7)).unwrap();
        text += &e.flush();
        assert_eq!(text, " P_5 9+036h P_1 9-036 P_12 P_6 9+038h");
    }
}
