//! [`TempoMap`]: frames ↔ ticks, piecewise linear, continuous across tempo changes.

use std::collections::VecDeque;

use crate::tempo::{Tempo, TempoError, MAX_BPM, MIN_BPM};

/// Segments kept for converting past frames (human events arrive a little late).
const HISTORY: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    frame: u64,
    tick: f64,
    ticks_per_frame: f64,
    bpm: f64,
}

/// Frames ↔ ticks with tempo changes (see the module docs).
#[derive(Debug, Clone)]
pub struct TempoMap {
    tpq: u32,
    rate: u32,
    segments: VecDeque<Segment>,
}

impl TempoMap {
    /// Tick 0 at `origin`, `bpm` from there.
    pub fn new(bpm: f64, tpq: u32, rate: u32, origin: u64) -> Result<Self, TempoError> {
        check_bpm(bpm)?;
        if rate == 0 {
            return Err(TempoError::FrameRate(rate));
        }
        if tpq == 0 {
            return Err(TempoError::Tpq(tpq));
        }
        let mut segments = VecDeque::with_capacity(HISTORY);
        segments.push_back(Segment {
            frame: origin,
            tick: 0.0,
            ticks_per_frame: Self::tpf(bpm, tpq, rate),
            bpm,
        });
        Ok(Self {
            tpq,
            rate,
            segments,
        })
    }

    fn tpf(bpm: f64, tpq: u32, rate: u32) -> f64 {
        bpm / 60.0 * f64::from(tpq) / f64::from(rate)
    }

    pub fn tpq(&self) -> u32 {
        self.tpq
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    fn last(&self) -> Segment {
        // never empty: created with one segment and only ever trimmed from the front to HISTORY
        self.segments.back().copied().unwrap_or(Segment {
            frame: 0,
            tick: 0.0,
            ticks_per_frame: 1.0,
            bpm: 120.0,
        })
    }

    /// From `frame` on (or from the last change, if that is later), play at `bpm` (clamped to
    /// the accepted range).
    pub fn set_bpm_at(&mut self, frame: u64, bpm: f64) {
        if !bpm.is_finite() {
            return;
        }
        let bpm = bpm.clamp(MIN_BPM, MAX_BPM);
        let last = self.last();
        let frame = frame.max(last.frame);
        let tick = self.ticks_at(frame);
        let seg = Segment {
            frame,
            tick,
            ticks_per_frame: Self::tpf(bpm, self.tpq, self.rate),
            bpm,
        };
        if frame == last.frame {
            self.segments.pop_back();
        }
        self.segments.push_back(seg);
        while self.segments.len() > HISTORY {
            self.segments.pop_front();
        }
    }

    fn segment_for_frame(&self, frame: u64) -> Segment {
        self.segments
            .iter()
            .rev()
            .find(|s| s.frame <= frame)
            .or(self.segments.front())
            .copied()
            .unwrap_or_else(|| self.last())
    }

    fn segment_for_tick(&self, tick: f64) -> Segment {
        self.segments
            .iter()
            .rev()
            .find(|s| s.tick <= tick)
            .or(self.segments.front())
            .copied()
            .unwrap_or_else(|| self.last())
    }
}

fn check_bpm(bpm: f64) -> Result<(), TempoError> {
    if !bpm.is_finite() || !(MIN_BPM..=MAX_BPM).contains(&bpm) {
        return Err(TempoError::Bpm(bpm));
    }
    Ok(())
}

impl Tempo for TempoMap {
    fn ticks_at(&self, frame: u64) -> f64 {
        let s = self.segment_for_frame(frame);
        let t = s.tick + (frame as f64 - s.frame as f64) * s.ticks_per_frame;
        t.max(0.0)
    }

    fn frame_at(&self, tick: f64) -> u64 {
        let first = self.segments.front().map_or(0, |s| s.frame);
        if tick.is_nan() || tick <= 0.0 {
            return first;
        }
        let s = self.segment_for_tick(tick);
        let frames = ((tick - s.tick) / s.ticks_per_frame).ceil();
        let f = s.frame as f64 + frames;
        if f >= u64::MAX as f64 {
            u64::MAX
        } else {
            (f.max(0.0) as u64).max(first)
        }
    }

    fn bpm(&self) -> f64 {
        self.last().bpm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    #[test]
    fn a_fixed_map_matches_fixed_tempo() {
        let m = TempoMap::new(120.0, 24, RATE, 1000).unwrap();
        assert_eq!(m.ticks_at(1000 + 24_000), 24.0);
        assert_eq!(m.frame_at(24.0), 1000 + 24_000);
        assert_eq!(m.ticks_at(0), 0.0);
    }

    #[test]
    fn tempo_changes_keep_time_continuous_and_monotonic() {
        let mut m = TempoMap::new(120.0, 24, RATE, 0).unwrap();
        m.set_bpm_at(24_000, 60.0); // after one beat, half speed
        assert!((m.ticks_at(24_000) - 24.0).abs() < 1e-9);
        assert!((m.ticks_at(24_000 + 48_000) - 48.0).abs() < 1e-9);
        // frames from before the change still use the old tempo
        assert!((m.ticks_at(12_000) - 12.0).abs() < 1e-9);
        let mut prev = -1.0;
        for f in (0..200_000).step_by(997) {
            let t = m.ticks_at(f);
            assert!(t >= prev);
            prev = t;
            let back = m.frame_at(t);
            assert!(back.abs_diff(f) <= 1, "frame {f} tick {t} back {back}");
        }
        assert_eq!(m.bpm(), 60.0);
    }
}
