//! `midicopilot-engine logits` (hidden; used by tests/test_engine_parity.py): prints, as JSON, the
//! logits of a prefill, of token-by-token decode steps with the cache, and of a refill after a
//! prefix cut.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;

use crate::bundle::Bundle;
use crate::cmd::print_stdout;
use crate::model::{CpuKernels, ModelOptions, Olmo2, WeightFormat};

#[derive(Debug, Args)]
pub struct LogitsArgs {
    /// Model bundle folder.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Token ids run as one multi-token forward pass (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub prefill: Vec<u32>,
    /// Token ids then fed one at a time through the cache.
    #[arg(long, value_delimiter = ',')]
    pub decode: Vec<u32>,
    /// Cut the cache back to this many tokens afterwards (a prefix cut) ...
    #[arg(long, requires = "refill")]
    pub cut: Option<usize>,
    /// ... and run these token ids as one forward pass from there.
    #[arg(long, value_delimiter = ',', requires = "cut")]
    pub refill: Vec<u32>,
    /// KV cache capacity (default: just enough).
    #[arg(long)]
    pub capacity: Option<usize>,
    /// How the engine holds the weights.
    #[arg(long, value_enum, default_value_t = WeightFormat::F32)]
    pub weights: WeightFormat,
    /// Where the model runs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Whose kernels multiply on the CPU.
    #[arg(long, value_enum, default_value_t = CpuKernels::Engine)]
    pub cpu_kernels: CpuKernels,
}

/// Prints `{"vocab_size", "prefill": [[..]..], "decode": [[..]..], "refill": [[..]..]}`.
pub fn run_logits(args: LogitsArgs) -> Result<()> {
    let bundle = Bundle::load(&args.bundle)?;
    let options = ModelOptions {
        weights: args.weights,
        kernels: args.cpu_kernels,
        ..ModelOptions::default()
    };
    let model = Olmo2::load_with(&bundle, &crate::cmd::device(&args.device)?, options)?;
    let needed =
        (args.prefill.len() + args.decode.len()).max(args.cut.unwrap_or(0) + args.refill.len());
    let mut cache = model.new_cache(args.capacity.unwrap_or(needed))?;
    let prefill = model.forward_all(&mut cache, &args.prefill)?;
    let mut decode = Vec::with_capacity(args.decode.len());
    for &id in &args.decode {
        decode.push(model.forward(&mut cache, &[id])?);
    }
    let mut refill = Vec::new();
    if let Some(cut) = args.cut {
        if cut > cache.len() {
            bail!(
                "--cut {cut} is past the {} tokens in the cache",
                cache.len()
            );
        }
        cache.truncate(cut);
        refill = model.forward_all(&mut cache, &args.refill)?;
    }
    let out = json!({
        "vocab_size": model.vocab_size(),
        "prefill": prefill,
        "decode": decode,
        "refill": refill,
    });
    print_stdout(&format!("{out}\n"))
}
