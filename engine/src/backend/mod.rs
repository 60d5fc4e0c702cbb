//! Backends: where the decoder loop's clock and its input and output come from.
//!
//! Every backend drives the same [`crate::session::Session`]: it converts its clock to ticks
//! (a [`crate::tempo::Tempo`]), hands the session the human note events as they arrive, calls
//! `advance(now)` and plays what it releases, and calls `stop` at the end.
//!
//! - [`file`]: offline render of a MIDI file, with a virtual clock (reproducible for a seed) or
//!   the wall clock (to measure lateness).
//! - [`jack`]: the live JACK client (its process callback is [`crate::live::rt`]).
//! - [`alsa`]: the live ALSA sequencer client through midir.
//!
//! The two live backends share everything but their input and output sides: [`crate::live`].

pub mod alsa;
pub mod file;
pub mod jack;
