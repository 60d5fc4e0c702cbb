//! `midicopilot-engine`: the engine's command line. Each subcommand's body lives in its own module
//! under `midicopilot_engine::cmd`; this file only declares the subcommands and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use midicopilot_engine::cmd;

#[derive(Debug, Parser)]
#[command(name = "midicopilot-engine", version, about = "midicopilot's engine: the event language, the model, the live loop")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a MIDI file as event-language text.
    Encode(cmd::encode::EncodeArgs),
    /// Write event-language text as a MIDI file.
    Decode(cmd::decode::DecodeArgs),
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Encode(args) => cmd::encode::run(args),
        Command::Decode(args) => cmd::decode::run(args),
    }
}

fn main() -> ExitCode {
    match cmd::parse_args::<Cli>() {
        Ok(cli) => cmd::run_main(move || run(cli.command)),
        Err(code) => code,
    }
}
