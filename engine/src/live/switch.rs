//! Switching songs mid-set: the decoder thread's side of the control channel
//! ([`super::control`], docs/LIVE.md "Switching").
//!
//! A switch request is applied to the running [`SessionSpec`] (fields left out keep their
//! value), validated, and the new [`Session`] is built on a worker thread — with the running
//! model when the bundle is the same folder, else after loading the new bundle there — while
//! the old session keeps playing. When the new session is ready, [`Switcher::poll`] (called by
//! the decoder thread between iterations) swaps it in:
//!
//! 1. the old session's `stop`: a note-off for every channel-0 note it released and has not
//!    closed, due one release horizon from now, at or after everything already queued, pushed to
//!    the real-time side at once — so nothing it started can hang, whatever is held when the
//!    switch comes;
//! 2. the new session's tick 0 is the next beat of the old tempo map at or after those
//!    note-offs (the beat phase carries over), with the new BPM (for the `transport` and
//!    `midi_clock` tempo sources, the followed tempo carries over and the new follower locks
//!    again);
//! 3. the new release horizon applies; ports, connections and the input side are untouched.
//!
//! A request that fails (bad value, missing bundle, unknown style word, a model that does not
//! load) is one `error` status line; the old session plays on. A request superseded by a later
//! one before it was ready is dropped (`skipped`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{ensure, Context as _, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::clock::{Follower, TempoMap, TempoSource};
use super::control::{Status, SwitchRequest};
use super::OutEvent;
use crate::bundle::{Bundle, PlayDefaults};
use crate::decode::ContextConfig;
use crate::decode::Policy;
use crate::events::LanguageParams;
use crate::model::{ModelOptions, Olmo2, WeightFormat};
use crate::session::{Engine, Session, SessionConfig, SessionStats};
use crate::tempo::{Tempo, MAX_BPM, MIN_BPM};

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

/// What identifies "the same bundle": its canonical folder.
pub fn bundle_key(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path)
        .with_context(|| format!("model bundle {}: cannot open", path.display()))
}

/// One switch that happened (the report's `decoder.control.switches`).
#[derive(Debug, Clone, Serialize)]
pub struct SwitchRecord {
    pub name: String,
    pub bundle: String,
    pub header: Vec<String>,
    pub bpm: f64,
    /// Whether a bundle was loaded for it (else the running model was reused).
    pub bundle_loaded: bool,
    /// The frame at which the request was read, and the new session's tick 0.
    pub requested_frame: u64,
    pub frame: u64,
    /// Note-offs the old session sent (its notes sounding or queued at the switch).
    pub stop_offs: usize,
    /// Request to swap, in milliseconds (includes the bundle load).
    pub wait_ms: f64,
    /// What the old session did.
    pub retired: SessionStats,
}

/// The control channel's part of the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ControlStats {
    pub requests: u64,
    pub switches: Vec<SwitchRecord>,
    pub errors: Vec<String>,
    /// Requests superseded by a later one before they were ready.
    pub skipped: u64,
}

struct Built {
    session: Session,
    engine: Engine,
    spec: SessionSpec,
    key: PathBuf,
    header: Vec<String>,
    loaded: bool,
}

struct Pending {
    generation: u64,
    name: String,
    requested: Instant,
    requested_frame: u64,
    rx: mpsc::Receiver<Result<Built, String>>,
}

/// The decoder thread's side of the control channel (see the module docs).
pub struct Switcher {
    requests: mpsc::Receiver<SwitchRequest>,
    status: Status,
    spec: SessionSpec,
    key: PathBuf,
    engine: Engine,
    tempo_source: TempoSource,
    ready: Option<Value>,
    generation: u64,
    pending: Option<Pending>,
    stats: ControlStats,
}

/// What [`Switcher::poll`] may change in the decoder loop.
pub struct LoopState<'a> {
    pub session: &'a mut Session,
    pub tempo: &'a mut Follower,
    pub horizon_frames: &'a mut u64,
    /// Released events waiting for the output ring (the stop note-offs join them).
    pub pending_out: &'a mut VecDeque<OutEvent>,
    /// The ring to the real-time side (the stop note-offs go in at once).
    pub output: &'a mut rtrb::Producer<OutEvent>,
    /// Frame of the last event queued for output (the queue stays sorted).
    pub last_frame: &'a mut u64,
    /// The decoder thread's "now".
    pub now: u64,
}

impl Switcher {
    /// `engine` is the running session's; `ready` is sent as the first status line (with
    /// `"event":"ready"` added) when the decoder thread first polls.
    pub fn new(
        requests: mpsc::Receiver<SwitchRequest>,
        status: Status,
        spec: SessionSpec,
        engine: Engine,
        tempo_source: TempoSource,
        ready: Value,
    ) -> Result<Self> {
        let key = bundle_key(&spec.bundle)?;
        Ok(Self {
            requests,
            status,
            spec,
            key,
            engine,
            tempo_source,
            ready: Some(ready),
            generation: 0,
            pending: None,
            stats: ControlStats::default(),
        })
    }

    pub fn spec(&self) -> &SessionSpec {
        &self.spec
    }

    pub fn stats(&self) -> ControlStats {
        self.stats.clone()
    }

    /// Read requests, start builds, swap a ready session in. Returns whether it did anything.
    pub fn poll(&mut self, st: LoopState<'_>) -> bool {
        let mut worked = false;
        if let Some(mut ready) = self.ready.take() {
            ready["event"] = json!("ready");
            self.status.send(ready);
        }
        while let Ok(req) = self.requests.try_recv() {
            worked = true;
            self.stats.requests += 1;
            self.request(req, st.now);
        }
        let Some(p) = &self.pending else {
            return worked;
        };
        let outcome = match p.rx.try_recv() {
            Ok(outcome) => outcome,
            Err(mpsc::TryRecvError::Empty) => return worked,
            Err(mpsc::TryRecvError::Disconnected) => Err("the loading thread failed".into()),
        };
        let Some(p) = self.pending.take() else {
            return worked;
        };
        match outcome {
            Ok(built) => self.swap(built, &p, st),
            Err(message) => self.fail(&p.name, message),
        }
        true
    }

    fn fail(&mut self, name: &str, message: String) {
        let message = message.replace('\n', " ");
        self.status.error(Some(name), &message);
        self.stats.errors.push(format!("{name}: {message}"));
    }

    /// Validate a request and start building its session on a worker thread.
    fn request(&mut self, req: SwitchRequest, now: u64) {
        let spec = self.spec.apply(&req);
        let checked = spec.validate().and_then(|()| bundle_key(&spec.bundle));
        let key = match checked {
            Ok(k) => k,
            Err(e) => return self.fail(&req.name, format!("{e:#}")),
        };
        if let Some(old) = self.pending.take() {
            self.stats.skipped += 1;
            self.status
                .send(json!({"event": "skipped", "name": old.name,
                                    "reason": format!("superseded by {}", req.name)}));
        }
        let reuse = (key == self.key).then(|| self.engine.clone());
        if reuse.is_none() {
            self.status
                .send(json!({"event": "loading", "name": req.name,
                                    "bundle": spec.bundle.display().to_string()}));
        }
        self.generation += 1;
        let (tx, rx) = mpsc::channel();
        let name = req.name.clone();
        let spawned = std::thread::Builder::new()
            .name("midicopilot-switch".into())
            .spawn(move || {
                let outcome = (|| -> Result<Built> {
                    let loaded = reuse.is_none();
                    let engine = match reuse {
                        Some(e) => e,
                        None => spec.load_engine()?,
                    };
                    let (session, header) = spec.build(engine.clone())?;
                    Ok(Built {
                        session,
                        engine,
                        spec,
                        key,
                        header,
                        loaded,
                    })
                })();
                let _ = tx.send(outcome.map_err(|e| format!("{e:#}")));
            });
        if let Err(e) = spawned {
            return self.fail(&name, format!("cannot start the loading thread: {e}"));
        }
        self.pending = Some(Pending {
            generation: self.generation,
            name,
            requested: Instant::now(),
            requested_frame: now,
            rx,
        });
    }

    /// Retire the running session (note-offs first) and put the built one in its place.
    fn swap(&mut self, built: Built, p: &Pending, st: LoopState<'_>) {
        debug_assert_eq!(p.generation, self.generation);
        let Built {
            session,
            engine,
            spec,
            key,
            header,
            loaded,
        } = built;
        let tempo = &*st.tempo;
        // 1. note-offs for everything the old session released and did not close, due one
        //    release horizon from now (so they reach the real-time side in time) and queued
        //    for it at once
        let stop_tick = tempo.ticks_at(st.now + *st.horizon_frames).ceil() as u64;
        let offs = st.session.stop(stop_tick);
        for ev in &offs {
            let due = tempo.frame_at(ev.tick as f64).max(*st.last_frame);
            *st.last_frame = due;
            st.pending_out.push_back(OutEvent::note_off(due, ev.pitch));
        }
        while let Some(ev) = st.pending_out.front().copied() {
            if st.output.push(ev).is_err() {
                break; // the ring is full: the decoder loop pushes the rest, in order
            }
            st.pending_out.pop_front();
        }
        // 2. the new tick 0: the old map's next beat at or after the note-offs
        let start = st.now.max(*st.last_frame);
        let tpq = f64::from(tempo.map().tpq());
        let beat = (tempo.ticks_at(start) / tpq).ceil() * tpq;
        let origin = tempo.frame_at(beat).max(start);
        let rate = tempo.map().rate();
        let bpm = match self.tempo_source {
            TempoSource::Preset => spec.bpm,
            _ => tempo.bpm(),
        };
        let tpq_new = session.context().params().ticks_per_quarter;
        let map = match TempoMap::new(bpm, tpq_new, rate, origin) {
            Ok(m) => m,
            Err(e) => return self.fail(&p.name, format!("tempo: {e}")),
        };
        let retired = std::mem::replace(st.session, session).stats();
        *st.tempo = Follower::new(self.tempo_source, map);
        *st.horizon_frames = spec.horizon_frames(rate);
        let wait_ms = p.requested.elapsed().as_secs_f64() * 1e3;
        let record = SwitchRecord {
            name: p.name.clone(),
            bundle: spec.bundle.display().to_string(),
            header: header.clone(),
            bpm,
            bundle_loaded: loaded,
            requested_frame: p.requested_frame,
            frame: origin,
            stop_offs: offs.len(),
            wait_ms,
            retired,
        };
        self.status.send(json!({
            "event": "switched",
            "name": p.name,
            "bundle": record.bundle,
            "header": header,
            "bpm": bpm,
            "bundle_loaded": loaded,
            "frame": origin,
            "stop_offs": offs.len(),
            "wait_ms": (wait_ms * 10.0).round() / 10.0,
        }));
        self.stats.switches.push(record);
        self.spec = spec;
        self.key = key;
        self.engine = engine;
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

    #[test]
    fn a_missing_bundle_is_one_line() {
        let e = format!(
            "{:#}",
            bundle_key(Path::new("/no/such/bundle")).unwrap_err()
        );
        assert!(
            e.starts_with("model bundle /no/such/bundle: cannot open"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }
}
