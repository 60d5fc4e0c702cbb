//! The event language's parameters (docs/FORMAT.md, "Parameters").

use super::EventError;

/// The version string of the event language this module speaks.
pub const LANGUAGE_VERSION: &str = "v1";

/// Largest `ticks_per_quarter` accepted: it must fit a MIDI file's 15-bit division word.
pub const MAX_TICKS_PER_QUARTER: u32 = 0x7FFE;

/// Musical resolution and velocity levels of the event language.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct LanguageParams {
    /// Ticks per quarter note (tpq): even, at least 2. Default 24 (the MIDI clock).
    pub ticks_per_quarter: u32,
    /// Velocity levels, written `a`, `b`, …: 1 to 26. Default 8.
    pub velocity_bins: u8,
}

impl Default for LanguageParams {
    fn default() -> Self {
        LanguageParams {
            ticks_per_quarter: 24,
            velocity_bins: 8,
        }
    }
}

impl LanguageParams {
    /// The grid unit, an eighth note: `tpq / 2`.
    pub fn grid(&self) -> u32 {
        self.ticks_per_quarter / 2
    }

    /// The largest grid word, a 4/4 bar: `4 × tpq`.
    pub fn max_grid(&self) -> u32 {
        self.ticks_per_quarter * 4
    }

    /// Check the parameters against FORMAT.md's limits.
    pub fn validate(&self) -> Result<(), EventError> {
        let tpq = self.ticks_per_quarter;
        if tpq < 2 || !tpq.is_multiple_of(2) || tpq > MAX_TICKS_PER_QUARTER {
            return Err(EventError::Params(format!(
                "ticks per quarter must be even and between 2 and {MAX_TICKS_PER_QUARTER}, got {tpq}"
            )));
        }
        if !(1..=26).contains(&self.velocity_bins) {
            return Err(EventError::Params(format!(
                "velocity bins must be between 1 and 26, got {}",
                self.velocity_bins
            )));
        }
        Ok(())
    }

    /// The letter of the highest velocity bin.
    pub fn last_velocity_letter(&self) -> u8 {
        b'a' + self.velocity_bins.saturating_sub(1)
    }
}

/// The velocity bin (0-based) of a note-on velocity `v` in 1..=127 (rule 11):
/// `⌊(v − 1) · bins / 127⌋`. Velocities outside 1..=127 are clamped into it.
pub fn bin_of_velocity(v: u8, bins: u8) -> u8 {
    let v = u32::from(v.clamp(1, 127));
    let bins = u32::from(bins.max(1));
    // (v-1)·bins/127 < bins, so the result fits a u8.
    ((v - 1) * bins / 127) as u8
}

/// The MIDI velocity written for bin `b` (rule 11, the bin's middle):
/// `⌊(2b + 1) · 127 / (2 · bins)⌋ + 1`. Bins past the last are clamped to it.
pub fn velocity_of_bin(bin: u8, bins: u8) -> u8 {
    let bins = u32::from(bins.max(1));
    let b = u32::from(bin).min(bins - 1);
    // (2b+1)·127/(2·bins) ≤ 126, so the result is at most 127.
    ((2 * b + 1) * 127 / (2 * bins) + 1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_format_md() {
        let p = LanguageParams::default();
        assert_eq!((p.grid(), p.max_grid()), (12, 96));
        assert!(p.validate().is_ok());
    }

    #[test]
    fn bad_params_are_refused() {
        for (tpq, bins) in [(0, 8), (3, 8), (25, 8), (24, 0), (24, 27), (0x8000, 8)] {
            let p = LanguageParams {
                ticks_per_quarter: tpq,
                velocity_bins: bins,
            };
            assert!(p.validate().is_err(), "{tpq} {bins}");
        }
    }

    #[test]
    fn every_bin_middle_bins_back_to_itself() {
        for bins in 1..=26u8 {
            for b in 0..bins {
                let v = velocity_of_bin(b, bins);
                assert!((1..=127).contains(&v));
                assert_eq!(
                    bin_of_velocity(v, bins),
                    b,
                    "bins {bins} bin {b} velocity {v}"
                );
            }
            // Bins are monotone and cover 0..bins.
            let all: Vec<u8> = (1..=127).map(|v| bin_of_velocity(v, bins)).collect();
            assert!(all.windows(2).all(|w| w[0] <= w[1]));
            assert_eq!((all[0], all[126]), (0, bins - 1));
        }
    }

    #[test]
    fn default_bins_by_hand() {
        // b = ⌊(v−1)·8/127⌋: 1 → a, 16 → a (15·8/127 = 0.94), 17 → b, 127 → h.
        assert_eq!(bin_of_velocity(1, 8), 0);
        assert_eq!(bin_of_velocity(16, 8), 0);
        assert_eq!(bin_of_velocity(17, 8), 1);
        assert_eq!(bin_of_velocity(127, 8), 7);
        // v = ⌊(2b+1)·127/16⌋ + 1: a → 8, h → 120.
        assert_eq!(velocity_of_bin(0, 8), 8);
        assert_eq!(velocity_of_bin(7, 8), 120);
    }
}
