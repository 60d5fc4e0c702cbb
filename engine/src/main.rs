//! `midicopilot-engine`: the engine's command line. Each subcommand's body lives in its own module
//! under `midicopilot_engine::cmd`; this file only declares the subcommands and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use midicopilot_engine::cmd;

#[derive(Debug, Parser)]
#[command(
    name = "midicopilot-engine",
    version,
    about = "midicopilot's engine: the event language, the model, the live loop"
)]
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
    /// Play a MIDI file's parts (on channels 1–15) through the model; write its channel-0 answer.
    Render(cmd::render::RenderArgs),
    /// Play live as a JACK client: channels 1–15 in, the model's channel 0 out.
    Jack(cmd::jack::JackArgs),
    /// Play live on the ALSA sequencer (midir), for rigs without JACK.
    Alsa(cmd::alsa::AlsaArgs),
    /// Time the model on this machine (decode, prefill, memory), beside transformers.
    Bench(cmd::bench::BenchArgs),
    /// The model's loss on token windows (JSON lines in, JSON lines out; `midicopilot eval`).
    Score(cmd::score::ScoreArgs),
    /// Print the model's logits for token ids as JSON (the parity tests use it).
    #[command(hide = true)]
    Logits(cmd::bench::LogitsArgs),
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Encode(args) => cmd::encode::run(args),
        Command::Decode(args) => cmd::decode::run(args),
        Command::Render(args) => cmd::render::run(args),
        Command::Jack(args) => cmd::jack::run(args),
        Command::Alsa(args) => cmd::alsa::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Score(args) => cmd::score::run(args),
        Command::Logits(args) => cmd::bench::run_logits(args),
    }
}

// Counts allocations inside the JACK process callback (live::alloc_guard).
#[global_allocator]
static ALLOC: midicopilot_engine::live::alloc_guard::CountingAlloc =
    midicopilot_engine::live::alloc_guard::CountingAlloc;

fn main() -> ExitCode {
    match cmd::parse_args::<Cli>() {
        Ok(cli) => cmd::run_main(move || run(cli.command)),
        Err(code) => code,
    }
}
