//! Tempo sources for the live backend, behind [`crate::tempo::Tempo`].
//!
//! [`TempoMap`] is a piecewise-linear frame → tick map: each tempo change starts a new segment at
//! the tick the old one had reached, so musical time is continuous and never runs backwards.
//! [`Follower`] feeds it from one source:
//!
//! - `preset`: the preset's BPM, fixed.
//! - `transport`: JACK transport while it rolls with BBT information (a timebase master such as
//!   a DAW). The callback copies the position each cycle ([`super::TransportCell`]); here its
//!   BPM becomes the rate, and a phase lock keeps our beats on the transport's beats.
//! - `midi_clock`: incoming MIDI clock (24 per quarter). The interval between clocks is smoothed
//!   (exponential moving average, outliers such as a paused clock ignored) into a BPM, and the
//!   same phase lock keeps one of our quarters per 24 clocks, with Start (0xFA) re-aligning the
//!   next clock to a beat.
//!
//! The phase lock never jumps: on (re)acquisition it picks the beat alignment nearest to where
//! we are, then corrects the remaining error (at most half a beat) by running up to
//! [`MAX_CORRECTION`] faster or slower, with a time constant of about 1/[`PHASE_GAIN`] beats.
//! An error of more than two beats (the transport was relocated) re-acquires.

mod map;

pub use map::TempoMap;

use serde::Serialize;

use super::{InKind, TransportSnapshot};
use crate::tempo::{Tempo, MAX_BPM, MIN_BPM};

/// Fraction of the phase error (in beats) turned into a tempo correction.
pub const PHASE_GAIN: f64 = 0.25;
/// The largest relative tempo correction the phase lock applies.
pub const MAX_CORRECTION: f64 = 0.08;
/// MIDI clocks per quarter note.
pub const CLOCKS_PER_QUARTER: f64 = 24.0;
/// Smoothing of the MIDI clock interval (weight of the newest interval).
pub const CLOCK_SMOOTHING: f64 = 0.08;

/// Which source drives the tempo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum TempoSource {
    /// The preset's (or `--bpm`) tempo, fixed.
    Preset,
    /// JACK transport, while it rolls with BBT information.
    Transport,
    /// Incoming MIDI clock (24 per quarter).
    MidiClock,
}

/// What the tempo source did, for the report.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TempoStats {
    pub source: Option<TempoSource>,
    pub bpm_start: f64,
    pub bpm_end: f64,
    pub bpm_min: f64,
    pub bpm_max: f64,
    /// MIDI clock messages seen (0xF8).
    pub clocks: u64,
    /// Clocks inferred lost on the way (a gap of a whole number of intervals).
    pub clocks_lost: u64,
    /// Start / continue / stop messages seen.
    pub starts: u64,
    pub continues: u64,
    pub stops: u64,
    /// Transport readings used (rolling, with BBT).
    pub transport_readings: u64,
    /// Times the phase lock (re)acquired the source's beat.
    pub locks: u64,
    /// The last phase error, in ticks (source minus ours).
    pub phase_error_ticks: f64,
}

#[derive(Debug, Default, Clone)]
struct ClockState {
    last_frame: Option<u64>,
    interval: Option<f64>,
    count: u64,
}

/// Drives a [`TempoMap`] from a [`TempoSource`].
#[derive(Debug, Clone)]
pub struct Follower {
    source: TempoSource,
    map: TempoMap,
    /// source ticks + offset = our ticks (None: not locked yet).
    offset: Option<f64>,
    clock: ClockState,
    was_rolling: bool,
    stats: TempoStats,
}

impl Follower {
    pub fn new(source: TempoSource, map: TempoMap) -> Self {
        let bpm = map.bpm();
        let stats = TempoStats {
            source: Some(source),
            bpm_start: bpm,
            bpm_end: bpm,
            bpm_min: bpm,
            bpm_max: bpm,
            ..TempoStats::default()
        };
        Self {
            source,
            map,
            offset: None,
            clock: ClockState::default(),
            was_rolling: false,
            stats,
        }
    }

    pub fn map(&self) -> &TempoMap {
        &self.map
    }

    pub fn source(&self) -> TempoSource {
        self.source
    }

    pub fn stats(&self) -> TempoStats {
        TempoStats {
            bpm_end: self.map.bpm(),
            ..self.stats.clone()
        }
    }

    /// A clock message from an input (ignored unless the source is `midi_clock`, but counted).
    pub fn on_clock_message(&mut self, frame: u64, kind: InKind) {
        match kind {
            InKind::Clock => self.stats.clocks += 1,
            InKind::Start => self.stats.starts += 1,
            InKind::Continue => self.stats.continues += 1,
            InKind::Stop => self.stats.stops += 1,
            _ => return,
        }
        if self.source != TempoSource::MidiClock {
            return;
        }
        match kind {
            InKind::Start => {
                // The next clock is the first of the song: re-align it to a beat.
                self.clock.count = 0;
                self.clock.last_frame = None;
                self.offset = None;
            }
            InKind::Continue | InKind::Stop => self.clock.last_frame = None,
            InKind::Clock => self.on_clock(frame),
            _ => {}
        }
    }

    fn on_clock(&mut self, frame: u64) {
        let tpq = f64::from(self.map.tpq());
        if let Some(last) = self.clock.last_frame {
            let d = frame.saturating_sub(last) as f64;
            match self.clock.interval {
                None if d > 0.0 => self.clock.interval = Some(d),
                Some(i) if d > 0.0 => {
                    // A gap of k intervals is k clocks, k-1 of them lost on the way (an xrun):
                    // they still count for the position. Anything else (a pause of the
                    // sequencer, a burst) is not a tempo reading.
                    let k = (d / i).round().max(1.0);
                    if k <= 4.0 && (d / k - i).abs() < 0.25 * i {
                        self.clock.interval = Some(i + CLOCK_SMOOTHING * (d / k - i));
                        self.clock.count += k as u64 - 1;
                        self.stats.clocks_lost += k as u64 - 1;
                    }
                }
                _ => {}
            }
        }
        self.clock.last_frame = Some(frame);
        let source_tick = self.clock.count as f64 * tpq / CLOCKS_PER_QUARTER;
        self.clock.count += 1;
        if let Some(i) = self.clock.interval {
            let bpm = 60.0 * f64::from(self.map.rate()) / (i * CLOCKS_PER_QUARTER);
            self.observe(frame, source_tick, bpm);
        }
    }

    /// The transport as the callback last saw it (ignored unless the source is `transport`).
    pub fn on_transport(&mut self, snap: TransportSnapshot) {
        if self.source != TempoSource::Transport {
            return;
        }
        if !snap.rolling || !snap.qpm.is_finite() || snap.qpm <= 0.0 {
            self.was_rolling = false;
            return;
        }
        if !self.was_rolling {
            self.offset = None; // (re)started: lock afresh
            self.was_rolling = true;
        }
        self.stats.transport_readings += 1;
        let source_tick = snap.quarters * f64::from(self.map.tpq());
        self.observe(snap.frame, source_tick, snap.qpm);
    }

    /// The phase lock: the source says it is at `source_tick` at `frame`, at `bpm`.
    fn observe(&mut self, frame: u64, source_tick: f64, bpm: f64) {
        let tpq = f64::from(self.map.tpq());
        let ours = self.map.ticks_at(frame);
        let nearest = |ours: f64| ((ours - source_tick) / tpq).round() * tpq;
        let offset = match self.offset {
            Some(o) if (source_tick + o - ours).abs() <= 2.0 * tpq => o,
            _ => {
                self.stats.locks += 1;
                nearest(ours)
            }
        };
        self.offset = Some(offset);
        let err = source_tick + offset - ours;
        self.stats.phase_error_ticks = err;
        let correction = (PHASE_GAIN * err / tpq).clamp(-MAX_CORRECTION, MAX_CORRECTION);
        let target = (bpm * (1.0 + correction)).clamp(MIN_BPM, MAX_BPM);
        if (target - self.map.bpm()).abs() > 1e-4 * target {
            self.map.set_bpm_at(frame, target);
        }
        self.stats.bpm_min = self.stats.bpm_min.min(bpm);
        self.stats.bpm_max = self.stats.bpm_max.max(bpm);
    }
}

impl Tempo for Follower {
    fn ticks_at(&self, frame: u64) -> f64 {
        self.map.ticks_at(frame)
    }
    fn frame_at(&self, tick: f64) -> u64 {
        self.map.frame_at(tick)
    }
    fn bpm(&self) -> f64 {
        self.map.bpm()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    #[test]
    fn midi_clock_at_90_bpm_is_followed_and_phase_locked() {
        let map = TempoMap::new(120.0, 24, RATE, 0).unwrap();
        let mut f = Follower::new(TempoSource::MidiClock, map);
        let per_clock = 60.0 * f64::from(RATE) / (90.0 * 24.0); // 1333.3 frames
        f.on_clock_message(5_000, InKind::Start);
        let mut frame = 0;
        for i in 0..24 * 32 {
            // jitter of ±20 frames, as from a USB interface
            let jitter = [0i64, 13, -17, 5, -20, 9][i % 6];
            frame = (5_000.0 + i as f64 * per_clock) as i64 + jitter;
            f.on_clock_message(frame as u64, InKind::Clock);
        }
        assert!((f.bpm() - 90.0).abs() < 0.5, "bpm {}", f.bpm());
        let s = f.stats();
        assert_eq!(s.clocks, 24 * 32);
        assert_eq!(s.locks, 1);
        // after 32 beats our beats sit on the clock's beats (within a tick)
        let ours = f.ticks_at(frame as u64);
        let beat_phase = ours.rem_euclid(24.0);
        let off_beat = beat_phase.min(24.0 - beat_phase);
        assert!(off_beat < 1.0, "phase {beat_phase} (ticks {ours})");
    }

    #[test]
    fn lost_clocks_neither_bend_the_tempo_nor_the_phase() {
        let map = TempoMap::new(120.0, 24, RATE, 0).unwrap();
        let mut f = Follower::new(TempoSource::MidiClock, map);
        let per_clock = 60.0 * f64::from(RATE) / (150.0 * 24.0); // 800 frames
        f.on_clock_message(0, InKind::Start);
        let mut last = 0;
        for i in 0..24 * 16u64 {
            if i % 50 == 7 {
                continue; // lost in an xrun
            }
            last = (i as f64 * per_clock) as u64;
            f.on_clock_message(last, InKind::Clock);
        }
        assert!((f.bpm() - 150.0).abs() < 0.3, "bpm {}", f.bpm());
        assert_eq!(f.stats().clocks_lost, 8);
        let phase = f.ticks_at(last).rem_euclid(24.0);
        assert!(phase.min(24.0 - phase) < 1.0, "phase {phase}");
    }

    #[test]
    fn transport_rate_and_relocation() {
        let map = TempoMap::new(120.0, 24, RATE, 0).unwrap();
        let mut f = Follower::new(TempoSource::Transport, map);
        let period = 256u64;
        let qpm = 140.0;
        let mut q = 3.25; // the transport starts mid-beat
        for cycle in 0..2000u64 {
            f.on_transport(TransportSnapshot {
                frame: cycle * period,
                quarters: q,
                qpm,
                rolling: true,
            });
            q += qpm / 60.0 * period as f64 / f64::from(RATE);
        }
        assert!((f.bpm() - 140.0).abs() < 0.5, "bpm {}", f.bpm());
        assert!(f.stats().phase_error_ticks.abs() < 0.5, "{:?}", f.stats());
        assert_eq!(f.stats().locks, 1);
        // a relocation by 8 bars re-locks instead of racing to catch up
        f.on_transport(TransportSnapshot {
            frame: 2000 * period,
            quarters: q + 32.0,
            qpm,
            rolling: true,
        });
        assert_eq!(f.stats().locks, 2);
        // a stopped transport changes nothing
        let bpm = f.bpm();
        f.on_transport(TransportSnapshot {
            frame: 2001 * period,
            quarters: q,
            qpm: 60.0,
            rolling: false,
        });
        assert_eq!(f.bpm(), bpm);
    }

    #[test]
    fn preset_source_ignores_clock_and_transport() {
        let map = TempoMap::new(100.0, 24, RATE, 0).unwrap();
        let mut f = Follower::new(TempoSource::Preset, map);
        for i in 0..100u64 {
            f.on_clock_message(i * 500, InKind::Clock);
        }
        f.on_transport(TransportSnapshot {
            frame: 0,
            quarters: 0.0,
            qpm: 200.0,
            rolling: true,
        });
        assert_eq!(f.bpm(), 100.0);
        assert_eq!(f.stats().clocks, 100);
    }
}
