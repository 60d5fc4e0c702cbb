//! The flags both live backends share (`jack`, `alsa`): the session a song plays with (what a
//! set-list switch can change, [`SessionSpec`]) and the run's report and stop.
//!
//! Flattened into each backend's own arguments, so a preset's flags mean the same on both.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, ensure, Context as _, Result};
use serde::Serialize;

use super::session_flags::SessionFlags;
use crate::live::clock::TempoSource;
use crate::session::{Release, SessionSpec};

#[derive(Debug, clap::Args)]
pub struct LiveArgs {
    /// The session: bundle, header, sampling, context, weights (shared with the other
    /// model commands).
    #[command(flatten)]
    pub session: SessionFlags,
    /// Where the tempo comes from (`transport`: JACK's, jack backend only).
    #[arg(long, value_enum, default_value_t = TempoSource::Preset)]
    pub tempo_source: TempoSource,
    /// The tempo (the starting tempo for transport and midi_clock).
    #[arg(long, default_value_t = 120.0)]
    pub bpm: f64,
    /// Hand events to the output side (JACK's real-time thread, ALSA's timer) this long before
    /// they are due.
    #[arg(long, value_name = "MS", default_value_t = 40.0)]
    pub release_horizon_ms: f64,
    /// Write the run's report (events, lateness, drops, timings) as JSON here at exit.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Stop by itself after this many seconds (tests, benchmarks).
    #[arg(long, value_name = "N")]
    pub run_seconds: Option<f64>,
    /// Tokens generated per decoder step between reads of the input (small: more responsive).
    #[arg(long, default_value_t = 2, hide = true)]
    pub steps_per_advance: usize,
}

impl LiveArgs {
    /// The session these flags describe (a switch starts from it).
    pub fn spec(&self) -> SessionSpec {
        self.session.spec(
            self.bpm,
            Release::HorizonMs(self.release_horizon_ms),
            Some(self.steps_per_advance),
            true,
        )
    }

    /// Every check that needs neither the audio system nor the model, one line naming the flag.
    pub fn validate(&self) -> Result<()> {
        if let Some(s) = self.run_seconds {
            ensure!(
                s.is_finite() && s > 0.0,
                "--run-seconds {s}: expected a positive number"
            );
        }
        if let Err(e) = self.spec().validate() {
            // The spec speaks in its field names, also used by the control channel:
            // "max_polyphony 0: …" → "--max-polyphony 0: …".
            let msg = format!("{e:#}");
            let (field, rest) = msg.split_once(' ').unwrap_or((msg.as_str(), ""));
            bail!("--{} {rest}", field.replace('_', "-"));
        }
        Ok(())
    }

    /// Write the report to `--report`, if asked for.
    pub fn write_report(&self, report: &impl Serialize) -> Result<()> {
        let Some(path) = &self.report else {
            return Ok(());
        };
        let json = serde_json::to_string_pretty(report)?;
        std::fs::write(path, json + "\n")
            .context("cannot write the report")
            .with_context(|| path.display().to_string())
    }
}

/// SIGINT and SIGTERM set the returned flag: the run then stops cleanly (note-offs first), even
/// while the model is still loading.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let signal = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, signal.clone()).context("installing signal handlers")?;
    }
    Ok(signal)
}
