//! The steps of a layer between its matrix products, each on the engine's CPU kernels where they
//! run and on candle's ops otherwise (CUDA, a CPU without AVX2, `--cpu-kernels candle`): the
//! heads out of the fused q/k/v product, attention over the cache, the MLP's gate, and the
//! residual adds with their norms. Both paths compute the same thing (tests/model_kernels.rs).

use anyhow::Result;
use candle_core::{DType, Tensor, D};

use super::kernels::{self, CacheRows, CacheValue, HeadShapes};
use super::kv_cache::KvCache;
use super::olmo2::{Layer, Norm, Olmo2};

impl Olmo2 {
    /// Whether attention runs on the engine's kernel (which needs no mask).
    pub(super) fn kernel_attention_runs(&self) -> bool {
        self.engine_kernels && self.head_dim.is_multiple_of(8)
    }

    /// q `[heads, t, hd]` (normed, rotated, scaled), k and v `[kv_heads, t, hd]` (k normed and
    /// rotated) from the fused product `[t, (heads + 2 kv_heads) hd]`; `cos`, `sin` are the RoPE
    /// rows of the tokens' positions.
    pub(super) fn split_heads(
        &self,
        layer: &Layer,
        qkv: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (t, _) = qkv.dims2()?;
        let (heads, kv_heads, hd) = (self.heads, self.kv_heads, self.head_dim);
        let scale = (hd as f64).powf(-0.5);
        if let (true, Some(q_norm), Some(k_norm)) = (
            self.engine_kernels,
            &layer.q_norm.values,
            &layer.k_norm.values,
        ) {
            let split = kernels::with_cpu_slice(cos, |cos: &[f32]| {
                kernels::with_cpu_slice(sin, |sin: &[f32]| {
                    let shapes = HeadShapes {
                        heads,
                        kv_heads,
                        head_dim: hd,
                        q_norm,
                        k_norm,
                        eps: self.eps,
                        cos,
                        sin,
                        scale: scale as f32,
                    };
                    kernels::with_cpu_slice(qkv, |qkv: &[f32]| {
                        kernels::split_heads(qkv, t, &shapes)
                    })
                })
            })?;
            if let Some(h) = split
                .transpose()?
                .flatten()
                .transpose()?
                .flatten()
                .flatten()
            {
                let dev = &self.device;
                return Ok((
                    Tensor::from_vec(h.q, (heads, t, hd), dev)?,
                    Tensor::from_vec(h.k, (kv_heads, t, hd), dev)?,
                    Tensor::from_vec(h.v, (kv_heads, t, hd), dev)?,
                ));
            }
        }
        let q = qkv.narrow(1, 0, heads * hd)?.contiguous()?;
        let k = qkv.narrow(1, heads * hd, kv_heads * hd)?.contiguous()?;
        let v = qkv.narrow(1, (heads + kv_heads) * hd, kv_heads * hd)?;
        let q = candle_nn::ops::rms_norm(&q, &layer.q_norm.weight, self.eps)?;
        let k = candle_nn::ops::rms_norm(&k, &layer.k_norm.weight, self.eps)?;
        // RoPE on [1, t, heads, hd], then heads first: [heads, t, hd].
        let q = candle_nn::rotary_emb::rope_thd(&q.reshape((1, t, heads, hd))?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_thd(&k.reshape((1, t, kv_heads, hd))?, cos, sin)?;
        let q = (q.squeeze(0)?.transpose(0, 1)? * scale)?.contiguous()?;
        let k = k.squeeze(0)?.transpose(0, 1)?.contiguous()?;
        let v = v
            .reshape((t, kv_heads, hd))?
            .transpose(0, 1)?
            .contiguous()?;
        Ok((q, k, v))
    }

    /// `q` (`[heads, t, hd]`, scaled: the last `t` of the cache rows `0..rows`) against those
    /// rows, causally: `[t, heads · hd]`. `mask` (`[t, rows]`) is for candle's path, t > 1.
    pub(super) fn attention(
        &self,
        index: usize,
        q: &Tensor,
        cache: &KvCache,
        mask: Option<&Tensor>,
        rows: usize,
    ) -> Result<Tensor> {
        if self.kernel_attention_runs() {
            if let Some(attn) = self.kernel_attention(index, q, cache, rows)? {
                return Ok(attn);
            }
        }
        self.candle_attention(index, q, cache, mask, rows)
    }

    /// `silu(gate) · up` from the fused product `[t, 2 · intermediate]`: `[t, intermediate]`.
    pub(super) fn gate(&self, gate_up: &Tensor) -> Result<Tensor> {
        let inter = self.config.intermediate_size;
        let t = gate_up.dim(0)?;
        if self.engine_kernels {
            let hidden =
                kernels::with_cpu_slice(gate_up, |g: &[f32]| kernels::silu_mul(g, t, inter))?;
            if let Some(hidden) = hidden.flatten() {
                return Ok(Tensor::from_vec(hidden, (t, inter), &self.device)?);
            }
        }
        Ok((gate_up.narrow(D::Minus1, 0, inter)?.silu()?
            * gate_up.narrow(D::Minus1, inter, inter)?)?)
    }

    /// `x + rms_norm(y) · norm` (a residual add after attention or the MLP).
    pub(super) fn add_norm(&self, x: &Tensor, y: &Tensor, norm: &Norm) -> Result<Tensor> {
        if let (true, Some(weight)) = (self.engine_kernels, &norm.values) {
            let out = kernels::with_cpu_slice(x, |xs: &[f32]| {
                kernels::with_cpu_slice(y, |ys: &[f32]| kernels::add_norm(xs, ys, weight, self.eps))
            })?;
            if let Some(out) = out.transpose()?.flatten().flatten() {
                return Ok(Tensor::from_vec(out, x.shape(), &self.device)?);
            }
        }
        Ok((x + candle_nn::ops::rms_norm(y, &norm.weight, self.eps)?)?)
    }

    /// The pass's queries (`q`: `[heads, t, hd]`, scaled: the last `t` of the cache rows
    /// `0..rows`) against those rows, causally, by the engine's kernels: `[t, heads · hd]`, or
    /// `None` where they do not run.
    fn kernel_attention(
        &self,
        index: usize,
        q: &Tensor,
        cache: &KvCache,
        rows: usize,
    ) -> Result<Option<Tensor>> {
        let t = q.dim(1)?;
        let (keys, values) = cache.layer(index);
        let out = kernels::with_cpu_slice(q, |q: &[f32]| match self.kv_dtype {
            DType::F32 => attend::<f32>(q, t, keys, values, rows),
            DType::F16 => attend::<half::f16>(q, t, keys, values, rows),
            _ => Ok(None),
        })?;
        Ok(match out.transpose()?.flatten() {
            Some(out) => Some(Tensor::from_vec(
                out,
                (t, q.elem_count() / t),
                &self.device,
            )?),
            None => None,
        })
    }

    /// `q` (`[heads, t, hd]`, scaled: the last `t` of the cache rows `0..rows`) against those
    /// rows with candle's ops (`mask`: `[t, rows]`, for t > 1): `[t, heads · hd]`.
    fn candle_attention(
        &self,
        index: usize,
        q: &Tensor,
        cache: &KvCache,
        mask: Option<&Tensor>,
        rows: usize,
    ) -> Result<Tensor> {
        let (heads, t, hd) = q.dims3()?;
        let (kv_heads, n_rep) = (self.kv_heads, self.heads / self.kv_heads);
        let kv = self.kv_dtype;
        let (keys, values) = cache.view(index, rows)?; // [kv_heads, rows, hd]

        // Query heads sharing a key head become rows of one product: [kv_heads, n_rep · t, hd].
        let q = q.reshape((kv_heads, n_rep * t, hd))?.to_dtype(kv)?;
        let mut scores = q.matmul(&keys.t()?)?.to_dtype(self.dtype)?; // [kv_heads, n_rep · t, rows]
        if let Some(mask) = mask {
            scores = scores
                .reshape((kv_heads, n_rep, t, rows))?
                .broadcast_add(mask)?
                .reshape((kv_heads, n_rep * t, rows))?;
        }
        let probs = if self.dtype == DType::F32 {
            candle_nn::ops::softmax_last_dim(&scores)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(self.dtype)?
        };
        let attn = probs.to_dtype(kv)?.matmul(&values)?.to_dtype(self.dtype)?; // [kv_heads, n_rep · t, hd]
        Ok(attn
            .reshape((heads, t, hd))?
            .transpose(0, 1)?
            .reshape((t, heads * hd))?)
    }
}

/// A pass's queries against a layer's cache, read in its element type `W`.
fn attend<W: CacheValue + candle_core::WithDType>(
    q: &[f32],
    t: usize,
    keys: &Tensor,
    values: &Tensor,
    rows: usize,
) -> candle_core::Result<Option<Vec<f32>>> {
    let (kv_heads, capacity, head_dim) = keys.dims3()?;
    let out = kernels::with_cpu_slice(keys, |keys: &[W]| {
        kernels::with_cpu_slice(values, |values: &[W]| {
            let cache = CacheRows {
                keys,
                values,
                kv_heads,
                capacity,
                head_dim,
            };
            kernels::attend(q, t, &cache, rows)
        })
    })?;
    Ok(out.transpose()?.flatten().flatten())
}
