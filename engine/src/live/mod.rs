//! The live engine both live backends share ([`crate::backend::jack`], [`crate::backend::alsa`]):
//! everything between their input and output sides (docs/LIVE.md, "Two threads").
//!
//! Shared by both:
//! - [`decoder_thread`]: owns the [`crate::session::Session`] and a tempo source ([`clock`]);
//!   [`supervise`]: the main thread's start and stop;
//! - [`switch`] and [`control`]: set-list switching and the control channel on stdin/stdout;
//! - [`priority`]: the model's threads run below the audio side;
//! - [`ports`]: the input modes and the input filter; [`stats`], [`report`]: counters and the
//!   run's report;
//! - the messages and state of this module: [`InEvent`], [`OutEvent`], [`Shared`] and the ring
//!   sizes ([`INPUT_RING`], [`OUTPUT_RING`]).
//!
//! JACK only:
//! - [`rt`]: the JACK process callback, the one piece of real-time code (no allocation, no
//!   locks), kept in one small file to audit; [`alloc_guard`] counts what it allocates;
//! - [`FrameClock`] and [`TransportCell`]: JACK's frame counter and transport.

pub mod alloc_guard;
pub mod clock;
pub mod control;
pub mod decoder_thread;
pub mod ports;
pub mod priority;
pub mod report;
pub mod rt;
pub mod stats;
pub mod supervise;
pub mod switch;

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

use stats::RtStats;

/// Capacity of the ring from the input side to the decoder thread (events). At a flood of 10 000
/// events a second it holds about 0.8 s of input while the decoder thread is in a forward pass.
pub const INPUT_RING: usize = 8192;
/// Capacity of the ring from the decoder thread to the output side.
pub const OUTPUT_RING: usize = 4096;

/// The channel the model plays on (0-based; a musician's "MIDI channel 1").
pub const MODEL_CHANNEL: u8 = 0;

/// What the callback passes to the decoder thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InKind {
    /// A human note-on (velocity 1–127) on a mapped channel 1–15.
    NoteOn {
        channel: u8,
        pitch: u8,
        velocity: u8,
    },
    /// A human note-off on a mapped channel 1–15.
    NoteOff { channel: u8, pitch: u8 },
    /// MIDI clock (0xF8): tempo information only, never in the context.
    Clock,
    /// MIDI start (0xFA).
    Start,
    /// MIDI continue (0xFB).
    Continue,
    /// MIDI stop (0xFC).
    Stop,
}

/// An input event with the absolute JACK frame it arrived at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InEvent {
    pub frame: u64,
    pub kind: InKind,
}

/// A channel-0 message the callback writes at `frame`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutEvent {
    pub frame: u64,
    /// A complete 3-byte note-on or note-off; the callback forces channel 0 whatever it says.
    pub msg: [u8; 3],
}

impl OutEvent {
    pub fn note_on(frame: u64, pitch: u8, velocity: u8) -> Self {
        Self {
            frame,
            msg: [0x90 | MODEL_CHANNEL, pitch & 0x7f, velocity.clamp(1, 127)],
        }
    }

    pub fn note_off(frame: u64, pitch: u8) -> Self {
        Self {
            frame,
            msg: [0x80 | MODEL_CHANNEL, pitch & 0x7f, 64],
        }
    }
}

/// Extends JACK's 32-bit frame counter (wraps after ~24 h at 48 kHz) to 64 bits.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameClock {
    high: u64,
    last: Option<u32>,
}

impl FrameClock {
    #[inline]
    pub fn extend(&mut self, frame: u32) -> u64 {
        if let Some(last) = self.last {
            // A step backwards by more than half the range is a wrap, not a reorder.
            if frame < last && last - frame > u32::MAX / 2 {
                self.high += 1 << 32;
            }
        }
        self.last = Some(frame);
        self.high | u64::from(frame)
    }
}

/// The transport as the callback saw it in its last cycle, published without locks (a
/// single-writer sequence lock of atomics). Musical position in quarter notes.
#[derive(Default)]
pub struct TransportCell {
    seq: AtomicU64,
    frame: AtomicU64,
    quarters: AtomicU64,
    qpm: AtomicU64,
    rolling: AtomicBool,
}

/// One reading of [`TransportCell`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransportSnapshot {
    /// The JACK frame (absolute, 64-bit) of the cycle start the position belongs to.
    pub frame: u64,
    /// Musical position in quarter notes since bar 1 beat 1.
    pub quarters: f64,
    /// Tempo in quarter notes per minute.
    pub qpm: f64,
    pub rolling: bool,
}

impl TransportCell {
    /// Writer side (the callback only).
    #[inline]
    pub fn publish(&self, s: TransportSnapshot) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.frame.store(s.frame, Ordering::Relaxed);
        self.quarters.store(s.quarters.to_bits(), Ordering::Relaxed);
        self.qpm.store(s.qpm.to_bits(), Ordering::Relaxed);
        self.rolling.store(s.rolling, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Reader side: a consistent snapshot, or `None` before the first publish.
    pub fn read(&self) -> Option<TransportSnapshot> {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 == 0 {
                return None;
            }
            if s1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let snap = TransportSnapshot {
                frame: self.frame.load(Ordering::Relaxed),
                quarters: f64::from_bits(self.quarters.load(Ordering::Relaxed)),
                qpm: f64::from_bits(self.qpm.load(Ordering::Relaxed)),
                rolling: self.rolling.load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return Some(snap);
            }
        }
    }
}

/// State shared by the callback, the decoder thread and the main thread (allocated once).
#[derive(Default)]
pub struct Shared {
    pub stats: RtStats,
    /// Set by the main thread: the callback writes a note-off for every sounding channel-0 note
    /// in its next cycle, discards everything still queued, then sets `stopped`.
    pub stop_requested: AtomicBool,
    pub stopped: AtomicBool,
    /// Set by JACK's shutdown notification (the server went away).
    pub server_gone: AtomicBool,
    /// Set by the xrun notification.
    pub xruns: AtomicU64,
    /// First frame of the last cycle and its length: the decoder thread's "now".
    pub cycle_start: AtomicU64,
    pub cycle_frames: AtomicU32,
    pub transport: TransportCell,
}

impl Shared {
    /// The frame just after the last completed cycle (0 before the first cycle).
    pub fn now_frame(&self) -> u64 {
        self.cycle_start.load(Ordering::Acquire)
            + u64::from(self.cycle_frames.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_clock_extends_across_the_wrap() {
        let mut c = FrameClock::default();
        assert_eq!(c.extend(u32::MAX - 255), u64::from(u32::MAX - 255));
        assert_eq!(c.extend(0), 1 << 32);
        assert_eq!(c.extend(256), (1 << 32) + 256);
        // a small step back (should not happen, but is not a wrap)
        assert_eq!(c.extend(100), (1 << 32) + 100);
    }

    #[test]
    fn transport_cell_reads_what_was_published() {
        let cell = TransportCell::default();
        assert_eq!(cell.read(), None);
        let s = TransportSnapshot {
            frame: 4800,
            quarters: 12.5,
            qpm: 90.0,
            rolling: true,
        };
        cell.publish(s);
        assert_eq!(cell.read(), Some(s));
    }
}
