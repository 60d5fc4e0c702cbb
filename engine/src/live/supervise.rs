//! The main thread's part of a live run, the same for every backend (JACK, ALSA): start the
//! decoder thread with tick 0 at "now", then wait for a reason to stop.
//!
//! What differs between backends (opening ports, the output side, the last note-offs) stays in
//! `backend::jack` and `backend::alsa`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::clock::{Follower, TempoMap, TempoSource};
use super::decoder_thread::{self, DecoderConfig, DecoderStats};
use super::report::StopReason;
use super::switch::Switcher;
use super::{InEvent, OutEvent, Shared};
use crate::session::Session;

/// How the decoder thread keeps time: the tempo and the output side's frame rate.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub tempo_source: TempoSource,
    pub bpm: f64,
    /// Frames per second of the backend's clock (JACK: the sample rate; ALSA: microseconds).
    pub rate: u32,
    /// Release events to the output side this long before they are due.
    pub release_horizon_ms: f64,
    /// Flush prefill tokens per idle call.
    pub idle_chunk: usize,
}

/// The running decoder thread.
pub struct Decoder {
    handle: JoinHandle<DecoderStats>,
    quit: Arc<AtomicBool>,
}

impl Decoder {
    /// Start the decoder with tick 0 at the backend's current frame (the end of the first cycle).
    pub fn start(
        session: Session,
        timing: Timing,
        input: rtrb::Consumer<InEvent>,
        output: rtrb::Producer<OutEvent>,
        shared: Arc<Shared>,
        control: Option<Switcher>,
    ) -> Result<Self> {
        let tpq = session.context().params().ticks_per_quarter;
        let origin = shared.now_frame();
        let map = TempoMap::new(timing.bpm, tpq, timing.rate, origin)
            .map_err(|e| anyhow::anyhow!("--bpm: {e}"))?;
        let follower = Follower::new(timing.tempo_source, map);
        let cfg = DecoderConfig {
            horizon_frames: horizon_frames(timing.release_horizon_ms, timing.rate),
            idle_chunk: timing.idle_chunk,
        };
        let quit = Arc::new(AtomicBool::new(false));
        let handle = {
            let quit = quit.clone();
            std::thread::Builder::new()
                .name("midicopilot-decoder".into())
                .spawn(move || {
                    decoder_thread::run_with_control(
                        session, follower, input, output, shared, cfg, quit, control,
                    )
                })
                .context("starting the decoder thread")?
        };
        Ok(Self { handle, quit })
    }

    /// The thread ended by itself (only an error ends it).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Ask the thread to end and collect what it did.
    pub fn stop(self) -> Result<DecoderStats> {
        self.quit.store(true, Ordering::Release);
        match self.handle.join() {
            Ok(stats) => Ok(stats),
            Err(_) => bail!("the decoder thread panicked"),
        }
    }
}

/// A release horizon in frames of a clock running at `rate` frames a second.
pub fn horizon_frames(ms: f64, rate: u32) -> u64 {
    (ms / 1e3 * f64::from(rate)).round().max(0.0) as u64
}

/// What can end a run besides the decoder failing.
pub struct StopWhen<'a> {
    /// SIGINT / SIGTERM arrived.
    pub signal: &'a AtomicBool,
    /// A `stop` line on the control channel.
    pub command: Option<&'a AtomicBool>,
    /// `--run-seconds`, counted from `started`.
    pub run_seconds: Option<f64>,
    pub started: Instant,
}

/// Wait until the run has a reason to stop, and return it (checked every 5 ms; the real-time
/// side does not depend on this thread's promptness).
pub fn wait_for_stop(when: &StopWhen<'_>, shared: &Shared, decoder: &Decoder) -> StopReason {
    loop {
        if when.signal.load(Ordering::Acquire) {
            return StopReason::Signal;
        }
        if when.command.is_some_and(|c| c.load(Ordering::Acquire)) {
            return StopReason::Command;
        }
        if shared.server_gone.load(Ordering::Acquire) {
            return StopReason::ServerShutdown;
        }
        if decoder.is_finished() {
            return StopReason::DecoderError;
        }
        if when
            .run_seconds
            .is_some_and(|s| when.started.elapsed().as_secs_f64() >= s)
        {
            return StopReason::RunSeconds;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_in_frames_of_either_clock() {
        assert_eq!(horizon_frames(40.0, 48_000), 1920);
        assert_eq!(horizon_frames(40.0, 1_000_000), 40_000); // ALSA: microsecond frames
        assert_eq!(horizon_frames(0.0, 48_000), 0);
        assert_eq!(horizon_frames(0.01, 48_000), 0);
    }
}
