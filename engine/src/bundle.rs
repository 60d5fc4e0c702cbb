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

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::decode::SamplingParams;
use crate::model::Olmo2Config;

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

/// The event-language parameters recorded in the bundle (docs/FORMAT.md, "Parameters").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventParams {
    pub ticks_per_quarter: u32,
    pub velocity_bins: u32,
    /// Grid unit in ticks; tpq / 2 when absent.
    #[serde(default)]
    pub grid: Option<u32>,
    /// Largest grid word in ticks; 4 × tpq when absent.
    #[serde(default)]
    pub max_grid: Option<u32>,
}

impl EventParams {
    pub fn grid(&self) -> u32 {
        self.grid.unwrap_or(self.ticks_per_quarter / 2)
    }
    pub fn max_grid(&self) -> u32 {
        self.max_grid.unwrap_or(self.ticks_per_quarter * 4)
    }
}

/// `midicopilot.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct BundleMeta {
    pub format: String,
    pub bundle_version: u32,
    pub event_language: String,
    pub params: EventParams,
    #[serde(default)]
    pub meta_tokens: Vec<String>,
    pub pad_token: String,
    pub eos_token: String,
    pub vocab_size: usize,
    /// The context length the model was trained with (tokens).
    #[serde(default)]
    pub context_length: Option<usize>,
    /// How the model is meant to be played, unless a flag or a preset says otherwise.
    #[serde(default)]
    pub defaults: PlayDefaults,
    /// Keys this engine does not interpret (kept for tools that print them).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `midicopilot.json`'s `defaults`: the header and sampling the bundle's trainer recommends
/// (measured with `midicopilot eval`, docs/QUALITY.md). Every field is optional; a flag, a
/// preset key or a switch request wins over it, and the engine's own default comes last.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayDefaults {
    /// Genre name of the header (`CHORALE` for `[GENRE_CHORALE]`).
    pub genre: Option<String>,
    /// Part name of the header (`SOPRANO` for `[PART_SOPRANO]`).
    pub part: Option<String>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_polyphony: Option<u32>,
    /// How the engine holds the weights on the CPU (`--weights`).
    pub weights: Option<crate::model::WeightFormat>,
    /// Polyphony per part name, over `max_polyphony` (a chorale voice sings one note).
    #[serde(default)]
    pub polyphony: std::collections::BTreeMap<String, u32>,
}

impl PlayDefaults {
    /// Sampling from the player's choice, else the bundle's recommendation, else the engine's
    /// default.
    pub fn sampling(&self, temperature: Option<f32>, top_p: Option<f32>) -> SamplingParams {
        let builtin = SamplingParams::default();
        SamplingParams {
            temperature: temperature
                .or(self.temperature)
                .unwrap_or(builtin.temperature),
            top_p: top_p.or(self.top_p).unwrap_or(builtin.top_p),
        }
    }

    /// Polyphony from the player's choice, else the bundle's for the header's part word
    /// (`[PART_SOPRANO]`), else its general one, else `fallback`.
    pub fn polyphony(&self, choice: Option<u32>, header: &[String], fallback: u32) -> u32 {
        let part = header
            .iter()
            .find_map(|w| w.strip_prefix("[PART_")?.strip_suffix(']'));
        choice
            .or_else(|| part.and_then(|p| self.polyphony.get(p).copied()))
            .or(self.max_polyphony)
            .unwrap_or(fallback)
    }
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

fn check_versions(dir: &Path, meta: &serde_json::Value) -> Result<(), BundleError> {
    let format = meta.get("format").and_then(|v| v.as_str());
    if format != Some(BUNDLE_FORMAT) {
        return Err(invalid(
            dir,
            META_FILE,
            format!("has format {format:?}, expected {BUNDLE_FORMAT:?}"),
        ));
    }
    match meta.get("bundle_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(BUNDLE_VERSION) => {}
        Some(v) => {
            return Err(BundleError::BundleVersion {
                dir: dir.to_path_buf(),
                found: u32::try_from(v).unwrap_or(u32::MAX),
            })
        }
        None => {
            return Err(invalid(
                dir,
                META_FILE,
                "has no integer bundle_version".to_string(),
            ))
        }
    }
    match meta.get("event_language") {
        Some(serde_json::Value::String(s)) if s == EVENT_LANGUAGE => Ok(()),
        Some(other) => Err(BundleError::EventLanguage {
            dir: dir.to_path_buf(),
            found: other
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| other.to_string()),
        }),
        None => Err(invalid(dir, META_FILE, "has no event_language".to_string())),
    }
}

fn check_params(dir: &Path, p: &EventParams) -> Result<(), BundleError> {
    let tpq = p.ticks_per_quarter;
    let problem = if tpq < 2 || !tpq.is_multiple_of(2) {
        Some(format!(
            "has ticks_per_quarter {tpq}; v1 needs an even number ≥ 2"
        ))
    } else if !(1..=26).contains(&p.velocity_bins) {
        Some(format!(
            "has velocity_bins {}; v1 needs 1 to 26",
            p.velocity_bins
        ))
    } else if p.grid() == 0 || p.max_grid() < p.grid() || !p.max_grid().is_multiple_of(p.grid()) {
        Some(format!(
            "has grid {} and max_grid {}; v1 needs max_grid a multiple of grid",
            p.grid(),
            p.max_grid()
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(invalid(dir, META_FILE, problem)),
        None => Ok(()),
    }
}

fn check_defaults(dir: &Path, d: &PlayDefaults) -> Result<(), BundleError> {
    let sampling = SamplingParams {
        temperature: d.temperature.unwrap_or(1.0),
        top_p: d.top_p.unwrap_or(1.0),
    };
    let problem = if let Err(e) = sampling.validate() {
        Some(format!("has defaults with {e}"))
    } else {
        d.max_polyphony
            .iter()
            .chain(d.polyphony.values())
            .find(|n| !(1..=128).contains(*n))
            .map(|n| format!("has a default polyphony of {n}; expected 1 to 128"))
    };
    match problem {
        Some(problem) => Err(invalid(dir, META_FILE, problem)),
        None => Ok(()),
    }
}

/// Rows of `model.embed_tokens.weight` and of `lm_head.weight` (None when tied), read from the
/// safetensors header only.
fn vocab_rows(
    dir: &Path,
    weights: &Path,
    tied: bool,
) -> Result<(usize, Option<usize>), BundleError> {
    let file = File::open(weights).map_err(|e| BundleError::Unreadable {
        dir: dir.to_path_buf(),
        file: WEIGHTS_FILE,
        reason: e.to_string(),
    })?;
    // SAFETY: the file is opened read-only; a bundle being rewritten while the engine loads it
    // is outside what the engine can guard against (the same holds for every mmap loader).
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| BundleError::Unreadable {
        dir: dir.to_path_buf(),
        file: WEIGHTS_FILE,
        reason: e.to_string(),
    })?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&mmap[..]).map_err(|e| {
        invalid(
            dir,
            WEIGHTS_FILE,
            format!("is not a safetensors file ({e})"),
        )
    })?;
    let rows = |name: &str| -> Result<Option<usize>, BundleError> {
        match metadata.info(name) {
            None => Ok(None),
            Some(info) => match info.shape.as_slice() {
                [rows, _] => Ok(Some(*rows)),
                shape => Err(invalid(
                    dir,
                    WEIGHTS_FILE,
                    format!("has {name} of shape {shape:?}"),
                )),
            },
        }
    };
    let embed = rows("model.embed_tokens.weight")?.ok_or_else(|| {
        invalid(
            dir,
            WEIGHTS_FILE,
            "has no model.embed_tokens.weight".to_string(),
        )
    })?;
    let lm_head = if tied {
        None
    } else {
        Some(rows("lm_head.weight")?.ok_or_else(|| {
            invalid(
                dir,
                WEIGHTS_FILE,
                "has no lm_head.weight and config.json says tie_word_embeddings is false"
                    .to_string(),
            )
        })?)
    };
    Ok((embed, lm_head))
}

/// config.json's pad/eos ids, when given, must be the bundle's special tokens.
fn check_config_ids(
    dir: &Path,
    config: &Olmo2Config,
    pad_id: u32,
    eos_id: u32,
) -> Result<(), BundleError> {
    let eos: BTreeSet<u32> = config.eos_token_ids();
    if !eos.is_empty() && !eos.contains(&eos_id) {
        return Err(invalid(
            dir,
            CONFIG_FILE,
            format!("has eos_token_id {eos:?}, but the tokenizer's end token is id {eos_id}"),
        ));
    }
    if let Some(pad) = config.pad_token_id {
        if pad != pad_id {
            return Err(invalid(
                dir,
                CONFIG_FILE,
                format!("has pad_token_id {pad}, but the tokenizer's pad token is id {pad_id}"),
            ));
        }
    }
    Ok(())
}
