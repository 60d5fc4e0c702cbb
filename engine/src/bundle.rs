//! The model bundle: the folder the training side exports (`midicopilot export`) and the engine
//! loads. It holds
//!
//! - `model.safetensors`: merged weights with transformers `Olmo2ForCausalLM` key names, f32 or
//!   bf16 on disk;
//! - `config.json`: a transformers `Olmo2Config`;
//! - `tokenizer.json`: the Hugging Face ByteLevel BPE tokenizer of the MIDI event text;
//! - `midicopilot.json`: the bundle metadata (format, bundle and event-language versions, the
//!   event-language parameters, the metadata tokens, the special tokens and the vocabulary size).
//!
//! [`Bundle::load`] checks everything it can without reading the weights: a bundle that this
//! engine cannot run is refused with one line saying what is wrong and what to do.

mod check;
mod meta;

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

pub use meta::{BundleMeta, EventParams, PlayDefaults};

use crate::model::Olmo2Config;
use check::{check_config_ids, check_defaults, check_params, check_versions, vocab_rows};

/// `midicopilot.json`'s `format` value.
pub const BUNDLE_FORMAT: &str = "midicopilot-bundle";
/// The bundle layout version this engine reads.
pub const BUNDLE_VERSION: u32 = 1;
/// The event language this engine speaks (docs/FORMAT.md).
pub const EVENT_LANGUAGE: &str = "v1";

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const META_FILE: &str = "midicopilot.json";

const REEXPORT: &str = "re-export the bundle with `midicopilot export`";

/// Why a bundle was refused. Each message is one line that ends with what to do.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("model bundle {0} is not a folder: pass the folder written by `midicopilot export`")]
    NotAFolder(PathBuf),
    #[error("model bundle {dir} has no {file}: {REEXPORT}")]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("model bundle {dir}: cannot read {file}: {reason}: {REEXPORT}")]
    Unreadable {
        dir: PathBuf,
        file: &'static str,
        reason: String,
    },
    #[error("model bundle {dir}: {file} {problem}: {REEXPORT}")]
    Invalid {
        dir: PathBuf,
        file: &'static str,
        problem: String,
    },
    #[error(
        "model bundle {dir} is bundle_version {found}, this engine reads bundle_version \
         {BUNDLE_VERSION}: {REEXPORT} (or use an engine built for that version)"
    )]
    BundleVersion { dir: PathBuf, found: u32 },
    #[error(
        "model bundle {dir} speaks event language {found:?}, this engine speaks {EVENT_LANGUAGE:?}: \
         {REEXPORT} (or use an engine built for that language)"
    )]
    EventLanguage { dir: PathBuf, found: String },
    #[error(
        "model bundle {dir}: the vocabulary sizes disagree (config.json vocab_size {config}, \
         tokenizer.json {tokenizer} tokens, model.safetensors embed_tokens {embed} rows{lm_head}, \
         midicopilot.json vocab_size {meta}): {REEXPORT}"
    )]
    VocabMismatch {
        dir: PathBuf,
        config: usize,
        tokenizer: usize,
        embed: usize,
        lm_head: String,
        meta: usize,
    },
    #[error("model bundle {dir}: tokenizer.json lacks the token(s) {missing} that midicopilot.json names: {REEXPORT}")]
    MissingTokens { dir: PathBuf, missing: String },
}

/// A checked model bundle: everything but the weights is loaded.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Olmo2Config,
    pub meta: BundleMeta,
    pub tokenizer: Tokenizer,
    /// Path of `model.safetensors` (memory-mapped by [`crate::model::Olmo2::load`]).
    pub weights: PathBuf,
    /// Token id of `meta.pad_token`.
    pub pad_id: u32,
    /// Token id of `meta.eos_token`.
    pub eos_id: u32,
    /// Token ids of `meta.meta_tokens`, in the same order.
    pub meta_token_ids: Vec<u32>,
}

impl Bundle {
    /// Loads and checks a bundle folder.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, BundleError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(BundleError::NotAFolder(dir));
        }
        for file in [META_FILE, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE] {
            if !dir.join(file).is_file() {
                return Err(BundleError::MissingFile { dir, file });
            }
        }

        // Versions first: a bundle from another generation should be named as such, not as a
        // pile of mismatched fields.
        let meta_text = read_text(&dir, META_FILE)?;
        let meta_value: serde_json::Value = serde_json::from_str(&meta_text)
            .map_err(|e| invalid(&dir, META_FILE, format!("is not JSON ({e})")))?;
        check_versions(&dir, &meta_value)?;
        let meta: BundleMeta = serde_json::from_value(meta_value).map_err(|e| {
            invalid(
                &dir,
                META_FILE,
                format!("is not a bundle metadata file ({e})"),
            )
        })?;
        check_params(&dir, &meta.params)?;
        check_defaults(&dir, &meta.defaults)?;

        let config_text = read_text(&dir, CONFIG_FILE)?;
        let config = Olmo2Config::from_json(&config_text)
            .map_err(|e| invalid(&dir, CONFIG_FILE, format!("{e:#}")))?;

        let tokenizer = Tokenizer::from_file(dir.join(TOKENIZER_FILE)).map_err(|e| {
            invalid(
                &dir,
                TOKENIZER_FILE,
                format!("is not a Hugging Face tokenizer ({e})"),
            )
        })?;

        let weights = dir.join(WEIGHTS_FILE);
        let (embed_rows, lm_head_rows) = vocab_rows(&dir, &weights, config.tie_word_embeddings)?;

        let tok_vocab = tokenizer.get_vocab_size(true);
        let all_equal = [
            tok_vocab,
            embed_rows,
            meta.vocab_size,
            lm_head_rows.unwrap_or(embed_rows),
        ]
        .iter()
        .all(|&n| n == config.vocab_size);
        if !all_equal {
            return Err(BundleError::VocabMismatch {
                dir,
                config: config.vocab_size,
                tokenizer: tok_vocab,
                embed: embed_rows,
                lm_head: lm_head_rows
                    .map(|n| format!(", lm_head {n} rows"))
                    .unwrap_or_default(),
                meta: meta.vocab_size,
            });
        }

        let mut missing = Vec::new();
        let mut id_of = |token: &str| match tokenizer.token_to_id(token) {
            Some(id) => id,
            None => {
                missing.push(token.to_string());
                0
            }
        };
        let pad_id = id_of(&meta.pad_token);
        let eos_id = id_of(&meta.eos_token);
        let meta_token_ids: Vec<u32> = meta.meta_tokens.iter().map(|t| id_of(t)).collect();
        if !missing.is_empty() {
            return Err(BundleError::MissingTokens {
                dir,
                missing: missing.join(", "),
            });
        }
        check_config_ids(&dir, &config, pad_id, eos_id)?;

        Ok(Bundle {
            dir,
            config,
            meta,
            tokenizer,
            weights,
            pad_id,
            eos_id,
            meta_token_ids,
        })
    }
}

fn invalid(dir: &Path, file: &'static str, problem: String) -> BundleError {
    BundleError::Invalid {
        dir: dir.to_path_buf(),
        file,
        problem,
    }
}

fn read_text(dir: &Path, file: &'static str) -> Result<String, BundleError> {
    std::fs::read_to_string(dir.join(file)).map_err(|e| BundleError::Unreadable {
        dir: dir.to_path_buf(),
        file,
        reason: e.to_string(),
    })
}
