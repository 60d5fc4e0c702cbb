//! `midicopilot-engine alsa --bundle B --input PORT_REGEX --output PORT_REGEX [...]`: play live on
//! the ALSA sequencer through midir, for rigs without JACK (docs/RIGS.md "ALSA backend").
//!
//! The session flags are the `jack` command's; ports are chosen by pattern instead of being
//! patched afterwards. The control channel (JSON lines on stdin, status on stdout) is the same
//! as `jack`'s (docs/LIVE.md).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::json;

use crate::backend::alsa::{self, AlsaOptions, InputPattern};
use crate::live::clock::TempoSource;
use crate::live::control::{self, Status};
use crate::live::report::StopReason;
use crate::live::switch::{SessionSpec, Switcher};
use crate::session::Session;

#[derive(Debug, clap::Args)]
pub struct AlsaArgs {
    /// The model bundle folder.
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// The ALSA client name of the engine's own ports (NAME:in, NAME:out).
    #[arg(long, value_name = "NAME", default_value = "midicopilot")]
    pub client_name: String,
    /// Read the ALSA sequencer ports whose name matches (a regular expression searched in
    /// "client:port"), keeping the player's channels (channel 0 moves to 1). Repeatable.
    #[arg(long = "input", value_name = "PORT_REGEX")]
    pub inputs: Vec<String>,
    /// Read the matching ports as channel CH (1–15), whatever channel they send. Repeatable.
    #[arg(long = "input-channel", value_name = "CH=PORT_REGEX")]
    pub input_channels: Vec<String>,
    /// Play channel 0 to the ALSA ports whose name matches. Repeatable.
    #[arg(long = "output", value_name = "PORT_REGEX")]
    pub outputs: Vec<String>,
    /// Only `alsa` here (accepted so a preset's flags can be passed as they are).
    #[arg(long, value_name = "alsa", default_value = "alsa")]
    pub backend: String,
    /// Where the tempo comes from (`transport` needs JACK).
    #[arg(long, value_enum, default_value_t = TempoSource::Preset)]
    pub tempo_source: TempoSource,
    /// The tempo (the starting tempo for midi_clock).
    #[arg(long, default_value_t = 120.0)]
    pub bpm: f64,
    /// Generate this far ahead of now (default: one beat).
    #[arg(long, value_name = "TICKS")]
    pub lookahead_ticks: Option<u64>,
    /// Hand events to the output timer this long before they are due.
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
    /// Write the run's report as JSON here at exit.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Stop by itself after this many seconds.
    #[arg(long, value_name = "N")]
    pub run_seconds: Option<f64>,
    /// Tokens generated per decoder step between reads of the input.
    #[arg(long, default_value_t = 2, hide = true)]
    pub steps_per_advance: usize,
    /// The ALSA sequencer device to require (tests).
    #[arg(long, value_name = "PATH", default_value = alsa::SEQ_DEVICE, hide = true)]
    pub seq_device: PathBuf,
}

impl AlsaArgs {
    pub fn spec(&self) -> SessionSpec {
        SessionSpec {
            bundle: self.bundle.clone(),
            genre: self.genre.clone(),
            part: self.part.clone(),
            bpm: self.bpm,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            context: self.context,
            lookahead_ticks: self.lookahead_ticks,
            release_horizon_ms: self.release_horizon_ms,
            max_note_ticks: self.max_note_ticks,
            max_polyphony: self.max_polyphony,
            steps_per_advance: self.steps_per_advance,
        }
    }

    /// Everything that can be checked without the sequencer or the model.
    pub fn options(&self) -> Result<AlsaOptions> {
        if self.backend != "alsa" {
            bail!("--backend {}: this command is the alsa backend (use `jack`)", self.backend);
        }
        if self.tempo_source == TempoSource::Transport {
            bail!("--tempo-source transport needs JACK transport: use preset or midi_clock with \
                   the alsa backend");
        }
        ensure!(!self.client_name.is_empty(), "--client-name: empty name");
        if let Some(s) = self.run_seconds {
            ensure!(s.is_finite() && s > 0.0, "--run-seconds {s}: expected a positive number");
        }
        if let Err(e) = self.spec().validate() {
            // "max_polyphony 0: …" → "--max-polyphony 0: …"
            let msg = format!("{e:#}");
            let (head, rest) = msg.split_once(' ').unwrap_or((msg.as_str(), ""));
            bail!("--{} {rest}", head.replace('_', "-"));
        }
        let mut inputs = Vec::new();
        for p in &self.inputs {
            inputs.push(InputPattern::pass(p)?);
        }
        for p in &self.input_channels {
            inputs.push(InputPattern::assigned(p)?);
        }
        let outputs = self
            .outputs
            .iter()
            .map(|p| alsa::compile(p, "--output"))
            .collect::<Result<Vec<_>>>()?;
        Ok(AlsaOptions {
            client_name: self.client_name.clone(),
            inputs,
            outputs,
            tempo_source: self.tempo_source,
            bpm: self.bpm,
            release_horizon_ms: self.release_horizon_ms,
            run_seconds: self.run_seconds,
            idle_chunk: 32,
        })
    }
}

pub fn run(args: AlsaArgs) -> Result<()> {
    let opts = args.options()?;
    // No sequencer, no run: say so before the model loads.
    alsa::check_sequencer(&args.seq_device)?;
    let ports = alsa::list_ports(&args.client_name)?;
    drop(ports);

    let signal = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, signal.clone()).context("installing signal handlers")?;
    }
    let spec = args.spec();
    let engine = spec.load_engine()?;
    let (session, _header): (Session, _) = spec.build(engine.clone())?;

    let status = Status::stdout();
    let command_stop = Arc::new(AtomicBool::new(false));
    let requests = control::spawn_stdin_reader(command_stop.clone(), status.clone());
    let ready = json!({"backend": "alsa", "client": args.client_name});
    let switcher = Switcher::new(requests, status.clone(), spec, engine, args.tempo_source, ready)?;

    let (report, reason) = alsa::run(session, &opts, signal, command_stop, Some(switcher))?;
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .context("cannot write the report")
            .with_context(|| path.display().to_string())?;
    }
    let summary = report["summary"].as_str().unwrap_or_default().replace(
        "the JACK server shutting down",
        "the ALSA sequencer going away",
    );
    eprintln!("midicopilot-engine: alsa: {summary}");
    match reason {
        StopReason::DecoderError => bail!(
            "the decoder stopped: {}",
            report["decoder"]["error"].as_str().unwrap_or("unknown error")
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: AlsaArgs,
    }

    fn parse(argv: &[&str]) -> Result<AlsaArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("alsa").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn flags_parse_into_options_and_a_session_spec() {
        let a = parse(&[
            "--bundle", "/b", "--input", "Keystation", "--input-channel", "9=^MPC",
            "--output", "FLUID", "--bpm", "96", "--genre", "BLUES", "--max-polyphony", "3",
            "--backend", "alsa", "--tempo-source", "midi_clock", "--release-horizon-ms", "25",
        ])
        .unwrap();
        let o = a.options().unwrap();
        assert_eq!(o.inputs.len(), 2);
        assert_eq!(o.inputs[1].mode, crate::live::ports::InputMode::Assign(9));
        assert_eq!(o.outputs[0].as_str(), "FLUID");
        assert_eq!(o.tempo_source, TempoSource::MidiClock);
        let s = a.spec();
        assert_eq!((s.bpm, s.max_polyphony, s.release_horizon_ms), (96.0, 3, 25.0));
        assert_eq!(s.genre.as_deref(), Some("BLUES"));
    }

    #[test]
    fn bad_flags_are_one_line_each() {
        let cases: [(&[&str], &str); 6] = [
            (&["--bundle", "/b", "--backend", "jack"], "--backend jack: this command is the alsa"),
            (&["--bundle", "/b", "--tempo-source", "transport"], "needs JACK transport"),
            (&["--bundle", "/b", "--input", "MPC("], "bad regular expression"),
            (&["--bundle", "/b", "--input-channel", "0=x"], "not a channel 1–15"),
            (&["--bundle", "/b", "--bpm", "0"], "bpm 0"),
            (&["--bundle", "/b", "--run-seconds=-1"], "--run-seconds -1"),
        ];
        for (argv, want) in cases {
            let e = format!("{:#}", parse(argv).unwrap().options().unwrap_err());
            assert!(e.contains(want), "{argv:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
