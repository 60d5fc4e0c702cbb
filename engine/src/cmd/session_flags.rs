//! The flags of a session that `render`, `jack` and `alsa` share: the bundle, the header, the
//! sampling, the context and the model's weights. Each command adds its own clock and release
//! flags and builds its [`SessionSpec`] through [`SessionFlags::spec`].

use std::path::PathBuf;

use clap::Args;

use super::model_flags::ModelFlags;
use crate::session::{Release, SessionSpec};

#[derive(Args, Debug, Clone)]
pub struct SessionFlags {
    /// The model bundle folder.
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampling temperature (0: always the most likely allowed token) [default: the bundle's,
    /// else 1].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling: keep the most likely tokens up to this probability (0 < P ≤ 1)
    /// [default: the bundle's, else 0.95].
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Genre word of the context header, [GENRE_<NAME>] (default: the bundle's recommended one,
    /// else its first).
    #[arg(long, value_name = "NAME")]
    pub genre: Option<String>,
    /// Part word of the context header, [PART_<NAME>] (default: the bundle's recommended one,
    /// else its first).
    #[arg(long, value_name = "NAME")]
    pub part: Option<String>,
    /// Context limit in tokens (the KV cache's size; flushes keep half).
    #[arg(long, default_value_t = 512)]
    pub context: usize,
    /// Generate this far ahead of now (default: one beat).
    #[arg(long, value_name = "TICKS")]
    pub lookahead_ticks: Option<u64>,
    /// Longest channel-0 note in ticks (default: two 4/4 bars).
    #[arg(long, value_name = "TICKS")]
    pub max_note_ticks: Option<u64>,
    /// Most channel-0 notes sounding at once [default: the bundle's for the part, else 8].
    #[arg(long)]
    pub max_polyphony: Option<u32>,
    /// Write the band's velocities into the context as played, not as the nearest the model
    /// heard the band play in training (the bundle's `band_velocities`; for comparisons).
    #[arg(long)]
    pub band_velocity_as_played: bool,
    #[command(flatten)]
    pub model: ModelFlags,
}

impl SessionFlags {
    /// The session these flags describe, with the command's own tempo, release and pacing.
    pub fn spec(
        &self,
        bpm: f64,
        release: Release,
        steps_per_advance: Option<usize>,
        listen: bool,
    ) -> SessionSpec {
        SessionSpec {
            bundle: self.bundle.clone(),
            genre: self.genre.clone(),
            part: self.part.clone(),
            bpm,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            context: self.context,
            lookahead_ticks: self.lookahead_ticks,
            release,
            max_note_ticks: self.max_note_ticks,
            max_polyphony: self.max_polyphony,
            weights: self.model.weights,
            device: self.model.device.clone(),
            kernels: self.model.cpu_kernels,
            steps_per_advance,
            listen,
            band_velocity_as_trained: !self.band_velocity_as_played,
        }
    }
}
