//! `midicopilot-engine jack --bundle B [...]`: play live as a JACK client (docs/LIVE.md).
//!
//! The flags are the ones `midicopilot.host.engine.engine_args(preset, live=True)` writes, so
//! `midicopilot play PRESET` is this command with the preset's settings.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, ensure, Result};

use super::live_args::{stop_on_signals, LiveArgs};
use crate::backend::jack::{run_with_control as run_jack, JackOptions};
use crate::live::ports::parse_inputs;

#[derive(Debug, clap::Args)]
pub struct JackArgs {
    #[command(flatten)]
    pub live: LiveArgs,
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
}

pub fn run(args: JackArgs) -> Result<()> {
    if args.backend != "jack" {
        bail!(
            "--backend {}: this command is the jack backend (use `render` for files)",
            args.backend
        );
    }
    let live = &args.live;
    live.validate()?;
    live.session.model.apply_threads()?;
    crate::live::priority::start_model_pool();
    let inputs = parse_inputs(&args.inputs)?;
    if let Some(server) = &args.server {
        ensure!(!server.is_empty(), "--server: empty name");
        // Read by libjack when the client opens; set before any other thread exists.
        std::env::set_var("JACK_DEFAULT_SERVER", server);
    }
    let signal = stop_on_signals()?;
    // Fail fast on a missing server, before the model loads.
    drop(crate::backend::jack::open_client(&format!(
        "{}-probe",
        args.client_name
    ))?);

    let spec = live.spec();
    let engine = spec.load_engine()?;
    let (session, _header) = spec.build(engine.clone())?;

    let opts = JackOptions {
        client_name: args.client_name.clone(),
        inputs,
        tempo_source: live.tempo_source,
        bpm: live.bpm,
        release_horizon_ms: live.release_horizon_ms,
        run_seconds: live.run_seconds,
        idle_chunk: 32,
    };
    // The control channel: JSON lines on stdin, status on stdout (live::control).
    let status = crate::live::control::Status::stdout();
    let command_stop = Arc::new(AtomicBool::new(false));
    let requests = crate::live::control::spawn_stdin_reader(command_stop.clone(), status.clone());
    let ready = serde_json::json!({"backend": "jack", "client": args.client_name});
    let switcher = crate::live::switch::Switcher::new(
        requests,
        status,
        spec,
        engine,
        live.tempo_source,
        ready,
    )?;
    let report = run_jack(session, &opts, signal, Some(switcher), Some(command_stop))?;
    live.write_report(&report)?;
    eprintln!("midicopilot-engine: jack: {}", report.summary());
    use crate::live::report::StopReason;
    match report.stop_reason {
        StopReason::ServerShutdown => bail!(
            "the JACK server shut down (server '{}')",
            crate::backend::jack::server_label()
        ),
        StopReason::DecoderError => bail!(
            "the decoder stopped: {}",
            report.decoder.error.as_deref().unwrap_or("unknown error")
        ),
        StopReason::Signal | StopReason::RunSeconds | StopReason::Command => Ok(()),
    }
}
