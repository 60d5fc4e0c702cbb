//! `midicopilot-engine alsa --bundle B --input PORT_REGEX --output PORT_REGEX [...]`: play live on
//! the ALSA sequencer through midir, for rigs without JACK (docs/RIGS.md "ALSA backend").
//!
//! The session flags are the `jack` command's; ports are chosen by pattern instead of being
//! patched afterwards. The control channel (JSON lines on stdin, status on stdout) is the same
//! as `jack`'s (docs/LIVE.md).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, ensure, Result};
use serde_json::json;

use super::live_args::{stop_on_signals, LiveArgs};

use crate::backend::alsa::{self, AlsaOptions, InputPattern};
use crate::live::clock::TempoSource;
use crate::live::control::{self, Status};
use crate::live::report::StopReason;
use crate::live::switch::Switcher;
use crate::session::Session;

#[derive(Debug, clap::Args)]
pub struct AlsaArgs {
    #[command(flatten)]
    pub live: LiveArgs,
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
    /// The ALSA sequencer device to require (tests).
    #[arg(long, value_name = "PATH", default_value = alsa::SEQ_DEVICE, hide = true)]
    pub seq_device: PathBuf,
}

impl AlsaArgs {
    /// Everything that can be checked without the sequencer or the model.
    pub fn options(&self) -> Result<AlsaOptions> {
        if self.backend != "alsa" {
            bail!(
                "--backend {}: this command is the alsa backend (use `jack`)",
                self.backend
            );
        }
        if self.live.tempo_source == TempoSource::Transport {
            bail!(
                "--tempo-source transport needs JACK transport: use preset or midi_clock with \
                   the alsa backend"
            );
        }
        ensure!(!self.client_name.is_empty(), "--client-name: empty name");
        self.live.validate()?;
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
            tempo_source: self.live.tempo_source,
            bpm: self.live.bpm,
            release_horizon_ms: self.live.release_horizon_ms,
            run_seconds: self.live.run_seconds,
            idle_chunk: 32,
        })
    }
}

pub fn run(args: AlsaArgs) -> Result<()> {
    let opts = args.options()?;
    args.live.session.model.apply_threads()?;
    crate::live::priority::start_model_pool();
    // No sequencer, no run: say so before the model loads.
    alsa::check_sequencer(&args.seq_device)?;
    let ports = alsa::list_ports(&args.client_name)?;
    drop(ports);

    let signal = stop_on_signals()?;
    let spec = args.live.spec();
    let engine = spec.load_engine()?;
    let (session, _header): (Session, _) = spec.build(engine.clone())?;

    let status = Status::stdout();
    let command_stop = Arc::new(AtomicBool::new(false));
    let requests = control::spawn_stdin_reader(command_stop.clone(), status.clone());
    let ready = json!({"backend": "alsa", "client": args.client_name});
    let switcher = Switcher::new(
        requests,
        status.clone(),
        spec,
        engine,
        args.live.tempo_source,
        ready,
    )?;

    let (report, reason) = alsa::run(session, &opts, signal, command_stop, Some(switcher))?;
    args.live.write_report(&report)?;
    let summary = report["summary"].as_str().unwrap_or_default().replace(
        "the JACK server shutting down",
        "the ALSA sequencer going away",
    );
    eprintln!("midicopilot-engine: alsa: {summary}");
    match reason {
        StopReason::DecoderError => bail!(
            "the decoder stopped: {}",
            report["decoder"]["error"]
                .as_str()
                .unwrap_or("unknown error")
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
            "--bundle",
            "/b",
            "--input",
            "Keystation",
            "--input-channel",
            "9=^MPC",
            "--output",
            "FLUID",
            "--bpm",
            "96",
            "--genre",
            "BLUES",
            "--max-polyphony",
            "3",
            "--backend",
            "alsa",
            "--tempo-source",
            "midi_clock",
            "--release-horizon-ms",
            "25",
        ])
        .unwrap();
        let o = a.options().unwrap();
        assert_eq!(o.inputs.len(), 2);
        assert_eq!(o.inputs[1].mode, crate::live::ports::InputMode::Assign(9));
        assert_eq!(o.outputs[0].as_str(), "FLUID");
        assert_eq!(o.tempo_source, TempoSource::MidiClock);
        let s = a.live.spec();
        assert_eq!(
            (s.bpm, s.max_polyphony, s.release),
            (96.0, Some(3), crate::session::Release::HorizonMs(25.0))
        );
        assert_eq!(s.genre.as_deref(), Some("BLUES"));
    }

    #[test]
    fn bad_flags_are_one_line_each() {
        let cases: [(&[&str], &str); 6] = [
            (
                &["--bundle", "/b", "--backend", "jack"],
                "--backend jack: this command is the alsa",
            ),
            (
                &["--bundle", "/b", "--tempo-source", "transport"],
                "needs JACK transport",
            ),
            (
                &["--bundle", "/b", "--input", "MPC("],
                "bad regular expression",
            ),
            (
                &["--bundle", "/b", "--input-channel", "0=x"],
                "not a channel 1–15",
            ),
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
