//! The model's hot loops on an x86-64 CPU with AVX2, FMA and F16C (checked at run time).
//!
//! candle 0.11's `QMatMul` is fast where it has a repacked kernel (AVX-512 VNNI, aarch64 with
//! dotprod); on an AVX2-only x86 (this project's 2-core AMD EPYC machines among them) it
//! multiplies a Q8_0 matrix one 32-weight block at a time through out-of-line calls, converting
//! each block's f16 scale in its own call: a decode step ran compute-bound at ~5 GB/s a core and
//! a 512-token prefill at ~10 GFLOP/s (docs/BENCHMARKS.md "Kernels"). So, on such a CPU:
//!
//! - [`gemv`]: a few rows of activations times the weights, streaming the weights once per
//!   activation tile: int8 products on candle's own Q8_0 blocks (activations quantized per block
//!   of 32, as ggml does), or f32/f16 weights with FMA. This is a decode step.
//! - [`gemm`]: many rows (a prefill, a flush): the weights are widened to f32 a slice of rows at
//!   a time, in cache, and multiplied by the `gemm` crate (the one candle's dense matmul uses),
//!   single-threaded on each slice, the slices shared out over the threads.
//! - [`attention`]: one query token against the KV cache, the key heads shared out over the
//!   threads (candle runs each head's two matrix-vector products on one thread).
//!
//! Everything runs on candle's own barrier pool (`--threads`), so the engine never adds a second
//! set of spinning workers. Elsewhere, or with `--cpu-kernels candle`, the model uses candle.

#[cfg(target_arch = "x86_64")]
mod activation;
#[cfg(target_arch = "x86_64")]
mod attention;
#[cfg(target_arch = "x86_64")]
mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemv;
#[cfg(target_arch = "x86_64")]
mod norm;
mod packed;
#[cfg(target_arch = "x86_64")]
mod pool;
#[cfg(all(test, target_arch = "x86_64"))]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

use candle_core::quantized::GgmlDType;
use candle_core::{Storage, Tensor, WithDType};
use half::f16;
use serde::{Deserialize, Serialize};

pub use packed::PackedQ8;

/// Activation rows up to which a product streams the weights ([`gemv`], once per 4 rows); above,
/// it widens them and runs a matrix product ([`gemm`]). Measured here on a 6144 × 768 Q8_0
/// matrix, 2 threads: streaming wins 1.1 against 4.1 ms at 4 rows, 4.7 against 6.8 at 16, 9.0
/// against 12.3 at 32 (weights in L3); 16 keeps a weight matrix that misses L3 to 4 passes.
const GEMV_MAX_ROWS: usize = 16;

/// Whose kernels multiply on the CPU (`--cpu-kernels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CpuKernels {
    /// The engine's AVX2 kernels where the CPU has AVX2, FMA and F16C; candle's elsewhere.
    #[default]
    Engine,
    /// candle's `QMatMul` and matmul everywhere (the comparison in `bench`).
    Candle,
}

impl CpuKernels {
    /// Whether the engine's own kernels run: asked for, and the CPU has what they need.
    pub fn engine_runs(self) -> bool {
        self == Self::Engine && cpu_has_avx2()
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Engine if cpu_has_avx2() => "engine-avx2",
            _ => "candle",
        }
    }
}

/// AVX2, FMA and F16C, checked once.
pub fn cpu_has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A weight matrix `[n, k]` (row `j` is output `j`) as the kernels read it, borrowed: packed
/// Q8_0, or candle's own storage of an f16 or f32 `QTensor`.
pub(super) enum WeightRows<'a> {
    /// See [`PackedQ8`].
    Q8 {
        qs: &'a [i8],
        scales: &'a [f16],
        n: usize,
        k: usize,
    },
    F16 {
        values: &'a [f16],
        n: usize,
        k: usize,
    },
    F32 {
        values: &'a [f32],
        n: usize,
        k: usize,
    },
}

impl<'a> WeightRows<'a> {
    /// The rows of an f16 or f32 `QTensor`'s bytes (`QTensor::data`).
    pub(super) fn dense(dtype: GgmlDType, bytes: &'a [u8], n: usize, k: usize) -> Option<Self> {
        match dtype {
            // SAFETY: f16 and f32 are plain old data; align_to only hands out aligned values.
            GgmlDType::F16 => match unsafe { bytes.align_to::<f16>() } {
                ([], values, []) if values.len() == n * k => Some(Self::F16 { values, n, k }),
                _ => None,
            },
            GgmlDType::F32 => match unsafe { bytes.align_to::<f32>() } {
                ([], values, []) if values.len() == n * k => Some(Self::F32 { values, n, k }),
                _ => None,
            },
            _ => None,
        }
    }

    pub(in crate::model) fn n(&self) -> usize {
        match self {
            Self::Q8 { n, .. } | Self::F16 { n, .. } | Self::F32 { n, .. } => *n,
        }
    }

    pub(in crate::model) fn k(&self) -> usize {
        match self {
            Self::Q8 { k, .. } | Self::F16 { k, .. } | Self::F32 { k, .. } => *k,
        }
    }
}

/// `x Wᵀ` for `m` rows of `x` (`m × k`): `m × n`, or `None` where the kernels cannot run.
pub(super) fn matmul(w: &WeightRows, x: &[f32], m: usize) -> Option<Vec<f32>> {
    if !cpu_has_avx2() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        Some(if m <= GEMV_MAX_ROWS {
            gemv::gemv(w, x, m)
        } else {
            gemm::gemm(w, x, m)
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (w, x, m, GEMV_MAX_ROWS);
        None
    }
}

/// `silu(gate) · up` for `t` rows of the fused gate-and-up product (`[t, 2 · inter]`):
/// `[t, inter]`, or `None` where the kernels cannot run.
pub(super) fn silu_mul(gate_up: &[f32], t: usize, inter: usize) -> Option<Vec<f32>> {
    if !cpu_has_avx2() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        Some(activation::silu_mul(gate_up, t, inter))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (gate_up, t, inter);
        None
    }
}

/// Where one layer's heads come from and go.
pub(in crate::model) struct HeadShapes<'a> {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub q_norm: &'a [f32],
    pub k_norm: &'a [f32],
    pub eps: f32,
    /// `[t, head_dim / 2]`: the rotation of each token's position.
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    /// q's factor (`head_dim^-1/2`).
    pub scale: f32,
}

/// q `[heads, t, hd]`, k and v `[kv_heads, t, hd]`.
pub(in crate::model) struct Heads {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

/// q, k and v of a pass from the fused projection (`[t, (heads + 2 kv_heads) · hd]`): normed,
/// rotated, heads-first. `None` where the kernels cannot run.
pub(super) fn split_heads(qkv: &[f32], t: usize, shapes: &HeadShapes) -> Option<Heads> {
    if !cpu_has_avx2() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        Some(norm::split_heads(qkv, t, shapes))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (qkv, t, shapes);
        None
    }
}

/// `x + rms_norm(y) · weight` for rows of `weight.len()`. `None` where the kernels cannot run.
pub(super) fn add_norm(x: &[f32], y: &[f32], weight: &[f32], eps: f32) -> Option<Vec<f32>> {
    if !cpu_has_avx2() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        Some(norm::add_norm(x, y, weight, eps))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, y, weight, eps);
        None
    }
}

/// A layer's KV cache as the attention kernel reads it: `[kv_heads, capacity, head_dim]`.
pub(super) struct CacheRows<'a, W> {
    pub keys: &'a [W],
    pub values: &'a [W],
    pub kv_heads: usize,
    pub capacity: usize,
    pub head_dim: usize,
}

/// The queries of a pass (`q`: `[heads, tq, head_dim]`, scaled; the last `tq` of `rows`
/// positions) attending causally over the first `rows` rows of the cache:
/// `[tq, heads, head_dim]`, or `None` where the kernels cannot run.
pub(super) fn attend<W: CacheValue>(
    q: &[f32],
    tq: usize,
    cache: &CacheRows<W>,
    rows: usize,
) -> Option<Vec<f32>> {
    if !cpu_has_avx2() || !cache.head_dim.is_multiple_of(8) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        Some(attention::attend(q, tq, cache, rows))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (q, tq, cache, rows);
        None
    }
}

/// The element types of a KV cache the kernels read (f32, f16).
#[cfg(target_arch = "x86_64")]
pub(super) trait CacheValue: x86::DenseWeight + Sync {}
#[cfg(not(target_arch = "x86_64"))]
pub(super) trait CacheValue: Copy + Sync {}
impl CacheValue for f32 {}
impl CacheValue for f16 {}

/// Calls `f` with the elements of a CPU tensor in row-major order, borrowed (`None` if the
/// tensor is on another device or not contiguous).
pub(super) fn with_cpu_slice<T: WithDType, R>(
    t: &Tensor,
    f: impl FnOnce(&[T]) -> R,
) -> candle_core::Result<Option<R>> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Ok(None);
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Ok(None);
    };
    Ok(Some(f(&cpu.as_slice::<T>()?[start..end])))
}
