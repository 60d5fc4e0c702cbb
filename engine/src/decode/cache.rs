//! The KV caches behind the context: the live one, and a spare one the flush fills beside it; the
//! forward pass and its timing. What the caches hold, and when, is decided in flush.rs
//! (docs/ENGINE.md "The context and the KV cache").

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use crate::model::{KvCache, Olmo2};

/// The live cache, holding a prefix of `header ++ body`, and the preallocated spare.
pub struct Caches {
    model: Arc<Olmo2>,
    limit: usize,
    live: KvCache,
    spare: Option<KvCache>,
}

impl Caches {
    /// Both caches, preallocated to `limit` tokens.
    pub fn new(model: Arc<Olmo2>, limit: usize) -> Result<Self> {
        let live = model.new_cache(limit)?;
        let spare = Some(model.new_cache(limit)?);
        Ok(Self {
            model,
            limit,
            live,
            spare,
        })
    }

    /// Tokens in the live cache.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn capacity(&self) -> usize {
        self.live.capacity()
    }

    pub fn remaining(&self) -> usize {
        self.live.remaining()
    }

    /// Keep the first `len` rows of the live cache (a prefix cut: every kept row stays at its
    /// position, so RoPE stays valid).
    pub fn truncate(&mut self, len: usize) {
        self.live.truncate(len);
    }

    /// Feed `ids` after the live cache; the last token's logits. Adds the time to `seconds`.
    pub fn forward(&mut self, ids: &[u32], seconds: &mut f64) -> Result<Vec<f32>> {
        let t0 = Instant::now();
        let logits = self.model.forward(&mut self.live, ids)?;
        *seconds += t0.elapsed().as_secs_f64();
        Ok(logits)
    }

    /// [`forward`](Self::forward) into another cache (a flush's).
    pub fn forward_into(
        &self,
        cache: &mut KvCache,
        ids: &[u32],
        seconds: &mut f64,
    ) -> Result<Vec<f32>> {
        let t0 = Instant::now();
        let logits = self.model.forward(cache, ids)?;
        *seconds += t0.elapsed().as_secs_f64();
        Ok(logits)
    }

    /// An empty cache for a flush: the spare, or a new one if a flush holds it.
    pub fn take_spare(&mut self) -> Result<KvCache> {
        let mut cache = match self.spare.take() {
            Some(c) => c,
            None => self.model.new_cache(self.limit)?,
        };
        cache.clear();
        Ok(cache)
    }

    /// A flush's cache back, cleared, as the spare.
    pub fn give_spare(&mut self, mut cache: KvCache) {
        cache.clear();
        self.spare = Some(cache);
    }

    /// Make `cache` the live one; the old live cache becomes the spare.
    pub fn swap_live(&mut self, cache: KvCache) {
        let old = std::mem::replace(&mut self.live, cache);
        self.give_spare(old);
    }
}

/// Run `f` and say how long it took, in seconds.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t0 = Instant::now();
    let out = f();
    (out, t0.elapsed().as_secs_f64())
}
