//! One [`SessionSpec`]: everything that shapes a session, as the `jack`/`alsa` flags, a
//! set-list switch request and `render` spell it (docs/LIVE.md, "Switching").

use std::path::PathBuf;

use anyhow::{ensure, Context as _, Result};

use super::{Engine, Session, SessionConfig};
use crate::bundle::{Bundle, PlayDefaults};
use crate::context::ContextConfig;
use crate::events::LanguageParams;
use crate::live::control::SwitchRequest;
use crate::model::{ModelOptions, Olmo2, WeightFormat};
use crate::sampler::Policy;
use crate::tempo::{MAX_BPM, MIN_BPM};

/// Everything that shapes one session: the `jack`/`alsa` flags a switch can change.
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
    pub release_horizon_ms: f64,
    pub max_note_ticks: Option<u64>,
    pub max_polyphony: Option<u32>,
    /// `None`: the bundle's recommendation, else f32.
    pub weights: Option<WeightFormat>,
    /// Where the model runs (`--device`; a switch keeps it).
    pub device: String,
    pub steps_per_advance: usize,
}

impl SessionSpec {
    /// The values a switch can get wrong before anything is built (one line each).
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.bpm.is_finite() && (MIN_BPM..=MAX_BPM).contains(&self.bpm),
            "bpm {}: the tempo must be between {MIN_BPM} and {MAX_BPM}",
            self.bpm
        );
        ensure!(
            self.release_horizon_ms.is_finite()
                && (0.0..=1000.0).contains(&self.release_horizon_ms),
            "release_horizon_ms {}: expected 0 to 1000",
            self.release_horizon_ms
        );
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
        s.release_horizon_ms = r.release_horizon_ms.unwrap_or(s.release_horizon_ms);
        s.max_note_ticks = r.max_note_ticks.or(s.max_note_ticks);
        if let Some(n) = r.max_polyphony {
            s.max_polyphony = n;
        }
        if let Some(w) = r.weights {
            s.weights = w;
        }
        s
    }

    /// The session settings for a bundle's language, its recommendations and the header (as
    /// `midicopilot-engine jack` sets them).
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
        // The live backends release by their own horizon in frames (see live::decoder_thread).
        cfg.release_ticks = 0;
        cfg.policy = Policy {
            max_note_ticks: self.max_note_ticks.unwrap_or(cfg.policy.max_note_ticks),
            max_polyphony: defaults.polyphony(self.max_polyphony, header, cfg.policy.max_polyphony),
        };
        cfg.max_steps_per_advance = self.steps_per_advance.max(1);
        cfg
    }

    /// Load the bundle and its model (CPU).
    pub fn load_engine(&self) -> Result<Engine> {
        let bundle = Bundle::load(&self.bundle)?;
        let options = ModelOptions {
            weights: self
                .weights
                .or(bundle.meta.defaults.weights)
                .unwrap_or_default(),
            ..ModelOptions::default()
        };
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

    /// The release horizon in frames at `rate`.
    pub fn horizon_frames(&self, rate: u32) -> u64 {
        (self.release_horizon_ms / 1e3 * f64::from(rate))
            .round()
            .max(0.0) as u64
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
            release_horizon_ms: 40.0,
            max_note_ticks: None,
            max_polyphony: Some(8),
            weights: None,
            device: "cpu".into(),
            steps_per_advance: 2,
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
                release_horizon_ms: 25.0,
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
                    release_horizon_ms: 2000.0,
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
}
