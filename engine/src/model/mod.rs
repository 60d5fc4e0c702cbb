//! The language model: OLMo2's forward pass on candle and the engine-owned KV cache.
//!
//! ```text
//! let model = Arc::new(Olmo2::load(&bundle, &Device::Cpu)?);
//! let mut cache = model.new_cache(512)?;
//! let logits = model.forward(&mut cache, &prompt_ids)?;   // prefill, last token's logits
//! let logits = model.forward(&mut cache, &[next_id])?;    // one decode step
//! cache.truncate(keep);                                   // prefix cut, O(1)
//! ```

mod kv_cache;
mod olmo2;

pub use kv_cache::KvCache;
pub use olmo2::{
    KvFormat, ModelOptions, Olmo2, Olmo2Config, RopeParameters, WeightFormat, WeightStats,
};
