//! The midicopilot event language v1 (docs/FORMAT.md): MIDI files ↔ note events ↔ text.
//!
//! - [`smf`] reads Standard MIDI Files (midly for the events, a chunk layer that follows mido's
//!   reading so both implementations accept and refuse the same files);
//! - [`midi`] turns a file into note events (FORMAT.md rules 1–12) and events back into a file;
//! - [`parts`] lays a file's parts out on channels 1–15 as the human side of a session;
//! - [`text`] writes and strictly parses the text;
//! - [`stream`] is the live side: a streaming encoder and a word-at-a-time decoder;
//! - [`grammar`] is a byte-level acceptor of the text body, for the engine's sampling mask;
//! - [`item`] is the codec of items, time words and note sets that all of these share.

pub mod grammar;
pub mod item;
pub mod midi;
pub mod params;
pub mod parts;
pub mod smf;
pub mod stream;
pub mod text;

use std::cmp::Ordering;

pub use grammar::{Grammar, GrammarState, Reject};
pub use item::{time_words, NoteSet};
pub use midi::{
    encode_file, encode_midi_bytes, events_to_midi, events_to_midi_until, notes_from_smf, Note,
};
pub use params::{bin_of_velocity, velocity_of_bin, LanguageParams, LANGUAGE_VERSION};
pub use stream::{LastWord, StreamDecoder, StreamEncoder};
pub use text::{
    events_to_text, meta_token, meta_word_is_valid, parse_text, parse_text_full, ParsedText,
};

/// Everything that can go wrong reading a MIDI file or a text of the event language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The bytes do not start with a Standard MIDI File header chunk.
    #[error("not a Standard MIDI File: {0}")]
    NotMidi(String),
    /// The file ends before a chunk or an event it announces.
    #[error("corrupt or truncated MIDI data: {0}")]
    Truncated(String),
    /// Malformed content inside the file.
    #[error("corrupt MIDI data: {0}")]
    Corrupt(String),
    /// The header's division word has its high bit set.
    #[error("SMPTE time division (0x{0:04x}) is not supported: the event language needs ticks per quarter note")]
    Smpte(u16),
    /// Bad language parameters.
    #[error("bad event-language parameters: {0}")]
    Params(String),
    /// A word of the text is refused (`index` counts words from 0, header included).
    #[error("word {index} `{word}`: {reason}")]
    Word {
        index: usize,
        word: String,
        reason: WordError,
    },
    /// The text's shape (spaces, newlines) is wrong.
    #[error("text: {0}")]
    Text(String),
    /// A live event that cannot be placed (out of order, or its instant is already written).
    #[error("stream: {0}")]
    Stream(String),
    /// A bug caught at the file boundary (a panic inside the reader).
    #[error("internal error while reading the file: {0}")]
    Internal(String),
}

/// Why a word is refused (FORMAT.md "Streaming: Decoder"). The messages carry the same keywords
/// as the Python decoder's (train/events_text.py), which the golden vectors check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    #[error("unknown word (not a metadata, time or instant word)")]
    Unknown,
    #[error("not a time word of this language (offsets 1..{offset_max}, grid multiples of {grid} up to {max_grid})")]
    NotTimeWord {
        offset_max: u32,
        grid: u32,
        max_grid: u32,
    },
    #[error("malformed item at byte {0}")]
    Malformed(usize),
    #[error("pitch {0} out of range 0..127")]
    PitchRange(u32),
    #[error("missing or bad velocity letter at byte {0}")]
    Velocity(usize),
    #[error("time words out of canonical order: {0}")]
    NonCanonicalTime(&'static str),
    #[error("items not in order (note-offs, then note-ons; by channel, pitch) or repeated at {0}")]
    Unsorted(String),
    #[error("note-off of {0}, which is not sounding")]
    OffNotSounding(String),
    #[error("note-on of {0}, which is already sounding")]
    OnSounding(String),
    #[error("metadata word after the body began")]
    MetaAfterBody,
    #[error("two instants with no time word between them")]
    InstantWithoutTime,
    #[error("time overflows 64 bits")]
    TimeOverflow,
}

/// A note-on (with its velocity bin) or a note-off.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Off,
    On { velocity_bin: u8 },
}

impl EventKind {
    /// 0 for note-offs, 1 for note-ons: note-offs sort first.
    pub fn rank(&self) -> u8 {
        match self {
            EventKind::Off => 0,
            EventKind::On { .. } => 1,
        }
    }
}

/// One note event of the language, at an absolute tick. Sorts as FORMAT.md says: time, then
/// note-offs before note-ons, then channel, then pitch (then velocity bin, for a total order).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct NoteEvent {
    pub tick: u64,
    /// 0..=15 (0 is the model's channel).
    pub channel: u8,
    /// 0..=127.
    pub pitch: u8,
    pub kind: EventKind,
}

impl NoteEvent {
    pub fn on(tick: u64, channel: u8, pitch: u8, velocity_bin: u8) -> Self {
        NoteEvent {
            tick,
            channel,
            pitch,
            kind: EventKind::On { velocity_bin },
        }
    }

    pub fn off(tick: u64, channel: u8, pitch: u8) -> Self {
        NoteEvent {
            tick,
            channel,
            pitch,
            kind: EventKind::Off,
        }
    }

    /// The sort key (FORMAT.md "Sort order").
    pub fn sort_key(&self) -> (u64, u8, u8, u8, u8) {
        let bin = match self.kind {
            EventKind::Off => 0,
            EventKind::On { velocity_bin } => velocity_bin,
        };
        (self.tick, self.kind.rank(), self.channel, self.pitch, bin)
    }

    /// The position of this event inside an instant: (kind, channel, pitch).
    pub fn item_key(&self) -> (u8, u8, u8) {
        (self.kind.rank(), self.channel, self.pitch)
    }

    pub fn is_on(&self) -> bool {
        matches!(self.kind, EventKind::On { .. })
    }
}

impl Ord for NoteEvent {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for NoteEvent {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
