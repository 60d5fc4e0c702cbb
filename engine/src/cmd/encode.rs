//! `midicopilot-engine encode FILE.mid`: print a MIDI file as event-language text.

use std::path::PathBuf;

use anyhow::Context;

use crate::events::{encode_file, meta_token, LanguageParams};

#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// The MIDI file to encode.
    pub file: PathBuf,
    /// Open the text with the metadata word [GENRE_<NAME>] (upper-cased; other characters
    /// than A–Z and 0–9 become _).
    #[arg(long, value_name = "NAME")]
    pub genre: Option<String>,
    /// Open the text with the metadata word [PART_<NAME>] (after the genre).
    #[arg(long, value_name = "NAME")]
    pub part: Option<String>,
    /// Ticks per quarter note of the language (even, ≥ 2).
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub tpq: u32,
    /// Velocity levels of the language (1–26).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub velocity_bins: u8,
}

pub fn run(args: EncodeArgs) -> anyhow::Result<()> {
    let params = LanguageParams {
        ticks_per_quarter: args.tpq,
        velocity_bins: args.velocity_bins,
    };
    params.validate()?;
    // As the Python CLI: an empty name gives no word.
    let meta: Vec<String> = [("genre", &args.genre), ("part", &args.part)]
        .into_iter()
        .filter_map(|(kind, name)| {
            name.as_deref()
                .filter(|n| !n.is_empty())
                .map(|n| meta_token(kind, n))
        })
        .collect();
    let text =
        encode_file(&args.file, &params, &meta).with_context(|| args.file.display().to_string())?;
    super::print_stdout(&text)
}
