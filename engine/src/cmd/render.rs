//! `midicopilot-engine render --bundle B IN.mid -o OUT.mid`: play a MIDI file as the human
//! through the live decoder loop (the `file` backend) and write the human parts plus the model's
//! channel 0. The file's parts take channels 1–15 first (events::parts).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{ensure, Context as _, Result};
use candle_core::Device;

use crate::backend::file::{output_midi, render, Clock, RenderOptions};
use crate::bundle::Bundle;
use crate::context::ContextConfig;
use crate::events::parts::{human_part, Layout};
use crate::model::Olmo2;
use crate::sampler::{Policy, SamplingParams};
use crate::session::{Engine, Session, SessionConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockArg {
    /// Tick by tick, as fast as the machine goes: reproducible for a seed.
    Virtual,
    /// Real time at --bpm: measures lateness.
    Wall,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The model bundle folder.
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// The MIDI file the human plays (its parts take channels 1–15: see --channels).
    #[arg(value_name = "IN.mid")]
    pub input: PathBuf,
    /// The MIDI file to write: the human parts plus the model's channel 0.
    #[arg(short, long, value_name = "OUT.mid")]
    pub output: PathBuf,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = ClockArg::Virtual)]
    pub clock: ClockArg,
    /// Sampling temperature (0: always the most likely allowed token).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability (0 < P ≤ 1).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Tempo of the wall clock and of the written file.
    #[arg(long, default_value_t = 120.0)]
    pub bpm: f64,
    /// Context limit in tokens (the KV cache's size; flushes keep half).
    #[arg(long, default_value_t = 512)]
    pub context: usize,
    /// Generate this far ahead of now (default: one beat).
    #[arg(long, value_name = "TICKS")]
    pub lookahead_ticks: Option<u64>,
    /// Release events this far before they are due (default: a sixth of a beat).
    #[arg(long, value_name = "TICKS")]
    pub release_ticks: Option<u64>,
    /// Genre word of the context header, [GENRE_<NAME>] (default: the bundle's first).
    #[arg(long, value_name = "NAME")]
    pub genre: Option<String>,
    /// Part word of the context header, [PART_<NAME>] (default: the bundle's first).
    #[arg(long, value_name = "NAME")]
    pub part: Option<String>,
    /// Longest channel-0 note in ticks (default: two 4/4 bars).
    #[arg(long, value_name = "TICKS")]
    pub max_note_ticks: Option<u64>,
    /// Most channel-0 notes sounding at once.
    #[arg(long, default_value_t = 8)]
    pub max_polyphony: u32,
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

pub fn run(args: RenderArgs) -> Result<()> {
    ensure!(
        args.bpm.is_finite() && (1.0..=999.0).contains(&args.bpm),
        "--bpm {}: the tempo must be between 1 and 999",
        args.bpm
    );
    let input_name = args.input.display().to_string();
    let bytes = std::fs::read(&args.input)
        .context("cannot read the file")
        .context(input_name.clone())?;
    let bundle = Bundle::load(&args.bundle)?;
    let model = Olmo2::load(&bundle, &Device::Cpu)
        .with_context(|| format!("loading the model of {}", args.bundle.display()))?;
    let engine = Engine::new(&bundle, Arc::new(model))?;
    let params = engine.params;
    let human = human_part(&bytes, &params, args.channels).context(input_name.clone())?;
    if human.notes_left_out() > 0 {
        eprintln!(
            "midicopilot-engine: render: {input_name}: {} notes on channel 0 left out \
             (--channels keep; --channels parts moves every part onto 1–15)",
            human.notes_left_out()
        );
    }
    let header = engine.header(args.genre.as_deref(), args.part.as_deref())?;

    let tpq = u64::from(params.ticks_per_quarter);
    let mut cfg = SessionConfig::defaults(&params);
    cfg.seed = args.seed;
    cfg.sampling = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
    };
    cfg.context = ContextConfig::for_limit(args.context);
    cfg.lookahead_ticks = args.lookahead_ticks.unwrap_or(cfg.lookahead_ticks);
    cfg.release_ticks = args
        .release_ticks
        .unwrap_or(cfg.release_ticks.min(cfg.lookahead_ticks));
    cfg.policy = Policy {
        max_note_ticks: args.max_note_ticks.unwrap_or(cfg.policy.max_note_ticks),
        max_polyphony: args.max_polyphony,
    };
    if args.clock == ClockArg::Wall {
        // Read the input between tokens.
        cfg.max_steps_per_advance = 1;
    }
    let mut session = Session::new(engine, &header, cfg)?;
    let opts = RenderOptions {
        clock: match args.clock {
            ClockArg::Virtual => Clock::Virtual,
            ClockArg::Wall => Clock::Wall,
        },
        bpm: args.bpm,
        tail_ticks: args.tail_ticks.unwrap_or(4 * tpq),
        idle_chunk: 32,
    };
    let out = render(&mut session, &human.events, &params, &opts)?;
    let midi = output_midi(&out, &params, args.bpm);
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
        report["parts"] = serde_json::to_value(&human.parts)?;
        report["notes_left_out"] = human.notes_left_out().into();
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .context("cannot write the report")
            .with_context(|| path.display().to_string())?;
    }
    Ok(())
}
