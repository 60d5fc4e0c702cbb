//! `midicopilot-engine decode FILE.txt -o OUT.mid`: write event-language text as a MIDI file.

use std::path::PathBuf;

use anyhow::Context;

use crate::events::{events_to_midi_until, parse_text_full, LanguageParams};

#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The text to decode.
    pub file: PathBuf,
    /// The MIDI file to write (format 0).
    #[arg(short, long, value_name = "OUT.mid")]
    pub output: PathBuf,
    /// The tempo written into the file.
    #[arg(long, default_value_t = 120.0)]
    pub bpm: f64,
    /// Ticks per quarter note of the language (even, ≥ 2).
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub tpq: u32,
    /// Velocity levels of the language (1–26).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub velocity_bins: u8,
}

pub fn run(args: DecodeArgs) -> anyhow::Result<()> {
    let params = LanguageParams {
        ticks_per_quarter: args.tpq,
        velocity_bins: args.velocity_bins,
    };
    params.validate()?;
    anyhow::ensure!(
        args.bpm.is_finite() && (3.6..=60_000_000.0).contains(&args.bpm),
        "--bpm {}: the tempo must be between 3.6 and 60000000 BPM",
        args.bpm
    );
    let name = args.file.display().to_string();
    let bytes = std::fs::read(&args.file)
        .context("cannot read the file")
        .context(name.clone())?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| anyhow::anyhow!("not UTF-8 text ({e})"))
        .context(name.clone())?;
    let parsed = parse_text_full(text, &params).context(name)?;
    let midi = events_to_midi_until(&parsed.events, &params, args.bpm, parsed.end_tick);
    anyhow::ensure!(
        !midi.is_empty(),
        "{}: the piece is too long for a MIDI file",
        args.file.display()
    );
    std::fs::write(&args.output, midi)
        .context("cannot write the file")
        .with_context(|| args.output.display().to_string())
}
