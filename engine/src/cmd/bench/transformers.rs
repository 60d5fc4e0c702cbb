//! The transformers comparison of `bench`: `python -m midicopilot.train.bench_transformers` on the
//! same bundle, in its own process, after the engine's figures are taken.

use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::BenchArgs;

pub(super) fn bench_transformers(args: &BenchArgs, threads: usize) -> Result<Value> {
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
