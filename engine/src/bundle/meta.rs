//! `midicopilot.json`: the bundle's metadata and its play defaults.

use serde::Deserialize;

use crate::decode::SamplingParams;

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
    /// The velocity letters the band's note-ons had in the training corpus (`"f"` for music21's
    /// exports, which carry no dynamics); absent: every bin. The engine writes the band's
    /// velocities into the context as the nearest of these (docs/ENGINE.md, "Velocities").
    #[serde(default)]
    pub band_velocities: Option<String>,
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
