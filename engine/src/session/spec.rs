//! One [`SessionSpec`]: everything that shapes a session. `render`, `jack` and `alsa` build it
//! from their flags, a set-list switch request is applied to it ([`SessionSpec::apply`]), and
//! every session is built from it the same way ([`SessionSpec::session_config`],
//! [`SessionSpec::build`]). Switching is explained in docs/LIVE.md, "Set lists".

use std::path::PathBuf;

use anyhow::{ensure, Context as _, Result};

use super::{Engine, Session, SessionConfig};
use crate::bundle::{Bundle, PlayDefaults};
use crate::decode::ContextConfig;
use crate::decode::Policy;
use crate::events::LanguageParams;
use crate::live::control::SwitchRequest;
use crate::model::{CpuKernels, ModelOptions, Olmo2, WeightFormat};
use crate::tempo::{MAX_BPM, MIN_BPM};

/// How events leave the session before they are due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Release {
    /// A live backend: the session releases at "now" and the backend hands events to its
    /// output side this many milliseconds before they are due (its clock is frames, not ticks).
    HorizonMs(f64),
    /// A file render: the session releases this many ticks before they are due (`None`: a
    /// sixth of a beat, at most the lookahead).
    Ticks(Option<u64>),
}

/// Everything that shapes one session (the fields a switch request names, and how it runs).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    pub bundle: PathBuf,
    pub genre: Option<String>,
    pub part: Option<String>,
    pub bpm: f64,
    /// `None`: the bundle's recommendation, else the engine's default (also for the two below).
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: u64,
    pub context: usize,
    pub lookahead_ticks: Option<u64>,
    pub release: Release,
    pub max_note_ticks: Option<u64>,
    pub max_polyphony: Option<u32>,
    /// `None`: the bundle's recommendation, else f32.
    pub weights: Option<WeightFormat>,
    /// Where the model runs (`--device`; a switch keeps it).
    pub device: String,
    /// Whose kernels multiply on the CPU (`--cpu-kernels`; a switch keeps it).
    pub kernels: CpuKernels,
    /// Most tokens per `advance` (`None`: as many as the lookahead takes).
    pub steps_per_advance: Option<usize>,
    /// Listen to the band at the instants it may share (docs/ENGINE.md, "Listening").
    pub listen: bool,
    /// The band's velocities as the model heard them in training (see `SessionConfig`).
    pub band_velocity_as_trained: bool,
}

impl SessionSpec {
    /// The values a switch can get wrong before anything is built (one line each).
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.bpm.is_finite() && (MIN_BPM..=MAX_BPM).contains(&self.bpm),
            "bpm {}: the tempo must be between {MIN_BPM} and {MAX_BPM}",
            self.bpm
        );
        if let Release::HorizonMs(ms) = self.release {
            ensure!(
                ms.is_finite() && (0.0..=1000.0).contains(&ms),
                "release_horizon_ms {ms}: expected 0 to 1000"
            );
        }
        ensure!(
            self.context >= 32,
            "context {}: at least 32 tokens",
            self.context
        );
        ensure!(
            self.lookahead_ticks.is_none_or(|t| t >= 1),
            "lookahead_ticks 0: at least one tick"
        );
        ensure!(
            self.max_note_ticks.is_none_or(|t| t >= 1),
            "max_note_ticks 0: at least one tick"
        );
        if let Some(n) = self.max_polyphony {
            ensure!(
                (1..=128).contains(&n),
                "max_polyphony {n}: expected 1 to 128"
            );
        }
        PlayDefaults::default()
            .sampling(self.temperature, self.top_p)
            .validate()
    }

    /// The running spec with a request's fields applied (`null` style words and seed: defaults).
    pub fn apply(&self, r: &SwitchRequest) -> Self {
        let mut s = self.clone();
        if let Some(b) = &r.bundle {
            s.bundle = b.clone();
        }
        if let Some(g) = &r.genre {
            s.genre = g.clone();
        }
        if let Some(p) = &r.part {
            s.part = p.clone();
        }
        if let Some(seed) = r.seed {
            s.seed = seed.unwrap_or(0);
        }
        s.bpm = r.bpm.unwrap_or(s.bpm);
        if let Some(t) = r.temperature {
            s.temperature = t;
        }
        if let Some(p) = r.top_p {
            s.top_p = p;
        }
        s.context = r.context.unwrap_or(s.context);
        s.lookahead_ticks = r.lookahead_ticks.or(s.lookahead_ticks);
        if let Some(ms) = r.release_horizon_ms {
            s.release = Release::HorizonMs(ms);
        }
        s.max_note_ticks = r.max_note_ticks.or(s.max_note_ticks);
        if let Some(n) = r.max_polyphony {
            s.max_polyphony = n;
        }
        if let Some(w) = r.weights {
            s.weights = w;
        }
        s
    }

    /// The session settings for a bundle's language, its recommendations and the header.
    pub fn session_config(
        &self,
        params: &LanguageParams,
        defaults: &PlayDefaults,
        header: &[String],
    ) -> SessionConfig {
        let mut cfg = SessionConfig::defaults(params);
        cfg.seed = self.seed;
        cfg.sampling = defaults.sampling(self.temperature, self.top_p);
        cfg.context = ContextConfig::for_limit(self.context);
        cfg.lookahead_ticks = self.lookahead_ticks.unwrap_or(cfg.lookahead_ticks);
        cfg.release_ticks = match self.release {
            // The live backends release by their own horizon in frames (live::decoder_thread).
            Release::HorizonMs(_) => 0,
            Release::Ticks(ticks) => ticks.unwrap_or(cfg.release_ticks.min(cfg.lookahead_ticks)),
        };
        cfg.policy = Policy {
            max_note_ticks: self.max_note_ticks.unwrap_or(cfg.policy.max_note_ticks),
            max_polyphony: defaults.polyphony(self.max_polyphony, header, cfg.policy.max_polyphony),
        };
        cfg.listen = self.listen;
        cfg.band_velocity_as_trained = self.band_velocity_as_trained;
        if let Some(steps) = self.steps_per_advance {
            cfg.max_steps_per_advance = steps.max(1);
        }
        cfg
    }

    /// How to load the bundle's model: the spec's weights, else the bundle's recommendation.
    pub fn model_options(&self, bundle: &Bundle) -> ModelOptions {
        ModelOptions {
            weights: self
                .weights
                .or(bundle.meta.defaults.weights)
                .unwrap_or_default(),
            kernels: self.kernels,
            ..ModelOptions::default()
        }
    }

    /// Load the bundle and its model (on the spec's device).
    pub fn load_engine(&self) -> Result<Engine> {
        let bundle = Bundle::load(&self.bundle)?;
        let options = self.model_options(&bundle);
        let model = Olmo2::load_with(&bundle, &crate::cmd::device(&self.device)?, options)
            .with_context(|| format!("loading the model of {}", self.bundle.display()))?;
        Engine::new(&bundle, std::sync::Arc::new(model))
    }

    /// A new session on `engine` (the header prefilled); also returns the header words.
    pub fn build(&self, engine: Engine) -> Result<(Session, Vec<String>)> {
        let header = engine.header(self.genre.as_deref(), self.part.as_deref())?;
        let cfg = self.session_config(&engine.params, &engine.defaults, &header);
        Ok((Session::new(engine, &header, cfg)?, header))
    }

    /// The live release horizon in frames at `rate` (0 for a file render, which releases by
    /// ticks).
    pub fn horizon_frames(&self, rate: u32) -> u64 {
        match self.release {
            Release::HorizonMs(ms) => (ms / 1e3 * f64::from(rate)).round().max(0.0) as u64,
            Release::Ticks(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SessionSpec {
        SessionSpec {
            bundle: "/b".into(),
            genre: Some("CHORALE".into()),
            part: None,
            bpm: 120.0,
            temperature: Some(1.0),
            top_p: Some(0.95),
            seed: 3,
            context: 512,
            lookahead_ticks: None,
            release: Release::HorizonMs(40.0),
            max_note_ticks: None,
            max_polyphony: Some(8),
            weights: None,
            device: "cpu".into(),
            kernels: CpuKernels::default(),
            steps_per_advance: Some(2),
            listen: true,
            band_velocity_as_trained: true,
        }
    }

    #[test]
    fn a_request_changes_only_what_it_names() {
        let req = SwitchRequest {
            name: "x".into(),
            bpm: Some(90.0),
            ..Default::default()
        };
        let s = spec().apply(&req);
        assert_eq!(
            s,
            SessionSpec {
                bpm: 90.0,
                ..spec()
            }
        );
        let req = SwitchRequest {
            name: "x".into(),
            bundle: Some("/c".into()),
            genre: Some(None),
            part: Some(Some("BASS".into())),
            seed: Some(None),
            temperature: Some(Some(0.5)),
            top_p: Some(None),
            context: Some(256),
            lookahead_ticks: Some(12),
            release_horizon_ms: Some(25.0),
            max_note_ticks: Some(48),
            max_polyphony: Some(Some(2)),
            bpm: None,
            weights: None,
        };
        let s = spec().apply(&req);
        assert_eq!(
            s,
            SessionSpec {
                bundle: "/c".into(),
                genre: None,
                part: Some("BASS".into()),
                seed: 0,
                temperature: Some(0.5),
                top_p: None,
                context: 256,
                lookahead_ticks: Some(12),
                release: Release::HorizonMs(25.0),
                max_note_ticks: Some(48),
                max_polyphony: Some(2),
                ..spec()
            }
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        let cases: [(SessionSpec, &str); 7] = [
            (SessionSpec { bpm: 0.5, ..spec() }, "bpm 0.5"),
            (
                SessionSpec {
                    bpm: f64::NAN,
                    ..spec()
                },
                "bpm NaN",
            ),
            (
                SessionSpec {
                    release: Release::HorizonMs(2000.0),
                    ..spec()
                },
                "release_horizon_ms 2000",
            ),
            (
                SessionSpec {
                    context: 8,
                    ..spec()
                },
                "context 8",
            ),
            (
                SessionSpec {
                    max_polyphony: Some(0),
                    ..spec()
                },
                "max_polyphony 0",
            ),
            (
                SessionSpec {
                    top_p: Some(1.5),
                    ..spec()
                },
                "top-p",
            ),
            (
                SessionSpec {
                    lookahead_ticks: Some(0),
                    ..spec()
                },
                "lookahead_ticks 0",
            ),
        ];
        for (s, want) in cases {
            let e = format!("{:#}", s.validate().expect_err(want));
            assert!(e.contains(want), "{e}");
        }
        spec().validate().unwrap();
    }

    #[test]
    fn the_session_config_is_the_jack_commands() {
        let params = LanguageParams {
            ticks_per_quarter: 24,
            velocity_bins: 8,
        };
        let none = PlayDefaults::default();
        let c = spec().session_config(&params, &none, &[]);
        let d = SessionConfig::defaults(&params);
        assert_eq!(c.lookahead_ticks, d.lookahead_ticks);
        assert_eq!(c.release_ticks, 0);
        assert_eq!(c.policy.max_note_ticks, d.policy.max_note_ticks);
        assert_eq!(c.policy.max_polyphony, 8);
        assert_eq!(c.seed, 3);
        assert_eq!(c.context, ContextConfig::for_limit(512));
        assert_eq!(c.max_steps_per_advance, 2);
        let s = SessionSpec {
            lookahead_ticks: Some(12),
            max_note_ticks: Some(40),
            ..spec()
        };
        let c = s.session_config(&params, &none, &[]);
        assert_eq!((c.lookahead_ticks, c.policy.max_note_ticks), (12, 40));
        // Unset sampling and polyphony come from the bundle, per part where it says so.
        let bundle = PlayDefaults {
            temperature: Some(0.7),
            max_polyphony: Some(3),
            polyphony: [("SOPRANO".to_string(), 1)].into(),
            ..PlayDefaults::default()
        };
        let unset = SessionSpec {
            temperature: None,
            top_p: None,
            max_polyphony: None,
            ..spec()
        };
        let soprano = ["[GENRE_CHORALE]".to_string(), "[PART_SOPRANO]".to_string()];
        let c = unset.session_config(&params, &bundle, &soprano);
        assert_eq!((c.sampling.temperature, c.sampling.top_p), (0.7, 0.95));
        assert_eq!(c.policy.max_polyphony, 1);
        let c = unset.session_config(&params, &bundle, &["[PART_BASS]".to_string()]);
        assert_eq!(c.policy.max_polyphony, 3);
        let c = spec().session_config(&params, &bundle, &soprano);
        assert_eq!((c.sampling.temperature, c.policy.max_polyphony), (1.0, 8));
        assert_eq!(spec().horizon_frames(48_000), 1920);
    }

    #[test]
    fn a_render_releases_by_ticks_and_may_not_listen() {
        let params = LanguageParams {
            ticks_per_quarter: 24,
            velocity_bins: 8,
        };
        let none = PlayDefaults::default();
        let d = SessionConfig::defaults(&params);
        let render = SessionSpec {
            release: Release::Ticks(None),
            steps_per_advance: None,
            listen: false,
            ..spec()
        };
        let c = render.session_config(&params, &none, &[]);
        assert_eq!(c.release_ticks, d.release_ticks.min(d.lookahead_ticks));
        assert_eq!(c.max_steps_per_advance, d.max_steps_per_advance);
        assert!(!c.listen);
        assert_eq!(render.horizon_frames(48_000), 0);
        let short = SessionSpec {
            release: Release::Ticks(Some(3)),
            lookahead_ticks: Some(2),
            ..render
        };
        let c = short.session_config(&params, &none, &[]);
        assert_eq!((c.release_ticks, c.lookahead_ticks), (3, 2));
        let tiny = SessionSpec {
            release: Release::Ticks(None),
            lookahead_ticks: Some(2),
            ..spec()
        };
        assert_eq!(tiny.session_config(&params, &none, &[]).release_ticks, 2);
    }
}
