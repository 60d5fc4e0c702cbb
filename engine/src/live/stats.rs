//! Lock-free counters shared by the input and output sides (writers: the JACK callback, or
//! ALSA's input callbacks and timer) and the rest (readers).
//!
//! Everything here is a fixed array of atomics allocated before the client is activated, so the
//! callback only does relaxed `fetch_add`/`fetch_max` on them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Log-linear histogram of durations in nanoseconds: values below 16 ns have a bucket each;
/// above, each power of two is split in 16 buckets (relative error under 1/16). Covers up to
/// 2^40 ns (18 minutes); larger values land in the last bucket.
pub struct Histogram {
    buckets: [AtomicU64; Histogram::BUCKETS],
    max: AtomicU64,
    count: AtomicU64,
    sum: AtomicU64,
}

impl Histogram {
    const SUB: u32 = 16;
    const SUB_BITS: u32 = 4;
    const MAX_EXP: u32 = 40;
    pub const BUCKETS: usize = (Self::SUB + (Self::MAX_EXP - Self::SUB_BITS) * Self::SUB) as usize;

    pub fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            max: AtomicU64::new(0),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    #[inline]
    fn index(v: u64) -> usize {
        if v < u64::from(Self::SUB) {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB_BITS
        let sub = ((v >> (exp - Self::SUB_BITS)) & u64::from(Self::SUB - 1)) as u32;
        let i = Self::SUB + (exp - Self::SUB_BITS) * Self::SUB + sub;
        (i as usize).min(Self::BUCKETS - 1)
    }

    /// The largest value that falls in bucket `i` (the percentile is reported as this bound).
    fn upper(i: usize) -> u64 {
        let i = i as u32;
        if i < Self::SUB {
            return u64::from(i);
        }
        let exp = (i - Self::SUB) / Self::SUB + Self::SUB_BITS;
        let sub = u64::from((i - Self::SUB) % Self::SUB);
        let step = 1u64 << (exp - Self::SUB_BITS);
        (1u64 << exp) + (sub + 1) * step - 1
    }

    /// Record one value (real-time safe: three relaxed atomic adds and a max).
    #[inline]
    pub fn record(&self, v: u64) {
        self.buckets[Self::index(v)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    pub fn mean(&self) -> f64 {
        let n = self.count();
        if n == 0 {
            0.0
        } else {
            self.sum.load(Ordering::Relaxed) as f64 / n as f64
        }
    }

    /// The smallest bucket bound at or below which `q` (0..=1) of the values lie, capped by the
    /// exact maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i).min(self.max());
            }
        }
        self.max()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// What the callback counts. Field names are the report's.
#[derive(Default)]
pub struct RtStats {
    /// Process cycles run.
    pub cycles: AtomicU64,
    /// Raw messages read from the input ports (every one lands in exactly one of the counters
    /// below: notes_in, clock_in, filtered, merged, unmatched_off, dropped_*, deferred_offs).
    pub received: AtomicU64,
    /// Note events passed to the decoder thread.
    pub notes_in: AtomicU64,
    /// MIDI clock / start / continue / stop messages passed on as tempo information.
    pub clock_in: AtomicU64,
    /// Messages that are not notes or clock (CC, pitch bend, SysEx, …): filtered by design.
    pub filtered: AtomicU64,
    /// Note-ons of a (channel, pitch) already sounding on the same mapped channel (two inputs
    /// or a passed channel 0 landing on a channel in use): merged into the sounding note.
    pub merged: AtomicU64,
    /// Note-offs of notes that are not sounding (their note-on was merged, dropped, or came
    /// before the engine started).
    pub unmatched_off: AtomicU64,
    /// Note-ons dropped because the ring to the decoder thread was full.
    pub dropped_ring_full: AtomicU64,
    /// Clock messages dropped because the ring to the decoder thread was full.
    pub dropped_clock_ring_full: AtomicU64,
    /// Note-offs that found the ring full and were sent in a later cycle instead (never lost).
    pub deferred_offs: AtomicU64,
    /// `MidiWriter::write` refused an event (port buffer full); it is retried next cycle.
    pub out_buffer_full: AtomicU64,
    /// Channel-0 messages written to `out`.
    pub written: AtomicU64,
    /// Written in a cycle that began after their due frame.
    pub written_late: AtomicU64,
    /// The largest lateness of a written event, in frames.
    pub late_frames_max: AtomicU64,
    /// Note-offs written at stop for notes still sounding.
    pub stop_offs: AtomicU64,
    /// Released events thrown away at stop (never written: their notes would start after stop).
    pub discarded_at_stop: AtomicU64,
    /// Cycles that saw the transport rolling with valid BBT.
    pub transport_cycles: AtomicU64,
    /// The callback's own run time per cycle, in nanoseconds.
    pub callback_ns: Histogram,
}

impl RtStats {
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bounds_hold_every_value() {
        for v in [
            0u64, 1, 15, 16, 17, 31, 32, 1000, 4095, 4096, 123_456, 9_999_999,
        ] {
            let i = Histogram::index(v);
            assert!(
                Histogram::upper(i) >= v,
                "v {v} bucket {i} upper {}",
                Histogram::upper(i)
            );
            if i > 0 {
                assert!(
                    Histogram::upper(i - 1) < v,
                    "v {v} also fits bucket {}",
                    i - 1
                );
            }
            assert!((Histogram::upper(i) - v) as f64 <= v as f64 / 16.0 + 1.0);
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000); // 1 µs … 1 ms
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), 1_000_000);
        let p99 = h.quantile(0.99);
        assert!(
            (990_000..=990_000 + 990_000 / 16).contains(&p99),
            "p99 {p99}"
        );
        let p50 = h.quantile(0.5);
        assert!(
            (500_000..=500_000 + 500_000 / 16).contains(&p50),
            "p50 {p50}"
        );
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert!((h.mean() - 500_500.0).abs() < 1.0);
    }
}
