//! `midicopilot-engine jack --bundle B [...]`: play live as a JACK client (docs/LIVE.md).
//!
//! The flags are the ones `midicopilot.host.engine.engine_args(preset, live=True)` writes, so
//! `midicopilot play PRESET` is this command with the preset's settings.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, ensure, Context as _, Result};
use candle_core::Device;

use crate::backend::jack::{run_with_control as run_jack, JackOptions};
use crate::bundle::Bundle;
use crate::live::clock::TempoSource;
use crate::live::ports::parse_inputs;
use crate::model::Olmo2;
use crate::session::{Engine, Session};

#[derive(Debug, clap::Args)]
pub struct JackArgs {
    /// The model bundle folder.
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// The JACK client's name (its ports are NAME:in_<input> and NAME:out).
    #[arg(long, value_name = "NAME", default_value = "midicopilot")]
    pub client_name: String,
    /// JACK server to join (default: $JACK_DEFAULT_SERVER, else 'default'). Never starts one.
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,
    /// An input port `in_NAME`: `=pass` keeps the player's channels (channel 0 is moved to 1),
    /// `=CH` (1–15) makes everything it receives channel CH. Repeatable; default one input `in`
    /// (pass).
    #[arg(long = "input", value_name = "NAME[=CH|=pass]")]
    pub inputs: Vec<String>,
    /// Only `jack` here (accepted so a preset's flags can be passed as they are).
    #[arg(long, value_name = "jack", default_value = "jack")]
    pub backend: String,
    /// Where the tempo comes from.
    #[arg(long, value_enum, default_value_t = TempoSource::Preset)]
    pub tempo_source: TempoSource,
    /// The tempo (the starting tempo for transport and midi_clock).
    #[arg(long, default_value_t = 120.0)]
    pub bpm: f64,
    /// Generate this far ahead of now (default: one beat).
    #[arg(long, value_name = "TICKS")]
    pub lookahead_ticks: Option<u64>,
    /// Hand events to the real-time thread this long before they are due.
    #[arg(long, value_name = "MS", default_value_t = 40.0)]
    pub release_horizon_ms: f64,
    /// Sampling temperature (0: always the most likely allowed token).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability (0 < P ≤ 1).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Genre word of the context header, [GENRE_<NAME>] (default: the bundle's first).
    #[arg(long, value_name = "NAME")]
    pub genre: Option<String>,
    /// Part word of the context header, [PART_<NAME>] (default: the bundle's first).
    #[arg(long, value_name = "NAME")]
    pub part: Option<String>,
    /// Context limit in tokens (the KV cache's size; flushes keep half).
    #[arg(long, default_value_t = 512)]
    pub context: usize,
    /// Longest channel-0 note in ticks (default: two 4/4 bars).
    #[arg(long, value_name = "TICKS")]
    pub max_note_ticks: Option<u64>,
    /// Most channel-0 notes sounding at once.
    #[arg(long, default_value_t = 8)]
    pub max_polyphony: u32,
    /// Write the run's report (events, lateness, drops, callback times) as JSON here at exit.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Stop by itself after this many seconds (tests, benchmarks).
    #[arg(long, value_name = "N")]
    pub run_seconds: Option<f64>,
    /// Tokens generated per decoder step between reads of the input (small: more responsive).
    #[arg(long, default_value_t = 2, hide = true)]
    pub steps_per_advance: usize,
}

pub fn run(args: JackArgs) -> Result<()> {
    if args.backend != "jack" {
        bail!("--backend {}: this command is the jack backend (use `render` for files)", args.backend);
    }
    ensure!(
        args.bpm.is_finite() && (1.0..=999.0).contains(&args.bpm),
        "--bpm {}: the tempo must be between 1 and 999",
        args.bpm
    );
    ensure!(
        args.release_horizon_ms.is_finite() && (0.0..=1000.0).contains(&args.release_horizon_ms),
        "--release-horizon-ms {}: expected 0 to 1000",
        args.release_horizon_ms
    );
    if let Some(s) = args.run_seconds {
        ensure!(s.is_finite() && s > 0.0, "--run-seconds {s}: expected a positive number");
    }
    let inputs = parse_inputs(&args.inputs)?;
    if let Some(server) = &args.server {
        ensure!(!server.is_empty(), "--server: empty name");
        // Read by libjack when the client opens; set before any other thread exists.
        std::env::set_var("JACK_DEFAULT_SERVER", server);
    }
    // From here on SIGINT/SIGTERM stop the run cleanly (note-offs first), even mid-load.
    let signal = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, signal.clone()).context("installing signal handlers")?;
    }
    // Fail fast on a missing server, before the model loads.
    drop(crate::backend::jack::open_client(&format!("{}-probe", args.client_name))?);

    let bundle = Bundle::load(&args.bundle)?;
    let model = Olmo2::load(&bundle, &Device::Cpu)
        .with_context(|| format!("loading the model of {}", args.bundle.display()))?;
    let engine = Engine::new(&bundle, Arc::new(model))?;
    let params = engine.params;
    let header = engine.header(args.genre.as_deref(), args.part.as_deref())?;
    // The session's settings from the flags, as a song switch makes them (live::switch).
    let spec = crate::live::switch::SessionSpec::from_jack_args(&args);
    let cfg = spec.session_config(&params);
    let session = Session::new(engine.clone(), &header, cfg)?;

    let opts = JackOptions {
        client_name: args.client_name.clone(),
        inputs,
        tempo_source: args.tempo_source,
        bpm: args.bpm,
        release_horizon_ms: args.release_horizon_ms,
        run_seconds: args.run_seconds,
        idle_chunk: 32,
    };
    // The control channel (JSON lines on stdin, status on stdout; set-list helper, live::control).
    let status = crate::live::control::Status::stdout();
    let command_stop = Arc::new(AtomicBool::new(false));
    let requests = crate::live::control::spawn_stdin_reader(command_stop.clone(), status.clone());
    let ready = serde_json::json!({"backend": "jack", "client": args.client_name});
    let switcher =
        crate::live::switch::Switcher::new(requests, status, spec, engine, args.tempo_source, ready)?;
    let report = run_jack(session, &opts, signal, Some(switcher), Some(command_stop))?;
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .context("cannot write the report")
            .with_context(|| path.display().to_string())?;
    }
    eprintln!("midicopilot-engine: jack: {}", report.summary());
    use crate::live::report::StopReason;
    match report.stop_reason {
        StopReason::ServerShutdown => bail!("the JACK server shut down (server '{}')",
                                            crate::backend::jack::server_label()),
        StopReason::DecoderError => bail!(
            "the decoder stopped: {}",
            report.decoder.error.as_deref().unwrap_or("unknown error")
        ),
        StopReason::Signal | StopReason::RunSeconds | StopReason::Command => Ok(()),
    }
}
