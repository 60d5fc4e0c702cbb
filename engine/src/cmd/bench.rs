//! `midicopilot-engine bench`: how fast the model runs on this machine, beside transformers.
//!
//! Measures, on a bundle: decode time per token at contexts 64, 256 and 512 (the cache already
//! holds that many tokens when the timed steps start), prefill time for 256 and 512 tokens (the
//! cost of a cache flush), load time and peak resident memory (VmHWM). Unless told not to, it then
//! runs `python -m midicopilot.train.bench_transformers` on the same bundle (in its own process,
//! after the engine's figures are taken, so the two never share the cores) and prints the ratios.
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

use super::print_stdout;
use crate::bundle::Bundle;
use crate::model::Olmo2;

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
    /// Threads for both sides (the engine's RAYON_NUM_THREADS, torch.set_num_threads) [default:
    /// each side's own default, all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Skip the transformers comparison.
    #[arg(long)]
    pub no_transformers: bool,
    /// Python interpreter for the transformers comparison [default: $MIDICOPILOT_PYTHON, else
    /// python3].
    #[arg(long)]
    pub python: Option<String>,
}

/// Runs the benchmark and prints its report.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.steps == 0 || args.repeats == 0 || args.threads == Some(0) {
        bail!("--steps, --repeats and --threads must be at least 1");
    }
    if let Some(n) = args.threads {
        // Before any thread pool exists: candle's matmul and rayon both read it.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let bundle = Bundle::load(&args.bundle)?;
    let engine = bench_engine(&bundle, args.steps, args.repeats)?;
    let transformers = if args.no_transformers {
        None
    } else {
        Some(bench_transformers(&args)?)
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

fn bench_engine(bundle: &Bundle, steps: usize, repeats: usize) -> Result<Value> {
    let start = Instant::now();
    let model = Olmo2::load(bundle, &Device::Cpu)?;
    let load_ms = ms_since(start);
    let vocab = model.vocab_size();
    let max_pos = model.max_position();
    let tokens = sample_tokens(max_pos, vocab);

    // The floor: every weight matrix a decode step reads, times one vector.
    model.stream_weights()?;
    let mut floor = Vec::with_capacity(steps);
    for _ in 0..steps {
        let step = Instant::now();
        model.stream_weights()?;
        floor.push(ms_since(step));
    }

    let mut decode = serde_json::Map::new();
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
        decode.insert(
            context.to_string(),
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
        prefill.insert(
            len.to_string(),
            json!({ "median_ms": median(&mut times), "repeats": repeats }),
        );
    }
    Ok(json!({
        "load_ms": load_ms,
        "decode": decode,
        "prefill": prefill,
        "weights_floor_ms": median(&mut floor),
        "peak_rss_mib": peak_rss_mib(),
        "rss_mib": status_mib("VmRSS"),
        "rss_anon_mib": status_mib("RssAnon"),
        "threads": candle_core::utils::get_num_threads(),
    }))
}

fn bench_transformers(args: &BenchArgs) -> Result<Value> {
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
        .args(
            args.threads
                .map(|n| vec!["--threads".to_string(), n.to_string()])
                .unwrap_or_default(),
        )
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
        "engine": engine,
    });
    if let Some(tf) = transformers {
        let mut ratio = serde_json::Map::new();
        let pairs = [("decode", "mean_ms"), ("prefill", "median_ms")];
        for (section, key) in pairs {
            if let Some(entries) = report["engine"][section].as_object() {
                for (len, e) in entries {
                    let (Some(ours), Some(theirs)) =
                        (e[key].as_f64(), tf[section][len][key].as_f64())
                    else {
                        continue;
                    };
                    // > 1 means the engine is faster.
                    ratio.insert(format!("{section}_{len}"), json!(theirs / ours));
                }
            }
        }
        if let (Some(ours), Some(theirs)) = (
            report["engine"]["peak_rss_mib"].as_f64(),
            tf["peak_rss_mib"].as_f64(),
        ) {
            ratio.insert("peak_rss".to_string(), json!(theirs / ours));
        }
        report["transformers"] = tf;
        report["transformers_over_engine"] = Value::Object(ratio);
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
    let tf = report.get("transformers");
    let fmt = |v: &Value| {
        v.as_f64()
            .map(|x| format!("{x:9.2}"))
            .unwrap_or_else(|| "        -".into())
    };
    let header = if tf.is_some() {
        "  transformers   ratio"
    } else {
        ""
    };
    println!("{:<26}{:>10}{header}", "", "engine");
    let line = |label: String, ours: &Value, theirs: Option<&Value>, ratio: Option<&Value>| {
        let ratio = ratio
            .and_then(|r| r.as_f64())
            .map(|x| format!("{x:.2}x"))
            .unwrap_or_default();
        match theirs {
            Some(t) => println!("{label:<26}{:>10}{:>14}{ratio:>8}", fmt(ours), fmt(t)),
            None => println!("{label:<26}{:>10}", fmt(ours)),
        }
    };
    let e = &report["engine"];
    let ratios = report.get("transformers_over_engine");
    line(
        "load ms".into(),
        &e["load_ms"],
        tf.map(|t| &t["load_ms"]),
        None,
    );
    if let Some(decode) = e["decode"].as_object() {
        let mut entries: Vec<(&String, &Value)> = decode.iter().collect();
        entries.sort_by_key(|(k, _)| k.parse::<usize>().unwrap_or(usize::MAX));
        for (ctx, d) in entries {
            line(
                format!("decode ms/token @ {ctx}"),
                &d["mean_ms"],
                tf.map(|t| &t["decode"][ctx]["mean_ms"]),
                ratios.map(|r| &r[format!("decode_{ctx}")]),
            );
        }
    }
    if let Some(prefill) = e["prefill"].as_object() {
        let mut entries: Vec<(&String, &Value)> = prefill.iter().collect();
        entries.sort_by_key(|(k, _)| k.parse::<usize>().unwrap_or(usize::MAX));
        for (len, p) in entries {
            line(
                format!("prefill ms, {len} tokens"),
                &p["median_ms"],
                tf.map(|t| &t["prefill"][len]["median_ms"]),
                ratios.map(|r| &r[format!("prefill_{len}")]),
            );
        }
    }
    line(
        "weights floor ms".into(),
        &e["weights_floor_ms"],
        None,
        None,
    );
    line(
        "resident MiB (end)".into(),
        &e["rss_mib"],
        tf.map(|t| &t["rss_mib"]),
        None,
    );
    line(
        "peak memory MiB".into(),
        &e["peak_rss_mib"],
        tf.map(|t| &t["peak_rss_mib"]),
        ratios.map(|r| &r["peak_rss"]),
    );
    if tf.is_some() {
        println!("(ratio = transformers / engine: above 1 the engine is faster or smaller)");
    }
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
}

/// Prints `{"vocab_size", "prefill": [[..]..], "decode": [[..]..], "refill": [[..]..]}`.
pub fn run_logits(args: LogitsArgs) -> Result<()> {
    let bundle = Bundle::load(&args.bundle)?;
    let model = Olmo2::load(&bundle, &Device::Cpu)?;
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
