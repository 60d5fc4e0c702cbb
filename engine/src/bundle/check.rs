//! The checks [`super::Bundle::load`] makes on a bundle's files before any weight is read.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use super::{
    invalid, BundleError, EventParams, PlayDefaults, BUNDLE_FORMAT, BUNDLE_VERSION, CONFIG_FILE,
    EVENT_LANGUAGE, META_FILE, WEIGHTS_FILE,
};
use crate::decode::SamplingParams;
use crate::model::Olmo2Config;

pub(super) fn check_versions(dir: &Path, meta: &serde_json::Value) -> Result<(), BundleError> {
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

pub(super) fn check_params(dir: &Path, p: &EventParams) -> Result<(), BundleError> {
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

pub(super) fn check_defaults(dir: &Path, d: &PlayDefaults) -> Result<(), BundleError> {
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
pub(super) fn vocab_rows(
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
pub(super) fn check_config_ids(
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
