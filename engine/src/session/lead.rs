//! The write lead of a backend on a real clock (docs/LIVE.md, "The write lead"): how far past
//! its release point the model must write so that the backend's next pass still sends the event
//! before it is due.
//!
//! A pass reads "now", releases what is due, generates a few tokens. What the model writes just
//! past the release point is sent by the *next* pass; when a pass takes longer than the release
//! window (a slow model's step, a cut and re-feed, a flush slice, the scheduler), it is due
//! before it goes out. [`WriteLead`] keeps the recent longest time between two passes' starts (a
//! peak that halves every [`HALF_LIFE_MS`] of playing: slow passes come back every few seconds)
//! and turns it into ticks for [`Session::set_write_lead`](super::Session::set_write_lead).

use std::time::Instant;

/// Half-life of the longest-gap peak (milliseconds of playing).
pub const HALF_LIFE_MS: f64 = 20_000.0;
/// The lead covers this many times that peak: the gaps between passes have a long tail
/// (measured on the 120M fixture, q8, 2 cores: a new longest gap every few seconds).
pub const MARGIN: f64 = 1.5;

#[derive(Debug, Clone, Default)]
pub struct WriteLead {
    peak_ms: f64,
    last_start: Option<Instant>,
}

impl WriteLead {
    /// A pass starts at `at`: the gap since the previous one's start feeds the peak.
    pub fn pass_started(&mut self, at: Instant) {
        if let Some(prev) = self.last_start.replace(at) {
            self.note_gap(at.saturating_duration_since(prev).as_secs_f64() * 1e3);
        }
    }

    fn note_gap(&mut self, ms: f64) {
        let decay = 0.5f64.powf(ms / HALF_LIFE_MS);
        self.peak_ms = ms.max(self.peak_ms * decay);
    }

    /// The lead in ticks: [`MARGIN`] × the peak gap, plus `extra_ms` (a live backend's period:
    /// the callback that takes the events), less the release window `window_ms` (events are
    /// sent that long before they are due), over `ms_per_tick`; rounded up, 0 when the window
    /// covers it.
    pub fn ticks(&self, ms_per_tick: f64, extra_ms: f64, window_ms: f64) -> u64 {
        let ms = MARGIN * self.peak_ms + extra_ms - window_ms;
        if ms <= 0.0 || !ms_per_tick.is_finite() || ms_per_tick <= 0.0 {
            return 0;
        }
        (ms / ms_per_tick).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lead_follows_the_longest_gap_and_decays() {
        let mut lead = WriteLead::default();
        assert_eq!(lead.ticks(25.0, 5.0, 40.0), 0);
        lead.note_gap(100.0);
        // 1.5 × 100 + 5 − 40 = 115 ms: 5 ticks of 25 ms
        assert_eq!(lead.ticks(25.0, 5.0, 40.0), 5);
        // a shorter gap does not lower it at once; twenty seconds of them halve it
        lead.note_gap(2.0);
        assert_eq!(lead.ticks(25.0, 5.0, 40.0), 5);
        for _ in 0..10_000 {
            lead.note_gap(2.0);
        }
        assert!((lead.peak_ms - 50.0).abs() < 1.0, "{}", lead.peak_ms);
        // a window wider than the gap needs no lead
        assert_eq!(lead.ticks(25.0, 0.0, 500.0), 0);
    }
}
