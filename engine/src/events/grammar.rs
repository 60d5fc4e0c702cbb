//! A byte-level acceptor for the body of a text (time and instant words), for the engine's
//! sampling mask.
//!
//! The model emits BPE tokens whose text may end inside a word, and a ByteLevel token may begin
//! with the space that ends the previous word. [`GrammarState::feed`] accepts exactly the byte
//! strings that keep the body a prefix of some valid body: partial words that can still
//! complete, canonical time sequences, strictly increasing items inside an instant, no note-off
//! for a note that is not sounding, no note-on for one that is, no empty instant, no two instants
//! without time between. A state is `Copy` (about 300 bytes) and `feed` never allocates.
//!
//! This module holds the state and its queries; `step` is the byte transition function and
//! `lookahead` decides which words and items can still be completed from a position.

mod lookahead;
mod step;
#[cfg(test)]
mod tests;

use super::item::NoteSet;
use super::stream::{LastWord, StreamDecoder};
use super::{EventKind, LanguageParams, NoteEvent};

/// Where a rejected byte is: its offset in the bytes given to `feed`, and its value.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub offset: usize,
    pub byte: u8,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "byte {} ({:?}) cannot continue the text",
            self.offset,
            char::from(self.byte)
        )
    }
}

impl std::error::Error for Reject {}

/// An item of an instant: (kind rank: 0 off / 1 on, channel, pitch).
pub type ItemKey = (u8, u8, u8);

/// The partial item being read inside an instant word.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Partial {
    /// At an item boundary.
    None,
    Channel {
        ch: u8,
    },
    Kind {
        ch: u8,
        on: bool,
    },
    /// `digits` pitch digits read, their value so far.
    Pitch {
        ch: u8,
        on: bool,
        digits: u8,
        value: u8,
    },
    /// A complete pitch of a note-on; the velocity letter is next.
    Velocity {
        ch: u8,
        pitch: u8,
    },
}

/// Where in the byte stream the state is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Pos {
    /// A word (or the header) just ended: a space must come next.
    Sep,
    /// After a space (or at the very start): a word must start.
    Boundary,
    /// `P` read.
    TimeP,
    /// `P_` read.
    TimeUnderscore,
    /// `P_` and digits read, worth `value`.
    TimeDigits { value: u32 },
    /// Inside an instant word with `items` complete items so far.
    Instant {
        items: u16,
        last: Option<ItemKey>,
        partial: Partial,
    },
}

/// The grammar of a body for given parameters: a factory of start states.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Grammar {
    params: LanguageParams,
}

impl Grammar {
    pub fn new(params: LanguageParams) -> Self {
        Grammar { params }
    }

    pub fn params(&self) -> &LanguageParams {
        &self.params
    }

    /// The start of a text with no header: the first byte starts a word.
    pub fn start(&self) -> GrammarState {
        GrammarState::new(self.params)
    }

    /// Right after a header (metadata words): a space comes first.
    pub fn after_header(&self) -> GrammarState {
        GrammarState::resume(self.params, 0, NoteSet::default(), LastWord::Header, true)
    }
}

/// The acceptor's state (see the module doc).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GrammarState {
    grid: u32,
    max_grid: u32,
    last_letter: u8,
    tick: u64,
    sounding: NoteSet,
    last: LastWord,
    pos: Pos,
    channel_filter: u16,
}

impl GrammarState {
    /// The start of a text with no header, at tick 0: the first byte starts a word.
    pub fn new(params: LanguageParams) -> Self {
        GrammarState {
            grid: params.grid(),
            max_grid: params.max_grid(),
            last_letter: params.last_velocity_letter(),
            tick: 0,
            sounding: NoteSet::default(),
            last: LastWord::Header,
            pos: Pos::Boundary,
            channel_filter: 0xFFFF,
        }
    }

    /// A state continuing a text that reached `tick` with `sounding` notes and whose last
    /// complete word was `last`. `need_space`: the text ends right after that word (true), or
    /// after the space that follows it (false).
    pub fn resume(
        params: LanguageParams,
        tick: u64,
        sounding: NoteSet,
        last: LastWord,
        need_space: bool,
    ) -> Self {
        GrammarState {
            tick,
            sounding,
            last,
            pos: if need_space { Pos::Sep } else { Pos::Boundary },
            ..GrammarState::new(params)
        }
    }

    /// The state after the words a decoder has read (`need_space` as in [`resume`](Self::resume)).
    pub fn from_decoder(decoder: &StreamDecoder, need_space: bool) -> Self {
        GrammarState::resume(
            *decoder.params(),
            decoder.tick(),
            *decoder.sounding(),
            decoder.last_word(),
            need_space,
        )
    }

    /// Built from decoded context events: `events` sorted, the text's last word an instant at
    /// the last event's tick (or the header when there are none); the text ends after it.
    pub fn from_events_prefix(params: LanguageParams, events: &[NoteEvent]) -> Self {
        let mut sounding = NoteSet::default();
        for e in events {
            match e.kind {
                EventKind::On { .. } => sounding.insert(e.channel, e.pitch),
                EventKind::Off => sounding.remove(e.channel, e.pitch),
            }
        }
        match events.last() {
            Some(e) => GrammarState::resume(params, e.tick, sounding, LastWord::Instant, true),
            None => GrammarState::resume(params, 0, sounding, LastWord::Header, true),
        }
    }

    /// Restrict the channels of new instant items to the set bits of `mask` (bit 0 = channel 0).
    pub fn set_channel_filter(&mut self, mask: u16) {
        self.channel_filter = mask;
    }

    pub fn channel_filter(&self) -> u16 {
        self.channel_filter
    }

    /// The grid unit in ticks (the largest offset word is one less).
    pub fn grid(&self) -> u32 {
        self.grid
    }

    /// The tick after every complete time word (a partial time word is not counted; see
    /// [`pending_time`](Self::pending_time)).
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The value of the time word being read, if its digits so far form a complete word here.
    pub fn pending_time(&self) -> Option<u32> {
        match self.pos {
            Pos::TimeDigits { value } if self.time_word_ok(value) => Some(value),
            _ => None,
        }
    }

    /// The tick if the current word ended here: [`tick`](Self::tick) plus a complete partial
    /// time word.
    pub fn tick_if_word_ends(&self) -> u64 {
        self.tick
            .saturating_add(u64::from(self.pending_time().unwrap_or(0)))
    }

    /// Sounding notes, counting the complete items of the instant being read.
    pub fn sounding(&self) -> &NoteSet {
        &self.sounding
    }

    /// The last complete word before the current position (an instant being read is not yet
    /// counted).
    pub fn last_word(&self) -> LastWord {
        self.last
    }

    /// Whether the position is inside an instant word.
    pub fn in_instant(&self) -> bool {
        matches!(self.pos, Pos::Instant { .. })
    }

    /// Whether the position is inside a time word.
    pub fn in_time_word(&self) -> bool {
        matches!(
            self.pos,
            Pos::TimeP | Pos::TimeUnderscore | Pos::TimeDigits { .. }
        )
    }

    /// Whether the position is right after a space (a word must start).
    pub fn at_word_start(&self) -> bool {
        self.pos == Pos::Boundary
    }

    /// Whether a space must come next (a complete word, or the header, just ended).
    pub fn needs_space(&self) -> bool {
        self.pos == Pos::Sep
    }

    /// The last complete item of the instant being read: (kind rank 0 off / 1 on, channel, pitch).
    pub fn last_item(&self) -> Option<ItemKey> {
        match self.pos {
            Pos::Instant { last, .. } => last,
            _ => None,
        }
    }

    /// Complete items so far in the instant being read.
    pub fn instant_items(&self) -> u16 {
        match self.pos {
            Pos::Instant { items, .. } => items,
            _ => 0,
        }
    }

    /// Whether an item is partly read (the instant word cannot end here).
    pub fn in_item(&self) -> bool {
        matches!(self.pos, Pos::Instant { partial, .. } if partial != Partial::None)
    }

    /// Whether the word being read could end here (a space or the end of the text may follow).
    pub fn word_can_end(&self) -> bool {
        match self.pos {
            Pos::Sep => true,
            Pos::TimeDigits { value } => self.time_word_ok(value),
            Pos::Instant { items, partial, .. } => items > 0 && partial == Partial::None,
            _ => false,
        }
    }

    /// Whether the body so far is a complete body (it could end here).
    pub fn is_complete(&self) -> bool {
        self.word_can_end() || (self.pos == Pos::Boundary && self.last == LastWord::Header)
    }

    /// The state after `bytes`, or `None` if some byte cannot continue the body.
    pub fn after(&self, bytes: &[u8]) -> Option<GrammarState> {
        let mut s = *self;
        for &b in bytes {
            if !s.step(b) {
                return None;
            }
        }
        Some(s)
    }

    /// Feed bytes; on a rejected byte the state is left unchanged and the byte's offset returned.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Reject> {
        let mut s = *self;
        for (offset, &b) in bytes.iter().enumerate() {
            if !s.step(b) {
                return Err(Reject { offset, byte: b });
            }
        }
        *self = s;
        Ok(())
    }

    /// Whether `bytes` can continue the body from here (without changing the state).
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        self.after(bytes).is_some()
    }
}
