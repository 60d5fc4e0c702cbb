//! The engine-owned KV cache: preallocated to its capacity, written in place, truncatable.
//!
//! Each layer holds one key and one value tensor of shape `[kv_heads, capacity, head_dim]`. A
//! forward pass writes the new tokens' keys and values at rows `len..len + t` (no concatenation,
//! no reallocation) and attends over rows `0..len + t` only. Truncating is O(1): it moves `len`
//! back, and the rows kept are exactly what a fresh prefill of that prefix would have written
//! (each row depends only on the tokens before it and its absolute position), so RoPE positions
//! stay valid after a prefix cut.

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};

pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    pub(crate) fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        ensure!(
            capacity > 0,
            "a KV cache needs a capacity of at least one token"
        );
        let shape = (kv_heads, capacity, head_dim);
        let mut keys = Vec::with_capacity(layers);
        let mut values = Vec::with_capacity(layers);
        for _ in 0..layers {
            keys.push(Tensor::zeros(shape, dtype, device).context("allocating the KV cache")?);
            values.push(Tensor::zeros(shape, dtype, device).context("allocating the KV cache")?);
        }
        Ok(Self {
            keys,
            values,
            len: 0,
            capacity,
        })
    }

    /// Tokens held (the next token goes at this position).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Tokens that still fit.
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// Keeps the first `len` tokens (a prefix cut); a longer `len` changes nothing. O(1).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Drops every token. O(1).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes held by the preallocated tensors.
    pub fn memory_bytes(&self) -> usize {
        self.keys
            .iter()
            .chain(self.values.iter())
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// Writes `k`, `v` (`[kv_heads, t, head_dim]`, contiguous) at rows `len..len + t` of `layer`.
    /// `len` itself moves only in [`KvCache::advance`], once every layer is written.
    pub(crate) fn write(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let (key, value) = (&self.keys[layer], &self.values[layer]);
        key.slice_set(k, 1, self.len)
            .context("writing keys into the KV cache")?;
        value
            .slice_set(v, 1, self.len)
            .context("writing values into the KV cache")?;
        Ok(())
    }

    /// Keys and values of `layer` for rows `0..rows` (views, no copy): `[kv_heads, rows, head_dim]`.
    pub(crate) fn view(&self, layer: usize, rows: usize) -> Result<(Tensor, Tensor)> {
        Ok((
            self.keys[layer].narrow(1, 0, rows)?,
            self.values[layer].narrow(1, 0, rows)?,
        ))
    }

    /// The whole key and value tensors of `layer`: `[kv_heads, capacity, head_dim]`.
    pub(crate) fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        (&self.keys[layer], &self.values[layer])
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }

    pub(crate) fn layers(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn layout(&self) -> Option<(usize, usize, DType)> {
        let k = self.keys.first()?;
        let (kv_heads, _, head_dim) = k.dims3().ok()?;
        Some((kv_heads, head_dim, k.dtype()))
    }
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("layers", &self.keys.len())
            .finish()
    }
}
