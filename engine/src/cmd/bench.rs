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

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use serde_json::{json, Value};

use super::model_flags::ModelFlags;
use super::print_stdout;
use crate::bundle::Bundle;
use crate::model::{KvFormat, ModelOptions, Olmo2, WeightFormat};

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
    #[arg(long, value_enum, default_value_t = KvFormat::F32)]
    pub kv_cache: KvFormat,
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
        weights: args.model.weights_for(&bundle),
        kv: args.kv_cache,
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

/// A memory figure of this process from /proc/self/status in MiB (`VmHWM`: peak resident set;
/// `VmRSS`: resident now; `RssAnon`: resident and not file-backed).
pub fn status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Peak resident set of this process in MiB (VmHWM), if /proc says.
pub fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM")
}

/// Streaming read bandwidth in GB/s on `threads` threads: each sums its share of a buffer several
/// times the last-level cache (at least 256 MiB); the best of a few passes.
pub fn read_bandwidth_gbs(threads: usize) -> f64 {
    let bytes = (4 * last_level_cache_bytes().unwrap_or(32 << 20)).max(256 << 20);
    let words = vec![1u64; bytes / 8];
    let chunk = words.len().div_ceil(threads.max(1));
    let mut best = 0.0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let sum: u64 = std::thread::scope(|s| {
            let parts: Vec<_> = words
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().fold(0u64, |a, &w| a.wrapping_add(w))))
                .collect();
            parts.into_iter().map(|p| p.join().unwrap_or(0)).sum()
        });
        std::hint::black_box(sum);
        best = best.max(bytes as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// The largest CPU cache this Linux machine reports (sysfs), in bytes.
fn last_level_cache_bytes() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("size")).ok())
        .filter_map(|s| {
            let s = s.trim();
            let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: usize = n.parse().ok()?;
            Some(match unit {
                "K" => n << 10,
                "M" => n << 20,
                "G" => n << 30,
                _ => n,
            })
        })
        .max()
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
        "kv_cache": options.kv,
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

fn bench_transformers(args: &BenchArgs, threads: usize) -> Result<Value> {
    let python = args
        .python
        .clone()
        .or_else(|| std::env::var("MIDICOPILOT_PYTHON").ok())
        .unwrap_or_else(|| "python3".to_string());
    let output = Command::new(&python)
        .args([
            "-m",
            "midicopilot.train.bench_transformers",
            "--json",
            "--steps",
        ])
        .arg(args.steps.to_string())
        .arg("--repeats")
        .arg(args.repeats.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--bundle")
        .arg(&args.bundle)
        .output()
        .with_context(|| {
            format!(
                "cannot run {python} for the transformers comparison (or pass --no-transformers)"
            )
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        bail!("the transformers benchmark failed: {last} (or pass --no-transformers)");
    }
    serde_json::from_slice(&output.stdout).context("the transformers benchmark printed no JSON")
}

/// One JSON object: the model, the engine's figures at the top level (`weights`, `decode_ms`,
/// `prefill_ms`, `bound_ms`, `floor_ms`, …), and `transformers` with the same keys.
fn report(bundle: &Bundle, engine: Value, transformers: Option<Value>) -> Value {
    let c = &bundle.config;
    let mut report = json!({
        "bundle": bundle.dir.display().to_string(),
        "model": {
            "parameters": c.parameter_count(),
            "hidden_size": c.hidden_size,
            "layers": c.num_hidden_layers,
            "heads": c.num_attention_heads,
            "kv_heads": c.kv_heads(),
            "intermediate_size": c.intermediate_size,
            "vocab_size": c.vocab_size,
        },
    });
    if let (Some(out), Value::Object(e)) = (report.as_object_mut(), engine) {
        out.extend(e);
    }
    if let Some(mut tf) = transformers {
        for (section, key, flat) in [
            ("decode", "mean_ms", "decode_ms"),
            ("prefill", "median_ms", "prefill_ms"),
        ] {
            let figures: serde_json::Map<String, Value> = tf[section]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v[key].clone())).collect())
                .unwrap_or_default();
            tf[flat] = Value::Object(figures);
        }
        report["transformers"] = tf;
    }
    report
}

fn print_table(report: &Value) {
    let m = &report["model"];
    println!(
        "bundle {}: {:.1}M parameters, hidden {}, {} layers, {} heads ({} kv), vocab {}",
        report["bundle"].as_str().unwrap_or("?"),
        m["parameters"].as_f64().unwrap_or(0.0) / 1e6,
        m["hidden_size"],
        m["layers"],
        m["heads"],
        m["kv_heads"],
        m["vocab_size"],
    );
    println!(
        "weights {} ({:.1} MB, {} matrices kept f32), KV cache {}, {} threads; read bandwidth \
         {:.1} GB/s",
        report["weights"].as_str().unwrap_or("?"),
        report["weight_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        report["matrices_kept_f32"],
        report["kv_cache"].as_str().unwrap_or("?"),
        report["threads"],
        report["bandwidth_gbs"].as_f64().unwrap_or(0.0),
    );
    let tf = report.get("transformers");
    let num = |v: &Value| {
        v.as_f64()
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<26}{:>10}{:>10}{:>9}{:>14}",
        "", "engine", "floor", "/floor", "transformers"
    );
    let keys = |section: &str| -> Vec<String> {
        let mut k: Vec<String> = report[section]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort_by_key(|k| k.parse::<usize>().unwrap_or(usize::MAX));
        k
    };
    for ctx in keys("decode_ms") {
        println!(
            "{:<26}{:>10}{:>10}{:>9}{:>14}",
            format!("decode ms/token @ {ctx}"),
            num(&report["decode_ms"][&ctx]),
            num(&report["floor_ms"][&ctx]),
            num(&report["decode_over_floor"][&ctx]),
            tf.map(|t| num(&t["decode_ms"][&ctx])).unwrap_or_default(),
        );
    }
    for len in keys("prefill_ms") {
        println!(
            "{:<26}{:>10}{:>10}{:>9}{:>14}",
            format!("prefill ms, {len} tokens"),
            num(&report["prefill_ms"][&len]),
            "",
            "",
            tf.map(|t| num(&t["prefill_ms"][&len])).unwrap_or_default(),
        );
    }
    for (label, key) in [("load ms", "load_ms"), ("peak memory MiB", "peak_rss_mib")] {
        println!(
            "{:<26}{:>10}{:>10}{:>9}{:>14}",
            label,
            num(&report[key]),
            "",
            "",
            tf.map(|t| num(&t[key])).unwrap_or_default(),
        );
    }
    println!("(floor: the bytes a decode step reads at that context / the read bandwidth)");
}

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
}

/// Prints `{"vocab_size", "prefill": [[..]..], "decode": [[..]..], "refill": [[..]..]}`.
pub fn run_logits(args: LogitsArgs) -> Result<()> {
    let bundle = Bundle::load(&args.bundle)?;
    let options = ModelOptions {
        weights: args.weights,
        ..ModelOptions::default()
    };
    let model = Olmo2::load_with(&bundle, &super::device(&args.device)?, options)?;
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
