//! OLMo2 (transformers `Olmo2ForCausalLM`) on candle, with the engine's own KV cache.
//!
//! The math follows transformers' `modeling_olmo2.py` (not candle-transformers' `olmo2.rs`: it
//! concatenates its KV cache on every token, and builds its RoPE table in the model dtype).
//! Per layer:
//!
//! ```text
//! q = rms_norm(x Wq, q_norm)   k = rms_norm(x Wk, k_norm)   v = x Wv     (norms over all heads)
//! q, k = rope(q), rope(k)      (rotate-half RoPE, table in f32)
//! h = x + rms_norm(attention(q, k, v) Wo, post_attention_layernorm)
//! y = h + rms_norm(down(silu(gate h) * up h), post_feedforward_layernorm)
//! ```
//!
//! then `rms_norm(·, norm)` and `lm_head` (or the embedding when tied). Grouped-query attention
//! never copies keys: the query heads that share a key head read the same cache rows. Without
//! every token's logits, the last layer computes attention and MLP for the last token only. On
//! CUDA the model runs in bf16 with an f32 softmax; how the CPU holds the weights is
//! `weights.rs`'s, and each step between the products runs on the engine's CPU kernels or on
//! candle's ops as `ops.rs` decides (docs/ENGINE.md "Kernels").

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::Olmo2Config;
use super::kv_cache::KvCache;
use super::weights::{KvFormat, Linear, ModelOptions, WeightStats};
use crate::bundle::Bundle;

pub(super) struct Layer {
    /// q, k and v projections stacked into one `[(heads + 2 kv_heads) · head_dim, hidden]`.
    qkv: Linear,
    o: Linear,
    pub(super) q_norm: Norm,
    pub(super) k_norm: Norm,
    /// gate and up projections stacked into one `[2 · intermediate, hidden]`.
    gate_up: Linear,
    down: Linear,
    pub(super) post_attention_norm: Norm,
    pub(super) post_feedforward_norm: Norm,
}

/// An RMS norm's weight, and on the CPU its values for the engine's kernels.
pub(super) struct Norm {
    pub(super) weight: Tensor,
    pub(super) values: Option<Vec<f32>>,
}

impl Norm {
    fn new(weight: Tensor, kernels: bool) -> Result<Self> {
        let values = kernels.then(|| weight.to_vec1::<f32>()).transpose()?;
        Ok(Self { weight, values })
    }
}

/// The OLMo2 weights and RoPE tables. Immutable after load: share it through `Arc` (it is
/// `Send + Sync`); all state of a running sequence lives in its [`KvCache`].
pub struct Olmo2 {
    pub(super) config: Olmo2Config,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    /// `[max_position, head_dim / 2]`, computed in f32 then cast to the compute dtype.
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
    pub(super) dtype: DType,
    pub(super) kv_dtype: DType,
    pub(super) device: Device,
    pub(super) heads: usize,
    pub(super) kv_heads: usize,
    pub(super) head_dim: usize,
    pub(super) eps: f32,
    weight_stats: WeightStats,
    /// The engine's CPU kernels run (`kernels`); else candle's throughout.
    pub(super) engine_kernels: bool,
}

impl Olmo2 {
    /// Loads the bundle's weights in f32 (see [`Olmo2::load_with`]).
    pub fn load(bundle: &Bundle, device: &Device) -> Result<Self> {
        Self::load_with(bundle, device, ModelOptions::default())
    }

    /// Loads the bundle's weights (memory-mapped; on the CPU read as f32, then held in the
    /// options' weight format).
    pub fn load_with(bundle: &Bundle, device: &Device, options: ModelOptions) -> Result<Self> {
        let dtype = if device.is_cpu() {
            DType::F32
        } else {
            DType::BF16
        };
        // SAFETY: the weights file is mapped read-only; candle copies every tensor out of the map
        // while loading, so the map does not outlive this call.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&bundle.weights], dtype, device) }
            .with_context(|| format!("cannot read {}", bundle.weights.display()))?;
        Self::from_var_builder(&bundle.config, vb, options)
            .with_context(|| format!("model bundle {}", bundle.dir.display()))
    }

    fn from_var_builder(
        config: &Olmo2Config,
        vb: VarBuilder,
        options: ModelOptions,
    ) -> Result<Self> {
        let cpu = vb.device().is_cpu();
        let format = cpu.then_some(options.weights);
        let kernels = options.kernels;
        let engine_kernels = cpu && kernels.engine_runs();
        let kv = options
            .kv
            .unwrap_or_else(|| KvFormat::default_for(options.weights, options.kernels));
        let kv_dtype = match (cpu, kv) {
            (true, KvFormat::F16) => DType::F16,
            _ => vb.dtype(),
        };
        let mut stats = WeightStats {
            format,
            ..WeightStats::default()
        };
        let (h, hd, heads, kv_heads) = (
            config.hidden_size,
            config.head_dim(),
            config.num_attention_heads,
            config.kv_heads(),
        );
        let inter = config.intermediate_size;
        let get = |vb: &VarBuilder, shape: &[usize], name: &str| -> Result<Tensor> {
            vb.get(shape, name).with_context(|| {
                let prefix = vb.prefix();
                let dot = if prefix.is_empty() { "" } else { "." };
                format!("model.safetensors lacks {prefix}{dot}{name} of shape {shape:?}")
            })
        };
        let bias = |vb: &VarBuilder, n: usize, name: &str| -> Result<Option<Tensor>> {
            if config.attention_bias {
                get(vb, &[n], name).map(Some)
            } else {
                Ok(None)
            }
        };

        let m = vb.pp("model");
        let embed = get(&m, &[config.vocab_size, h], "embed_tokens.weight")?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = m.pp(format!("layers.{i}"));
            let a = l.pp("self_attn");
            let q = get(&a, &[heads * hd, h], "q_proj.weight")?;
            let k = get(&a, &[kv_heads * hd, h], "k_proj.weight")?;
            let v = get(&a, &[kv_heads * hd, h], "v_proj.weight")?;
            let qkv_bias = match (
                bias(&a, heads * hd, "q_proj.bias")?,
                bias(&a, kv_heads * hd, "k_proj.bias")?,
                bias(&a, kv_heads * hd, "v_proj.bias")?,
            ) {
                (Some(q), Some(k), Some(v)) => Some(Tensor::cat(&[q, k, v], 0)?),
                _ => None,
            };
            let qkv = Linear::new(
                Tensor::cat(&[q, k, v], 0)?,
                qkv_bias,
                format,
                kernels,
                &mut stats,
            )?;
            let o = Linear::new(
                get(&a, &[h, heads * hd], "o_proj.weight")?,
                bias(&a, h, "o_proj.bias")?,
                format,
                kernels,
                &mut stats,
            )?;
            let mlp = l.pp("mlp");
            let gate = get(&mlp, &[inter, h], "gate_proj.weight")?;
            let up = get(&mlp, &[inter, h], "up_proj.weight")?;
            layers.push(Layer {
                qkv,
                o,
                q_norm: Norm::new(get(&a, &[heads * hd], "q_norm.weight")?, engine_kernels)?,
                k_norm: Norm::new(get(&a, &[kv_heads * hd], "k_norm.weight")?, engine_kernels)?,
                gate_up: Linear::new(
                    Tensor::cat(&[gate, up], 0)?,
                    None,
                    format,
                    kernels,
                    &mut stats,
                )?,
                down: Linear::new(
                    get(&mlp, &[h, inter], "down_proj.weight")?,
                    None,
                    format,
                    kernels,
                    &mut stats,
                )?,
                post_attention_norm: Norm::new(
                    get(&l, &[h], "post_attention_layernorm.weight")?,
                    engine_kernels,
                )?,
                post_feedforward_norm: Norm::new(
                    get(&l, &[h], "post_feedforward_layernorm.weight")?,
                    engine_kernels,
                )?,
            });
        }
        let norm = get(&m, &[h], "norm.weight")?;
        let lm_head = if config.tie_word_embeddings {
            embed.clone()
        } else {
            get(&vb, &[config.vocab_size, h], "lm_head.weight")?
        };
        let lm_head = Linear::new(lm_head, None, format, kernels, &mut stats)?;
        let (cos, sin) = rope_tables(config, vb.dtype(), vb.device())?;
        Ok(Self {
            config: config.clone(),
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            dtype: vb.dtype(),
            kv_dtype,
            device: vb.device().clone(),
            heads,
            kv_heads,
            head_dim: hd,
            eps: config.rms_norm_eps as f32,
            weight_stats: stats,
            engine_kernels,
        })
    }

    /// The KV cache's element type.
    pub fn kv_dtype(&self) -> DType {
        self.kv_dtype
    }

    /// The weights' format and how many bytes a decode step reads from them.
    pub fn weight_stats(&self) -> &WeightStats {
        &self.weight_stats
    }

    /// Bytes one decode step reads at `context` tokens: the projection and head weights, one
    /// embedding row, the norms, and the KV cache's keys and values for every layer.
    pub fn decode_bytes(&self, context: usize) -> usize {
        let c = &self.config;
        let f32s = DType::F32.size_in_bytes();
        let norms = c.num_hidden_layers
            * (2 * c.hidden_size + (self.heads + self.kv_heads) * self.head_dim)
            + c.hidden_size;
        let kv = 2
            * c.num_hidden_layers
            * self.kv_heads
            * self.head_dim
            * context
            * self.kv_dtype.size_in_bytes();
        self.weight_stats.bytes + (c.hidden_size + norms) * f32s + kv
    }

    /// A KV cache for up to `capacity` tokens, allocated now.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        ensure!(
            capacity <= self.max_position(),
            "a KV cache of {capacity} tokens is longer than the model's {} positions",
            self.max_position()
        );
        KvCache::new(
            self.layers.len(),
            self.kv_heads,
            self.head_dim,
            capacity,
            self.kv_dtype,
            &self.device,
        )
    }

    /// Runs `tokens` at positions `cache.len()..` and appends their keys and values; returns the
    /// logits of the last token (`vocab_size` values, f32).
    pub fn forward(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>> {
        let logits = self.run(cache, tokens, false)?;
        Ok(logits.squeeze(0)?.to_vec1::<f32>()?)
    }

    /// Like [`Olmo2::forward`], but returns the logits of every token.
    pub fn forward_all(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        Ok(self.run(cache, tokens, true)?.to_vec2::<f32>()?)
    }

    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    /// Positions the RoPE table covers (`max_position_embeddings`).
    pub fn max_position(&self) -> usize {
        self.config.max_position_embeddings
    }

    pub fn config(&self) -> &Olmo2Config {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Returns `[rows, vocab]` f32 logits: every token's, or the last one's.
    fn run(&self, cache: &mut KvCache, tokens: &[u32], all: bool) -> Result<Tensor> {
        let t = tokens.len();
        ensure!(t > 0, "forward pass over no tokens");
        let pos = cache.len();
        ensure!(
            cache.layers() == self.layers.len()
                && cache.layout() == Some((self.kv_heads, self.head_dim, self.kv_dtype)),
            "this KV cache was made for another model"
        );
        ensure!(
            pos + t <= cache.capacity(),
            "{t} more tokens do not fit the KV cache ({pos} of {} used): flush it first",
            cache.capacity()
        );
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= self.vocab_size()) {
            bail!(
                "token id {bad} is outside the model's vocabulary of {}",
                self.vocab_size()
            );
        }
        let ids = Tensor::from_slice(tokens, (t,), &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?; // [t, hidden]
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        // The engine's attention kernel needs no mask (it stops at each query's own position).
        let mask = if t > 1 && !self.kernel_attention_runs() {
            Some(self.causal_mask(t, pos)?)
        } else {
            None
        };
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            // Without every token's logits, the last layer needs every token's keys and values
            // (for the cache) but only the last token's attention and MLP.
            let queries = if all || i < last {
                Queries::All
            } else {
                Queries::Last
            };
            x = self.layer_forward(layer, i, &x, cache, &cos, &sin, mask.as_ref(), queries)?;
        }
        cache.advance(t);
        let x = if all {
            x
        } else {
            x.narrow(0, x.dim(0)? - 1, 1)?
        };
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.eps)?;
        let logits = self.lm_head.forward(&x)?;
        Ok(logits.to_dtype(DType::F32)?)
    }

    /// `[t, pos + t]`: 0 where token `i` (at `pos + i`) may attend, -inf after it.
    fn causal_mask(&self, t: usize, pos: usize) -> Result<Tensor> {
        let width = pos + t;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| {
                (0..width).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })
            })
            .collect();
        Ok(Tensor::from_vec(mask, (t, width), &self.device)?.to_dtype(self.dtype)?)
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        layer: &Layer,
        index: usize,
        x: &Tensor,
        cache: &KvCache,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        queries: Queries,
    ) -> Result<Tensor> {
        let (t, _) = x.dims2()?;
        let past = cache.len();

        let qkv = layer.qkv.forward(x)?; // [t, (heads + 2 kv_heads) hd]
        let (q, k, v) = self.split_heads(layer, &qkv, cos, sin)?;
        let kv = self.kv_dtype;
        cache.write(index, &k.to_dtype(kv)?, &v.to_dtype(kv)?)?;

        // Every query attends to the cache rows up to its own; the last token's, to all of them.
        let rows = past + t;
        // Only the last token's query: it attends to every key, unmasked.
        let (q, x, mask) = match queries {
            Queries::Last if t > 1 => (
                q.narrow(1, t - 1, 1)?.contiguous()?,
                x.narrow(0, t - 1, 1)?,
                None,
            ),
            _ => (q, x.clone(), mask),
        };
        let attn = self.attention(index, &q, cache, mask, rows)?;
        let attn = layer.o.forward(&attn)?;
        let x = self.add_norm(&x, &attn, &layer.post_attention_norm)?;

        let gate_up = layer.gate_up.forward(&x)?; // [t, 2 · intermediate]
        let hidden = self.gate(&gate_up)?;
        let mlp = layer.down.forward(&hidden)?;
        self.add_norm(&x, &mlp, &layer.post_feedforward_norm)
    }
}

/// Which tokens of a pass a layer computes attention and MLP for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Queries {
    All,
    /// The last only (the last layer, when only the last logits are wanted).
    Last,
}

/// RoPE cos/sin tables `[max_position, head_dim / 2]`, computed in f32 (a bf16 position would
/// round 257 to 256) and only then cast to the compute dtype.
fn rope_tables(config: &Olmo2Config, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
    let dim = config.head_dim();
    let theta = config.rope_theta();
    let inv_freq: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / theta.powf(i as f64 / dim as f64) as f32)
        .collect();
    let half = inv_freq.len();
    let positions = config.max_position_embeddings;
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let pos = Tensor::arange(0u32, positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((positions, 1))?;
    let freqs = pos.broadcast_mul(&inv_freq)?;
    Ok((freqs.cos()?.to_dtype(dtype)?, freqs.sin()?.to_dtype(dtype)?))
}
