//! [`Olmo2Config`]: the fields of a bundle's `config.json` the forward pass uses, checked.

use std::collections::BTreeSet;

use anyhow::{ensure, Context as _, Result};
use serde::Deserialize;

/// The fields of a transformers `Olmo2Config` that the forward pass uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Olmo2Config {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_max_position")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// transformers 4.x writes it here; 5.x inside `rope_parameters`.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// An id or a list of ids.
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RopeParameters {
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_type: Option<String>,
}

fn default_max_position() -> usize {
    2048
}
fn default_rms_norm_eps() -> f64 {
    1e-5
}
fn default_hidden_act() -> String {
    "silu".to_string()
}

impl Olmo2Config {
    /// Parses and checks config.json; the error says which field is wrong.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).context("is not an OLMo2 config")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if let Some(kind) = &self.model_type {
            ensure!(
                kind == "olmo2",
                "has model_type {kind:?}; this engine runs \"olmo2\" models"
            );
        }
        ensure!(
            self.hidden_act == "silu",
            "has hidden_act {:?}; OLMo2 uses \"silu\"",
            self.hidden_act
        );
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            ensure!(value > 0, "has {name} 0");
        }
        ensure!(
            self.num_attention_heads.is_multiple_of(self.kv_heads()),
            "has num_attention_heads {} not a multiple of num_key_value_heads {}",
            self.num_attention_heads,
            self.kv_heads()
        );
        ensure!(
            self.head_dim() > 0 && self.head_dim().is_multiple_of(2),
            "gives head_dim {}; RoPE needs an even head dimension",
            self.head_dim()
        );
        ensure!(
            self.rope_theta() > 0.0,
            "has rope_theta {}",
            self.rope_theta()
        );
        let rope_type = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.rope_type.clone())
            .or_else(|| {
                self.rope_scaling.as_ref().and_then(|s| {
                    s.get("rope_type")
                        .or_else(|| s.get("type"))
                        .and_then(|t| t.as_str())
                        .map(str::to_string)
                })
            });
        if let Some(kind) = rope_type {
            ensure!(
                kind == "default",
                "has rope_type {kind:?}; this engine runs \"default\" RoPE only"
            );
        }
        Ok(())
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// `rope_parameters.rope_theta` (transformers 5.x), else top-level `rope_theta` (4.x), else
    /// OLMo2's default 10000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10_000.0)
    }

    /// `eos_token_id` as a set (empty when absent).
    pub fn eos_token_ids(&self) -> BTreeSet<u32> {
        let as_id = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        match &self.eos_token_id {
            Some(serde_json::Value::Array(ids)) => ids.iter().filter_map(as_id).collect(),
            Some(v) => as_id(v).into_iter().collect(),
            None => BTreeSet::new(),
        }
    }

    /// Parameter count (embedding and head counted once each, twice when untied).
    pub fn parameter_count(&self) -> usize {
        let (h, hd) = (self.hidden_size, self.head_dim());
        let q = self.num_attention_heads * hd;
        let kv = self.kv_heads() * hd;
        let attn = h * (q + 2 * kv) + q * h + q + kv;
        let mlp = 3 * h * self.intermediate_size;
        let layer = attn + mlp + 2 * h;
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        self.num_hidden_layers * layer + embed + head + h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1"#;

    #[test]
    fn rope_theta_read_from_either_place() {
        let new = Olmo2Config::from_json(&format!(
            r#"{BASE}, "rope_parameters": {{"rope_theta": 500000.0, "rope_type": "default"}}}}"#
        ))
        .unwrap();
        assert_eq!(new.rope_theta(), 500000.0);
        let old = Olmo2Config::from_json(&format!(r#"{BASE}, "rope_theta": 250000.0}}"#)).unwrap();
        assert_eq!(old.rope_theta(), 250000.0);
        let none = Olmo2Config::from_json(&format!("{BASE}}}")).unwrap();
        assert_eq!(none.rope_theta(), 10000.0);
    }

    #[test]
    fn scaled_rope_and_bad_heads_are_refused() {
        let scaled = Olmo2Config::from_json(&format!(
            r#"{BASE}, "rope_parameters": {{"rope_theta": 1.0, "rope_type": "linear", "factor": 2.0}}}}"#
        ));
        assert!(format!("{:#}", scaled.unwrap_err()).contains("linear"));
        let heads = Olmo2Config::from_json(
            r#"{"vocab_size": 10, "hidden_size": 9, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 3, "num_key_value_heads": 2}"#,
        );
        assert!(format!("{:#}", heads.unwrap_err()).contains("num_key_value_heads"));
    }
}
