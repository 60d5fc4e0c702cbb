//! The flags every model-running command shares: how the weights are held, threads, device.

use anyhow::Result;
use clap::Args;

use crate::bundle::Bundle;
use crate::model::{CpuKernels, ModelOptions, WeightFormat};

/// `--weights`, `--threads`, `--device`, `--cpu-kernels` (docs/ENGINE.md "Weights").
#[derive(Args, Debug, Clone)]
pub struct ModelFlags {
    /// How the engine holds the weights [default: the bundle's recommendation, else f32].
    #[arg(long, value_enum)]
    pub weights: Option<WeightFormat>,
    /// Threads for the model (decode and prefill) [default: the physical cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the model runs: cpu, cuda or cuda:N (the GPU server of a Pi rig: docs/RIGS.md).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Whose kernels multiply on the CPU: the engine's AVX2 kernels (where the CPU has AVX2; else
    /// candle's) or candle's everywhere (docs/ENGINE.md "Kernels").
    #[arg(long, value_enum, default_value_t = CpuKernels::Engine)]
    pub cpu_kernels: CpuKernels,
}

impl ModelFlags {
    /// The weights to use with this bundle: the flag, else the bundle's recommendation, else f32.
    pub fn weights_for(&self, bundle: &Bundle) -> WeightFormat {
        self.weights
            .or(bundle.meta.defaults.weights)
            .unwrap_or_default()
    }

    /// How to load this bundle's model (the KV cache in f32).
    pub fn options_for(&self, bundle: &Bundle) -> ModelOptions {
        ModelOptions {
            weights: self.weights_for(bundle),
            kernels: self.cpu_kernels,
            ..ModelOptions::default()
        }
    }

    /// Set the model's thread pools (before any model work); returns the count in use.
    pub fn apply_threads(&self) -> Result<usize> {
        super::set_threads(self.threads)
    }

    pub fn device(&self) -> Result<candle_core::Device> {
        super::device(&self.device)
    }
}
