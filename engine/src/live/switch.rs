//! Switching songs mid-set: the decoder thread's side of the control channel
//! ([`super::control`], docs/LIVE.md, "Set lists").
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

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::clock::{Follower, TempoMap, TempoSource};
use super::control::{Status, SwitchRequest};
use super::OutEvent;
use crate::session::{Engine, Session, SessionSpec, SessionStats};
use crate::tempo::Tempo;

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
