//! The live side of the language (FORMAT.md "Streaming"): a streaming encoder for incoming note
//! events (`encoder`) and a word-at-a-time decoder for the model's output (`decoder`). What
//! may follow what is decided here, by the class of the last word, which the byte grammar
//! (`grammar`) shares.

mod decoder;
mod encoder;

pub use decoder::StreamDecoder;
pub use encoder::StreamEncoder;

use super::LanguageParams;

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
