//! `midicopilot-engine score --bundle B WINDOWS.jsonl`: the model's loss on token windows.
//!
//! Each input line is one window, `{"ids": [...], "header": n}` (the first `n` ids are the
//! metadata header: given, never predicted, as in training). For each window the engine runs one
//! forward pass and prints one line `{"tokens": t, "nll": s}`: the number of predicted tokens and
//! the sum of their negative log-likelihoods in nats. With `--top1`, also `"top1": [...]`, the
//! most likely token at every predicted position (to compare two weight formats position by
//! position). `midicopilot eval` makes the windows exactly as training does and divides. With
//! `--stepwise`, each window goes through the KV cache one token at a time, as live decoding runs
//! the model (the kernels for one row), instead of in one pass.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use clap::Args;
use serde::Deserialize;
use serde_json::json;

use super::model_flags::ModelFlags;
use super::print_stdout;
use crate::bundle::Bundle;
use crate::model::Olmo2;

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The model bundle folder.
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// JSON lines, one window each: {"ids": [token ids], "header": header length}; `-` reads
    /// standard input.
    #[arg(value_name = "WINDOWS.jsonl")]
    pub windows: PathBuf,
    /// Also print the most likely token at every predicted position.
    #[arg(long)]
    pub top1: bool,
    /// Feed each window one token at a time through the KV cache (the decode path) instead of
    /// in one forward pass.
    #[arg(long)]
    pub stepwise: bool,
    #[command(flatten)]
    pub model: ModelFlags,
}

#[derive(Debug, Deserialize)]
struct Window {
    ids: Vec<u32>,
    #[serde(default)]
    header: usize,
}

/// One window's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowScore {
    /// Predicted tokens (every id after the header, and after the first id).
    pub tokens: usize,
    /// Sum of their negative log-likelihoods, nats.
    pub nll: f64,
    /// The most likely token at each predicted position.
    pub top1: Vec<u32>,
}

/// Score one window: the loss of ids `max(header, 1)..` given everything before them (in one
/// forward pass, or one token at a time through the cache: `stepwise`).
pub fn score_window(
    model: &Olmo2,
    ids: &[u32],
    header: usize,
    stepwise: bool,
) -> Result<WindowScore> {
    ensure!(ids.len() >= 2, "a window needs at least two tokens");
    let mut cache = model.new_cache(ids.len())?;
    let inputs = &ids[..ids.len() - 1];
    let logits = if stepwise {
        inputs
            .iter()
            .map(|&id| model.forward(&mut cache, &[id]))
            .collect::<Result<Vec<_>>>()?
    } else {
        model.forward_all(&mut cache, inputs)?
    };
    let first = header.max(1);
    let mut out = WindowScore {
        tokens: 0,
        nll: 0.0,
        top1: Vec::new(),
    };
    // logits[j] predicts ids[j + 1].
    for (row, &target) in logits.iter().zip(&ids[1..]).skip(first - 1) {
        let (best, _) = row
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |acc, (i, &v)| {
                if v > acc.1 {
                    (i, v)
                } else {
                    acc
                }
            });
        let max = row[best] as f64;
        let log_sum = row
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        out.nll += log_sum - row[target as usize] as f64;
        out.tokens += 1;
        out.top1.push(best as u32);
    }
    Ok(out)
}

pub fn run(args: ScoreArgs) -> Result<()> {
    args.model.apply_threads()?;
    let bundle = Bundle::load(&args.bundle)?;
    let options = args.model.options_for(&bundle);
    let model = Olmo2::load_with(&bundle, &args.model.device()?, options)
        .with_context(|| format!("loading the model of {}", args.bundle.display()))?;
    let name = args.windows.display().to_string();
    let input: Box<dyn Read> = if name == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.windows)
                .context("cannot read the file")
                .context(name.clone())?,
        )
    };
    let vocab = model.vocab_size();
    let capacity = model.max_position();
    let mut out = String::new();
    for (number, line) in BufReader::new(input).lines().enumerate() {
        let line = line.with_context(|| name.clone())?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{name}:{}", number + 1);
        let window: Window = serde_json::from_str(&line)
            .context("not a window line ({\"ids\": [...], \"header\": n})")
            .with_context(at)?;
        if let Some(bad) = window.ids.iter().find(|&&id| id as usize >= vocab) {
            anyhow::bail!(
                "{}: token id {bad} is outside the vocabulary of {vocab}",
                at()
            );
        }
        ensure!(
            window.ids.len() <= capacity,
            "{}: {} tokens are more than the model's {capacity} positions",
            at(),
            window.ids.len()
        );
        ensure!(
            window.header < window.ids.len(),
            "{}: the header ({}) leaves nothing to predict",
            at(),
            window.header
        );
        let s = score_window(&model, &window.ids, window.header, args.stepwise).with_context(at)?;
        let mut row = json!({"tokens": s.tokens, "nll": s.nll});
        if args.top1 {
            row["top1"] = json!(s.top1);
        }
        out.push_str(&row.to_string());
        out.push('\n');
    }
    print_stdout(&out)
}
