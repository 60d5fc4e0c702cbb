//! `midicopilot-engine render --bundle B IN.mid -o OUT.mid`: play a MIDI file as the human
//! through the live decoder loop (the `file` backend) and write the human parts plus the model's
//! channel 0. The file's parts take channels 1–15 first (events::parts).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{ensure, Context as _, Result};

use super::session_flags::SessionFlags;
use crate::backend::file::{output_midi, render, Clock, RenderOptions};
use crate::bundle::Bundle;
use crate::events::parts::{human_part, Layout};
use crate::model::Olmo2;
use crate::session::{Engine, Release, SessionSpec};
use crate::tempo::{MAX_BPM, MIN_BPM};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockArg {
    /// Tick by tick, as fast as the machine goes: reproducible for a seed.
    Virtual,
    /// Real time at --bpm: measures lateness.
    Wall,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The session: bundle, header, sampling, context, weights (shared with the other
    /// model commands).
    #[command(flatten)]
    pub session: SessionFlags,
    /// The MIDI file the human plays (its parts take channels 1–15: see --channels).
    #[arg(value_name = "IN.mid")]
    pub input: PathBuf,
    /// The MIDI file to write: the human parts plus the model's channel 0.
    #[arg(short, long, value_name = "OUT.mid")]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value_t = ClockArg::Virtual)]
    pub clock: ClockArg,
    /// Tempo of the wall clock and of the written file (default: IN's first tempo, else 120, the
    /// MIDI default).
    #[arg(long)]
    pub bpm: Option<f64>,
    /// Release events this far before they are due (default: a sixth of a beat).
    #[arg(long, value_name = "TICKS")]
    pub release_ticks: Option<u64>,
    /// Never leave an instant to the band: the model plays at every instant its text reaches
    /// (the engine before it listened; for comparisons).
    #[arg(long)]
    pub no_listen: bool,
    /// Keep playing this long after the last human event (default: one 4/4 bar).
    #[arg(long, value_name = "TICKS")]
    pub tail_ticks: Option<u64>,
    /// How IN's notes become the human part: `parts` gives every part (track, channel) a
    /// channel of its own, 1–15, as the training corpus does; `keep` takes IN's channels as they
    /// are and leaves out its channel 0 (the model's).
    #[arg(long, value_enum, default_value_t = Layout::Parts)]
    pub channels: Layout,
    /// Write figures (events, lateness, flushes, prefix cuts, tokens, ms/token) as JSON here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

impl RenderArgs {
    /// The session these flags describe (without --bpm, 120 until the file's own tempo is read).
    pub fn spec(&self) -> SessionSpec {
        // On the wall clock, read the input between tokens.
        let steps_per_advance = (self.clock == ClockArg::Wall).then_some(1);
        self.session.spec(
            self.bpm.unwrap_or(120.0),
            Release::Ticks(self.release_ticks),
            steps_per_advance,
            !self.no_listen,
        )
    }
}

pub fn run(args: RenderArgs) -> Result<()> {
    if let Some(bpm) = args.bpm {
        ensure!(
            bpm.is_finite() && (MIN_BPM..=MAX_BPM).contains(&bpm),
            "--bpm {bpm}: the tempo must be between {MIN_BPM} and {MAX_BPM}"
        );
    }
    let input_name = args.input.display().to_string();
    let bytes = std::fs::read(&args.input)
        .context("cannot read the file")
        .context(input_name.clone())?;
    args.session.model.apply_threads()?;
    let device = args.session.model.device()?;
    let bundle = Bundle::load(&args.session.bundle)?;
    let mut spec = args.spec();
    let options = spec.model_options(&bundle);
    let model = Olmo2::load_with(&bundle, &device, options)
        .with_context(|| format!("loading the model of {}", args.session.bundle.display()))?;
    let engine = Engine::new(&bundle, Arc::new(model))?;
    let params = engine.params;
    let human = human_part(&bytes, &params, args.channels).context(input_name.clone())?;
    let bpm = args.bpm.unwrap_or_else(|| file_bpm(human.first_tempo));
    if human.notes_left_out() > 0 {
        eprintln!(
            "midicopilot-engine: render: {input_name}: {} notes on channel 0 left out \
             (--channels keep; --channels parts moves every part onto 1–15)",
            human.notes_left_out()
        );
    }
    spec.bpm = bpm;
    let (mut session, header) = spec.build(engine)?;
    let tpq = u64::from(params.ticks_per_quarter);
    let opts = RenderOptions {
        clock: match args.clock {
            ClockArg::Virtual => Clock::Virtual,
            ClockArg::Wall => Clock::Wall,
        },
        bpm,
        tail_ticks: args.tail_ticks.unwrap_or(4 * tpq),
        idle_chunk: 32,
    };
    let out = render(&mut session, &human.events, &params, &opts)?;
    let midi = output_midi(&out, &params, bpm);
    ensure!(
        !midi.is_empty(),
        "{}: the piece is too long for a MIDI file",
        args.output.display()
    );
    std::fs::write(&args.output, midi)
        .context("cannot write the file")
        .with_context(|| args.output.display().to_string())?;
    if let Some(path) = &args.report {
        let mut report = serde_json::to_value(&out.report)?;
        report["channels"] = serde_json::to_value(args.channels)?;
        report["bpm_from_file"] = args.bpm.is_none().into();
        report["parts"] = serde_json::to_value(&human.parts)?;
        report["notes_left_out"] = human.notes_left_out().into();
        let played = session.config();
        report["header"] = serde_json::to_value(&header)?;
        report["temperature"] = played.sampling.temperature.into();
        report["top_p"] = played.sampling.top_p.into();
        report["max_polyphony"] = played.policy.max_polyphony.into();
        report["weights"] = options.weights.name().into();
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .context("cannot write the report")
            .with_context(|| path.display().to_string())?;
    }
    Ok(())
}

/// The tempo a file sets first, as BPM within the engine's range (120, the MIDI default, when it
/// sets none).
fn file_bpm(us_per_quarter: Option<u32>) -> f64 {
    match us_per_quarter {
        Some(us) if us > 0 => (60_000_000.0 / f64::from(us)).clamp(MIN_BPM, MAX_BPM),
        _ => 120.0,
    }
}

#[cfg(test)]
mod tests {
    use super::file_bpm;

    #[test]
    fn a_files_tempo_in_bpm() {
        assert_eq!(file_bpm(Some(500_000)), 120.0);
        assert_eq!(file_bpm(Some(600_000)), 100.0);
        assert_eq!(file_bpm(None), 120.0);
        assert_eq!(file_bpm(Some(0)), 120.0);
        assert_eq!(file_bpm(Some(1)), 999.0); // absurd tempos are held to the engine's range
        assert!((file_bpm(Some(0xFF_FFFF)) - 3.5763).abs() < 1e-4); // the slowest a file can set
    }
}
