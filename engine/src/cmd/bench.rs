//! `midicopilot-engine bench`: how fast the model runs on this machine, beside transformers.
//!
//! Measures, on a bundle, with the weights in one format (`--weights`) and `--threads` threads:
//! decode time per token at contexts 64, 256 and 512 (the cache already holds that many tokens
//! when the timed steps start), prefill time for 256 and 512 tokens (the cost of a cache flush),
//! load time and peak resident memory (VmHWM) — and, in the same run, the bound under decode: the
//! machine's streaming read bandwidth on those threads (a buffer several times the last-level
//! cache), times the bytes one decode step reads (the weights in their format plus the KV cache
//! at that context). Every decode figure is also given as a ratio to that floor. Unless told not
//! to, it then runs `python -m midicopilot.train.bench_transformers` on the same bundle (in its own
//! process, after the engine's figures are taken, so the two never share the cores).
//!
//! Also `midicopilot-engine logits` (hidden; used by tests/test_engine_parity.py): prints, as JSON,
//! the logits of a prefill, of token-by-token decode steps with the cache, and of a refill after
//! a prefix cut.

mod logits;
mod memory;
mod report;
mod transformers;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::Device;
use clap::Args;
use serde_json::{json, Value};

use super::model_flags::ModelFlags;
use super::print_stdout;
use crate::bundle::Bundle;
use crate::model::{KvFormat, ModelOptions, Olmo2};

pub use logits::{run_logits, LogitsArgs};
pub use memory::{peak_rss_mib, read_bandwidth_gbs, status_mib};
use report::{print_table, report};
use transformers::bench_transformers;

/// Contexts at which decode is timed, and prefill lengths.
const DECODE_CONTEXTS: [usize; 3] = [64, 256, 512];
const PREFILL_LENGTHS: [usize; 2] = [256, 512];

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model bundle folder (written by `midicopilot export`).
    #[arg(long)]
    pub bundle: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Timed decode steps at each context.
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// Timed repetitions of each prefill (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// The KV cache's element type.
    /// The KV cache's element type [default: f16 with q8 or f16 weights on the engine's
    /// kernels, else f32].
    #[arg(long, value_enum)]
    pub kv_cache: Option<KvFormat>,
    /// Skip the transformers comparison.
    #[arg(long)]
    pub no_transformers: bool,
    /// Python interpreter for the transformers comparison [default: $MIDICOPILOT_PYTHON, else
    /// python3].
    #[arg(long)]
    pub python: Option<String>,
    /// `--threads` sets both sides: the engine's pools and torch.set_num_threads.
    #[command(flatten)]
    pub model: ModelFlags,
}

/// Runs the benchmark and prints its report.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.steps == 0 || args.repeats == 0 || args.model.threads == Some(0) {
        bail!("--steps, --repeats and --threads must be at least 1");
    }
    let threads = args.model.apply_threads()?;
    let device = args.model.device()?;
    let bundle = Bundle::load(&args.bundle)?;
    let options = ModelOptions {
        kv: args.kv_cache,
        ..args.model.options_for(&bundle)
    };
    let engine = bench_engine(&bundle, &device, options, threads, args.steps, args.repeats)?;
    let transformers = if args.no_transformers {
        None
    } else {
        Some(bench_transformers(&args, threads)?)
    };
    let report = report(&bundle, engine, transformers);
    if args.json {
        print_stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Token ids that look like a sequence: a fixed pseudo-random walk over the vocabulary.
fn sample_tokens(n: usize, vocab: usize) -> Vec<u32> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab as u64) as u32
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[rank.min(values.len() - 1)]
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn bench_engine(
    bundle: &Bundle,
    device: &Device,
    options: ModelOptions,
    threads: usize,
    steps: usize,
    repeats: usize,
) -> Result<Value> {
    let start = Instant::now();
    let model = Olmo2::load_with(bundle, device, options)?;
    let load_ms = ms_since(start);
    let vocab = model.vocab_size();
    let max_pos = model.max_position();
    let tokens = sample_tokens(max_pos, vocab);
    // On a GPU the floor would be the device's bandwidth, not this: it is reported for the CPU.
    let bandwidth = read_bandwidth_gbs(threads);

    let mut decode = serde_json::Map::new();
    let mut decode_ms = serde_json::Map::new();
    let mut floor_ms = serde_json::Map::new();
    let mut over_floor = serde_json::Map::new();
    for &context in &DECODE_CONTEXTS {
        // The cache holds `context` tokens when the timed steps start (fewer if the model's
        // positions run out first).
        let context = context.min(max_pos.saturating_sub(steps + 1));
        if context == 0 {
            bail!("the model has {max_pos} positions, too few to time {steps} decode steps");
        }
        let mut cache = model.new_cache(context + steps + 1)?;
        model.forward(&mut cache, &tokens[..context])?;
        model.forward(&mut cache, &tokens[context..context + 1])?; // warm-up step
        let mut times = Vec::with_capacity(steps);
        for i in 0..steps {
            let id = context + 1 + i;
            let step = Instant::now();
            let logits = model.forward(&mut cache, &tokens[id..id + 1])?;
            times.push(ms_since(step));
            std::hint::black_box(logits);
        }
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        // The steps read the cache at `context + 1 … context + steps` tokens: the middle one.
        let floor = model.decode_bytes(context + steps / 2) as f64 / (bandwidth * 1e6);
        let key = context.to_string();
        decode_ms.insert(key.clone(), json!(mean));
        floor_ms.insert(key.clone(), json!(floor));
        over_floor.insert(key.clone(), json!(mean / floor));
        decode.insert(
            key,
            json!({
                "mean_ms": mean,
                "median_ms": median(&mut times),
                "p90_ms": percentile(&mut times, 0.9),
                "max_ms": percentile(&mut times, 1.0),
                "steps": steps,
            }),
        );
    }

    let mut prefill = serde_json::Map::new();
    let mut prefill_ms = serde_json::Map::new();
    for &len in &PREFILL_LENGTHS {
        if len > max_pos {
            continue;
        }
        let mut cache = model.new_cache(len)?;
        let mut times = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            cache.clear();
            let step = Instant::now();
            std::hint::black_box(model.forward(&mut cache, &tokens[..len])?);
            times.push(ms_since(step));
        }
        let m = median(&mut times);
        prefill_ms.insert(len.to_string(), json!(m));
        prefill.insert(
            len.to_string(),
            json!({ "median_ms": m, "repeats": repeats }),
        );
    }
    let stats = model.weight_stats();
    Ok(json!({
        "device": format!("{device:?}"),
        "weights": if device.is_cpu() { options.weights.name() } else { "bf16" },
        "kv_cache": model.kv_dtype().as_str(),
        "cpu_kernels": if device.is_cpu() { options.kernels.name() } else { "none" },
        "threads": threads,
        "decode_ms": decode_ms,
        "prefill_ms": prefill_ms,
        "bound_ms": floor_ms.get("512").cloned().unwrap_or(Value::Null),
        "floor_ms": floor_ms,
        "decode_over_floor": over_floor,
        "bandwidth_gbs": bandwidth,
        "weight_bytes": stats.bytes,
        "matrices_kept_f32": stats.kept_f32,
        "load_ms": load_ms,
        "decode": decode,
        "prefill": prefill,
        "peak_rss_mib": peak_rss_mib(),
        "rss_mib": status_mib("VmRSS"),
        "rss_anon_mib": status_mib("RssAnon"),
    }))
}
