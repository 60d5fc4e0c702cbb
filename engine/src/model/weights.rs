//! How the model holds its projection and head weights.
//!
//! On the CPU the activations are f32 and the projection and head weights are quantized at load
//! with candle's `QTensor::quantize` into the format [`WeightFormat`] names (`--weights`: f32,
//! f16 or Q8_0). They are multiplied by the engine's kernels (`kernels`: Q8_0 repacked for them,
//! f16 and f32 read in place) where the CPU has AVX2, else by candle's `QMatMul`, which also
//! splits a decode step's rows over the threads (candle's dense f32 matmul does one row on one
//! thread). A matrix whose input width is not a multiple of the format's block (32 for Q8_0)
//! stays f32. The KV cache is f32 or f16 ([`KvFormat`]).

use std::sync::Arc;

use anyhow::Result;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};
use serde::{Deserialize, Serialize};

use super::kernels::{self, CpuKernels, PackedQ8, WeightRows};

/// How the CPU holds the projection and head weights (`--weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// 4 bytes a weight, as trained.
    #[default]
    F32,
    /// 2 bytes a weight.
    F16,
    /// Q8_0: blocks of 32 int8 weights and one f16 scale, 34 bytes a block.
    Q8,
}

impl WeightFormat {
    fn ggml(self) -> GgmlDType {
        match self {
            Self::F32 => GgmlDType::F32,
            Self::F16 => GgmlDType::F16,
            Self::Q8 => GgmlDType::Q8_0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8 => "q8",
        }
    }
}

/// The KV cache's element type on the CPU (`--kv-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KvFormat {
    #[default]
    F32,
    F16,
}

impl KvFormat {
    /// The cache for these weights when none is asked for: f16 where the engine's kernels run
    /// with f16 or q8 weights (half the bytes a step reads from the cache: decode at 512
    /// tokens of the 120M fixture 6.1–8.4 against 7.7–9.7 ms, docs/BENCHMARKS.md), f32 with
    /// f32 weights (the trained model's numbers, as transformers computes them) and on
    /// candle's kernels.
    pub fn default_for(weights: WeightFormat, kernels: CpuKernels) -> Self {
        match weights {
            WeightFormat::F16 | WeightFormat::Q8 if kernels.engine_runs() => Self::F16,
            _ => Self::F32,
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelOptions {
    pub weights: WeightFormat,
    /// `None`: [`KvFormat::default_for`] the weights.
    pub kv: Option<KvFormat>,
    pub kernels: CpuKernels,
}

/// A linear layer `y = x Wᵀ (+ b)` with W `[out, in]` as in the checkpoint.
pub(super) struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

enum Weight {
    /// A dense tensor (CUDA).
    Dense(Tensor),
    /// A candle quantized tensor (CPU: f32, f16 or Q8_0), multiplied by candle's `QMatMul`.
    Quant(QMatMul),
    /// Multiplied by the engine's kernels (`kernels`): Q8_0 packed for them, or an f16 or f32
    /// `QTensor` read in place.
    PackedQ8(PackedQ8),
    Kernels(Arc<QTensor>),
}

/// What loading did to the weights (bench reports it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WeightStats {
    pub format: Option<WeightFormat>,
    /// Bytes a decode step reads from the projection and head weights.
    pub bytes: usize,
    /// Matrices kept in f32 because their input width is not a multiple of the format's block.
    pub kept_f32: usize,
    pub matrices: usize,
}

impl Linear {
    pub(super) fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        format: Option<WeightFormat>,
        kernels: CpuKernels,
        stats: &mut WeightStats,
    ) -> Result<Self> {
        stats.matrices += 1;
        let Some(format) = format else {
            stats.bytes += weight.elem_count() * weight.dtype().size_in_bytes();
            return Ok(Self {
                weight: Weight::Dense(weight),
                bias,
            });
        };
        let (_, cols) = weight.dims2()?;
        let mut dtype = format.ggml();
        if !cols.is_multiple_of(dtype.block_size()) {
            dtype = GgmlDType::F32;
            stats.kept_f32 += 1;
        }
        let q = Arc::new(QTensor::quantize(&weight, dtype)?);
        let (n, k) = weight.dims2()?;
        let packed = match (kernels.engine_runs(), dtype) {
            (true, GgmlDType::Q8_0) => PackedQ8::from_blocks(&q.data()?, n, k),
            _ => None,
        };
        stats.bytes += packed
            .as_ref()
            .map_or(q.storage_size_in_bytes(), PackedQ8::storage_bytes);
        let weight = if let Some(packed) = packed {
            Weight::PackedQ8(packed)
        } else if kernels.engine_runs() {
            Weight::Kernels(q)
        } else {
            // Built directly: `QMatMul::from_qtensor` would turn f32 and f16 back into a dense
            // tensor, whose one-row product runs on one thread.
            Weight::Quant(QMatMul::QTensor(q))
        };
        Ok(Self { weight, bias })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Dense(w) => x.matmul(&w.t()?)?,
            Weight::Quant(q) => q.forward(&x.contiguous()?)?,
            Weight::PackedQ8(packed) => match kernel_matmul(&packed.rows(), x)? {
                Some(y) => y,
                None => anyhow::bail!("the packed Q8_0 weights need f32 activations on the CPU"),
            },
            Weight::Kernels(q) => {
                let (n, k) = q.shape().dims2()?;
                let bytes = q.data()?;
                let y = match WeightRows::dense(q.dtype(), &bytes, n, k) {
                    Some(rows) => kernel_matmul(&rows, x)?,
                    None => None,
                };
                match y {
                    Some(y) => y,
                    None => x.contiguous()?.apply_op1_no_bwd(q.as_ref())?,
                }
            }
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// `x Wᵀ` by the engine's kernels for a 2-D f32 `x` on the CPU (`None`: let candle do it).
fn kernel_matmul(rows: &WeightRows, x: &Tensor) -> Result<Option<Tensor>> {
    let (Ok((m, k)), DType::F32) = (x.dims2(), x.dtype()) else {
        return Ok(None);
    };
    let n = rows.n();
    anyhow::ensure!(
        k == rows.k(),
        "activations {k} wide against weights {} wide",
        rows.k()
    );
    let x = x.contiguous()?;
    let y = kernels::with_cpu_slice(&x, |xs: &[f32]| kernels::matmul(rows, xs, m))?.flatten();
    Ok(match y {
        Some(y) => Some(Tensor::from_vec(y, (m, n), x.device())?),
        None => None,
    })
}
