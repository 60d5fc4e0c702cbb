//! Musical time from clock time.
//!
//! The decoder loop works in ticks (FORMAT.md: `ticks_per_quarter` per quarter note); backends
//! work in frames (JACK: audio frames; the `file` backend's wall clock: microseconds). A [`Tempo`]
//! converts between the two. [`FixedTempo`] is the preset's fixed BPM; the live backend adds
//! tempo sources (JACK transport, incoming MIDI clock) behind the same trait.

use thiserror::Error;

/// Slowest and fastest tempo accepted from a preset or the command line.
pub const MIN_BPM: f64 = 1.0;
pub const MAX_BPM: f64 = 999.0;

#[derive(Debug, Error, PartialEq)]
pub enum TempoError {
    #[error("tempo {0} BPM is out of range (expected {MIN_BPM}..={MAX_BPM})")]
    Bpm(f64),
    #[error("frame rate must be positive, got {0}")]
    FrameRate(u32),
    #[error("ticks per quarter must be positive, got {0}")]
    Tpq(u32),
}

/// Converts clock frames to musical ticks and back.
pub trait Tempo: Send {
    /// Musical time (ticks since the origin, fractional) at `frame`. Frames before the origin
    /// give tick 0.
    fn ticks_at(&self, frame: u64) -> f64;
    /// The first frame at or after which `tick` has been reached (ticks below 0 give the origin).
    fn frame_at(&self, tick: f64) -> u64;
    /// Current tempo in quarter notes per minute (for reports and for the release horizon).
    fn bpm(&self) -> f64;
}

/// A fixed tempo: `bpm` quarter notes per minute from `origin` (a frame), `tpq` ticks per
/// quarter, `rate` frames per second.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedTempo {
    bpm: f64,
    tpq: u32,
    rate: u32,
    origin: u64,
}

impl FixedTempo {
    pub fn new(bpm: f64, tpq: u32, rate: u32) -> Result<Self, TempoError> {
        if !bpm.is_finite() || !(MIN_BPM..=MAX_BPM).contains(&bpm) {
            return Err(TempoError::Bpm(bpm));
        }
        if rate == 0 {
            return Err(TempoError::FrameRate(rate));
        }
        if tpq == 0 {
            return Err(TempoError::Tpq(tpq));
        }
        Ok(Self {
            bpm,
            tpq,
            rate,
            origin: 0,
        })
    }

    /// The same tempo with tick 0 at `frame`.
    pub fn with_origin(mut self, frame: u64) -> Self {
        self.origin = frame;
        self
    }

    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// Ticks per second at this tempo.
    pub fn ticks_per_second(&self) -> f64 {
        self.bpm / 60.0 * f64::from(self.tpq)
    }

    /// Seconds one tick lasts.
    pub fn seconds_per_tick(&self) -> f64 {
        1.0 / self.ticks_per_second()
    }
}

impl Tempo for FixedTempo {
    fn ticks_at(&self, frame: u64) -> f64 {
        let frames = frame.saturating_sub(self.origin) as f64;
        frames / f64::from(self.rate) * self.ticks_per_second()
    }

    fn frame_at(&self, tick: f64) -> u64 {
        if tick.is_nan() || tick <= 0.0 {
            return self.origin;
        }
        let frames = (tick / self.ticks_per_second() * f64::from(self.rate)).ceil();
        // Saturate instead of wrapping for absurd ticks.
        let frames = if frames >= u64::MAX as f64 {
            u64::MAX
        } else {
            frames as u64
        };
        self.origin.saturating_add(frames)
    }

    fn bpm(&self) -> f64 {
        self.bpm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_at_120_bpm_is_half_a_second() {
        let t = FixedTempo::new(120.0, 24, 48_000).unwrap();
        assert_eq!(t.ticks_at(24_000), 24.0);
        assert_eq!(t.frame_at(24.0), 24_000);
        assert_eq!(t.frame_at(1.0), 1_000);
    }

    #[test]
    fn origin_shifts_tick_zero() {
        let t = FixedTempo::new(60.0, 24, 1_000_000)
            .unwrap()
            .with_origin(500);
        assert_eq!(t.ticks_at(0), 0.0);
        assert_eq!(t.ticks_at(500), 0.0);
        assert_eq!(t.ticks_at(500 + 1_000_000), 24.0);
        assert_eq!(t.frame_at(24.0), 500 + 1_000_000);
        assert_eq!(t.frame_at(-3.0), 500);
    }

    #[test]
    fn frame_at_is_the_first_frame_reaching_the_tick() {
        let t = FixedTempo::new(97.0, 24, 44_100).unwrap();
        for tick in [0.5, 1.0, 7.0, 13.25, 1000.0] {
            let f = t.frame_at(tick);
            assert!(t.ticks_at(f) >= tick - 1e-9, "tick {tick} frame {f}");
            assert!(t.ticks_at(f - 1) < tick, "tick {tick} frame {f}");
        }
    }

    #[test]
    fn bad_tempo_is_refused() {
        assert_eq!(FixedTempo::new(0.0, 24, 48_000), Err(TempoError::Bpm(0.0)));
        assert!(FixedTempo::new(f64::NAN, 24, 48_000).is_err());
        assert_eq!(FixedTempo::new(120.0, 24, 0), Err(TempoError::FrameRate(0)));
        assert_eq!(FixedTempo::new(120.0, 0, 48_000), Err(TempoError::Tpq(0)));
    }
}
