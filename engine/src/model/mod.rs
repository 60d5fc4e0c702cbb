//! The language model: OLMo2's forward pass on candle (`olmo2`), its config (`config`), how it
//! holds its weights (`weights`) and the engine-owned KV cache (`kv_cache`).
//!
//! ```text
//! let model = Arc::new(Olmo2::load(&bundle, &Device::Cpu)?);
//! let mut cache = model.new_cache(512)?;
//! let logits = model.forward(&mut cache, &prompt_ids)?;   // prefill, last token's logits
//! let logits = model.forward(&mut cache, &[next_id])?;    // one decode step
//! cache.truncate(keep);                                   // prefix cut, O(1)
//! ```

mod config;
mod kernels;
mod kv_cache;
mod olmo2;
mod ops;
mod weights;

pub use config::{Olmo2Config, RopeParameters};
pub use kernels::{cpu_has_avx2, CpuKernels};
pub use kv_cache::KvCache;
pub use olmo2::Olmo2;
pub use weights::{KvFormat, ModelOptions, WeightFormat, WeightStats};
