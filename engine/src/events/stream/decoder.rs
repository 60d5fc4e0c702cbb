//! The strict word-at-a-time decoder (FORMAT.md "Streaming: Decoder"): it refuses exactly the
//! words the Python decoder (train/events_text.py) refuses, with the same keywords.

use super::{time_class, time_may_follow, LastWord};
use crate::events::item::{hex_digit, item_text, parse_item_at, time_word_value, NoteSet};
use crate::events::text::meta_word_is_valid;
use crate::events::{EventError, EventKind, LanguageParams, NoteEvent, WordError};

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
}
