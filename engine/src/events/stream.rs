//! The live side of the language (FORMAT.md "Streaming"): a streaming encoder for incoming note
//! events and a word-at-a-time decoder for the model's output.

use super::item::{
    for_each_time_word, hex_digit, item_text, parse_item_at, push_item, time_word_value, NoteSet,
};
use super::text::meta_word_is_valid;
use super::{EventError, EventKind, LanguageParams, NoteEvent, WordError};

/// What the last word of a text was; decides what may come next.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LastWord {
    /// No body word yet (the start, or only metadata words): a metadata word, any time word, or
    /// an instant (at the current tick) may come.
    Header,
    /// An instant word: a time word must come next.
    Instant,
    /// `P_<max_grid>`: any time word or an instant.
    MaxGrid,
    /// A smaller grid word: an offset word or an instant.
    Grid,
    /// An offset word: only an instant.
    Offset,
}

/// A time word's value and class, or `None` if `n` is not a word of the language.
pub(crate) fn time_class(n: u64, params: &LanguageParams) -> Option<LastWord> {
    let grid = u64::from(params.grid());
    let max = u64::from(params.max_grid());
    if n == 0 || n > max {
        None
    } else if n == max {
        Some(LastWord::MaxGrid)
    } else if n < grid {
        Some(LastWord::Offset)
    } else if n.is_multiple_of(grid) {
        Some(LastWord::Grid)
    } else {
        None
    }
}

/// Whether a time word of class `next` may follow `last` (the canonical sequences).
pub(crate) fn time_may_follow(last: LastWord, next: LastWord) -> bool {
    match last {
        LastWord::Header | LastWord::Instant | LastWord::MaxGrid => true,
        LastWord::Grid => next == LastWord::Offset,
        LastWord::Offset => false,
    }
}

/// A word-at-a-time decoder: keeps the current tick and the sounding notes, returns each word's
/// events or refuses the word (leaving its state unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDecoder {
    params: LanguageParams,
    tick: u64,
    sounding: NoteSet,
    last: LastWord,
}

fn word_err(word: &str, reason: WordError) -> EventError {
    EventError::Word {
        index: 0,
        word: word.chars().take(64).collect(),
        reason,
    }
}

impl StreamDecoder {
    /// A decoder at the start of a text (tick 0, nothing sounding, header allowed).
    pub fn new(params: LanguageParams) -> Self {
        StreamDecoder {
            params,
            tick: 0,
            sounding: NoteSet::default(),
            last: LastWord::Header,
        }
    }

    /// A decoder continuing a text whose words so far left this state.
    pub fn resume(params: LanguageParams, tick: u64, sounding: NoteSet, last: LastWord) -> Self {
        StreamDecoder {
            params,
            tick,
            sounding,
            last,
        }
    }

    pub fn params(&self) -> &LanguageParams {
        &self.params
    }

    /// The current tick: every time word so far counted.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    pub fn sounding(&self) -> &NoteSet {
        &self.sounding
    }

    pub fn last_word(&self) -> LastWord {
        self.last
    }

    /// Whether no body word has been read yet (metadata words are still allowed).
    pub fn is_header(&self) -> bool {
        self.last == LastWord::Header
    }

    /// Read one word. On error the state is unchanged. Words are classified as the Python
    /// decoder does: a metadata word, else `P_` and 1–6 digits without a leading zero (a time
    /// word, refused if not one of this language), else a lowercase hex digit and more (an
    /// instant word), else an unknown word.
    pub fn feed_word(&mut self, word: &str) -> Result<Vec<NoteEvent>, EventError> {
        let b = word.as_bytes();
        if meta_word_is_valid(word) {
            if self.last != LastWord::Header {
                return Err(word_err(word, WordError::MetaAfterBody));
            }
            return Ok(Vec::new());
        }
        if let Some(n) = time_word_value(b) {
            let class = time_class(n, &self.params).ok_or_else(|| {
                word_err(
                    word,
                    WordError::NotTimeWord {
                        offset_max: self.params.grid().saturating_sub(1),
                        grid: self.params.grid(),
                        max_grid: self.params.max_grid(),
                    },
                )
            })?;
            if !time_may_follow(self.last, class) {
                let why = match self.last {
                    LastWord::Offset => "after an offset word only an instant may come",
                    _ => {
                        "after a grid word below the bar only an offset word or an instant may come"
                    }
                };
                return Err(word_err(word, WordError::NonCanonicalTime(why)));
            }
            let tick = self
                .tick
                .checked_add(n)
                .ok_or_else(|| word_err(word, WordError::TimeOverflow))?;
            self.tick = tick;
            self.last = class;
            return Ok(Vec::new());
        }
        if b.len() > 1 && hex_digit(b[0]).is_some() {
            if self.last == LastWord::Instant {
                return Err(word_err(word, WordError::InstantWithoutTime));
            }
            let mut sounding = self.sounding;
            let mut prev: Option<(u8, u8, u8)> = None;
            let mut out = Vec::with_capacity(b.len() / 5);
            let mut i = 0;
            while i < b.len() {
                let (e, next) = parse_item_at(b, i, self.tick, self.params.last_velocity_letter())
                    .map_err(|e| word_err(word, e))?;
                i = next;
                let key = e.item_key();
                if prev.is_some_and(|p| p >= key) {
                    return Err(word_err(word, WordError::Unsorted(item_text(&e))));
                }
                prev = Some(key);
                let voice = format!("channel {} pitch {}", e.channel, e.pitch);
                match e.kind {
                    EventKind::Off => {
                        if !sounding.contains(e.channel, e.pitch) {
                            return Err(word_err(word, WordError::OffNotSounding(voice)));
                        }
                        sounding.remove(e.channel, e.pitch);
                    }
                    EventKind::On { .. } => {
                        if sounding.contains(e.channel, e.pitch) {
                            return Err(word_err(word, WordError::OnSounding(voice)));
                        }
                        sounding.insert(e.channel, e.pitch);
                    }
                }
                out.push(e);
            }
            self.sounding = sounding;
            self.last = LastWord::Instant;
            return Ok(out);
        }
        Err(word_err(word, WordError::Unknown))
    }
}

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
    fn decoder_refuses_and_keeps_state() {
        let mut d = StreamDecoder::new(p());
        assert!(d.feed_word("[GENRE_X]").unwrap().is_empty());
        assert_eq!(
            d.feed_word("0+060e").unwrap(),
            vec![NoteEvent::on(0, 0, 60, 4)]
        );
        let before = d.clone();
        for (w, kw) in [
            ("0+062a", "two instants"),
            ("[PART_Y]", "metadata"),
            ("P_13", "not a time word"),
            ("P_012", "unknown word"),
        ] {
            let e = d.feed_word(w).unwrap_err().to_string();
            assert!(e.contains(kw), "{w}: {e}");
            assert_eq!(d, before);
        }
        d.feed_word("P_12").unwrap();
        let before = d.clone();
        for (w, kw) in [
            ("P_24", "canonical"),
            ("0+060a", "already sounding"),
            ("0-061", "not sounding"),
            ("0+062a0+061a", "order"),
            ("0+062a0+062a", "order"),
            ("0+062a0-060", "order"),
            ("0+062i", "velocity"),
            ("0+128a", "range"),
            ("0+06", "malformed"),
            ("A+060a", "unknown word"),
        ] {
            let e = d.feed_word(w).unwrap_err().to_string();
            assert!(e.contains(kw), "{w}: {e}");
            assert_eq!(d, before);
        }
        d.feed_word("P_2").unwrap();
        assert!(d
            .feed_word("P_1")
            .unwrap_err()
            .to_string()
            .contains("canonical"));
        assert_eq!(d.tick(), 14);
        let ev = d.feed_word("0-0600+060a").unwrap();
        assert_eq!(
            ev,
            vec![NoteEvent::off(14, 0, 60), NoteEvent::on(14, 0, 60, 0)]
        );
        assert!(d.sounding().contains(0, 60));
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
