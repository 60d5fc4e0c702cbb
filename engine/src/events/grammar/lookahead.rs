//! Look-ahead of the grammar: whether some continuation of the current word can still be a word
//! of the language (a time word allowed after the last one, an item in order whose note is or is
//! not sounding), and the latest tick an instant can open at. `step` asks these before taking a
//! byte, so a state never holds a prefix that cannot complete.

use super::{GrammarState, ItemKey, Pos};
use crate::events::stream::{time_class, time_may_follow, LastWord};
use crate::events::LanguageParams;

impl GrammarState {
    /// The latest tick, at most `limit` (a deadline time may not pass), at which the next instant
    /// word can open given the time words read so far — a time word being read included,
    /// whatever digits may still come. `None` inside an instant (not a time position); `Some(0)`
    /// when no instant can open by `limit` at all.
    pub fn latest_instant(&self, limit: u64) -> Option<u64> {
        let grid = u64::from(self.grid);
        // The latest instant after a word of `n` ticks that follows the words before it.
        let after = |n: u64| -> Option<u64> {
            let at = self.tick + n;
            if at > limit {
                return None;
            }
            match time_class(n, &self.params_view())? {
                LastWord::MaxGrid => Some(limit),
                LastWord::Grid => Some((at + grid - 1).min(limit)),
                _ => Some(at),
            }
        };
        let reach = match self.pos {
            Pos::Instant { .. } => return None,
            Pos::Sep | Pos::Boundary => match self.last {
                LastWord::Offset => (self.tick <= limit).then_some(self.tick),
                LastWord::Grid => (self.tick <= limit).then(|| (self.tick + grid - 1).min(limit)),
                LastWord::Header | LastWord::MaxGrid => (self.tick <= limit).then_some(limit),
                LastWord::Instant => (self.tick < limit).then_some(limit),
            },
            Pos::TimeP | Pos::TimeUnderscore => match self.last {
                // Only an offset word can follow a smaller grid word.
                LastWord::Grid => (self.tick < limit).then(|| (self.tick + grid - 1).min(limit)),
                _ => (self.tick < limit).then_some(limit),
            },
            Pos::TimeDigits { value } => {
                // Every word these digits can still become (no time word has over 3 digits).
                let v = u64::from(value);
                std::iter::once(v)
                    .chain((0..10).map(|d| v * 10 + d))
                    .chain((0..100).map(|d| v * 100 + d))
                    .filter(|&n| n <= u64::from(self.max_grid) && self.time_word_ok(n as u32))
                    .filter_map(after)
                    .max()
            }
        };
        Some(reach.unwrap_or(0))
    }

    pub(super) fn time_word_ok(&self, n: u32) -> bool {
        let params = self.params_view();
        time_class(u64::from(n), &params).is_some_and(|c| time_may_follow(self.last, c))
    }

    pub(super) fn params_view(&self) -> LanguageParams {
        LanguageParams {
            ticks_per_quarter: self.grid * 2,
            velocity_bins: self.last_letter - b'a' + 1,
        }
    }

    /// Whether some allowed time word has a decimal form starting with the digits of `prefix`
    /// (`prefix == 0`: no digit yet).
    pub(super) fn time_prefix_feasible(&self, prefix: u32) -> bool {
        let grid = u64::from(self.grid);
        let max = u64::from(self.max_grid);
        let (offsets, grids) = match self.last {
            LastWord::Header | LastWord::Instant | LastWord::MaxGrid => (true, true),
            LastWord::Grid => (true, false),
            LastWord::Offset => (false, false),
        };
        let hit = |lo: u64, hi: u64| {
            (offsets && lo.max(1) <= hi.min(grid.saturating_sub(1)))
                || (grids && {
                    let from = lo.max(grid);
                    let first = from.div_ceil(grid) * grid;
                    first <= hi.min(max)
                })
        };
        if prefix == 0 {
            return hit(1, max);
        }
        let mut scale: u64 = 1;
        loop {
            let lo = u64::from(prefix) * scale;
            if lo > max {
                return false;
            }
            if hit(lo, lo + scale - 1) {
                return true;
            }
            scale *= 10;
        }
    }

    /// Whether a new item of this instant can be (channel `ch` or any allowed, kind `on` or
    /// either, pitch in `lo..=hi`), given the last item and the sounding notes.
    pub(super) fn item_feasible(
        &self,
        last: Option<ItemKey>,
        ch: Option<u8>,
        on: Option<bool>,
        lo: u8,
        hi: u8,
    ) -> bool {
        if lo > hi || hi > 127 {
            return false;
        }
        let range: u128 = if hi - lo == 127 {
            u128::MAX
        } else {
            ((1u128 << (hi - lo + 1)) - 1) << lo
        };
        let chans = match ch {
            Some(c) => c..=c,
            None => 0..=15,
        };
        for c in chans {
            if self.channel_filter >> c & 1 == 0 {
                continue;
            }
            for kind in 0..2u8 {
                if on.is_some_and(|o| u8::from(o) != kind) {
                    continue;
                }
                let mut mask = range;
                if let Some((lk, lc, lp)) = last {
                    if kind < lk || (kind == lk && c < lc) {
                        continue;
                    }
                    if kind == lk && c == lc {
                        // pitches strictly above lp
                        mask &= if lp >= 127 { 0 } else { u128::MAX << (lp + 1) };
                    }
                }
                let s = self.sounding.channel(c);
                mask &= if kind == 0 { s } else { !s };
                if mask != 0 {
                    return true;
                }
            }
        }
        false
    }
}
