//! The decoder loop, independent of any clock.
//!
//! A backend converts its clock to ticks and calls:
//!
//! - [`Session::human`] for each incoming note event (channels 1–15), as it arrives;
//! - [`Session::advance`]`(now)`: the queued human events go into the context (one prefix cut for
//!   the batch), the model generates ahead until its text reaches `now + lookahead_ticks`, and the
//!   tentative channel-0 events due by `now + release_ticks` are released (returned) — never to
//!   be taken back. Events released after their tick are counted late;
//! - [`Session::idle`] when it has time to spare: the periodic flush is built then;
//! - [`Session::stop`]: note-offs for every channel-0 note it has released and not yet closed.
//!
//! Everything the model writes is channel 0 (the sampling mask), and no channel-0 note can hang:
//! the mask forces a note-off after `max_note_ticks`, and `stop` closes the rest (docs/ENGINE.md,
//! "The loop").
//!
//! Here: the session and its release; `human.rs`: the band's events into the context;
//! `listen.rs`: the model's steps; `config.rs`, `engine.rs`, `spec.rs`: what a session is built
//! from ([`SessionSpec`] → [`SessionConfig`], on an [`Engine`]).

mod config;
mod engine;
mod human;
pub mod lead;
mod listen;
mod spec;

use anyhow::Result;

pub use config::{SessionConfig, SessionStats};
pub use engine::{band_bins, Engine};
pub use spec::{Release, SessionSpec};

use crate::decode::Context;
use crate::decode::Sampler;
use crate::events::{EventKind, NoteEvent};

/// Most tokens one instant word may take (a whole 16-channel instant is far shorter).
const MAX_INSTANT_TOKENS: usize = 48;

/// The decoder loop (see the module doc).
pub struct Session {
    engine: Engine,
    cfg: SessionConfig,
    ctx: Context,
    sampler: Sampler,
    allowed: Vec<u32>,
    queued: Vec<NoteEvent>,
    /// On-tick of each sounding human (channel, pitch), index `channel * 128 + pitch`.
    human_on: Vec<Option<u64>>,
    /// A note-on of (channel, pitch) before this tick repeats one already written (its note-off
    /// was moved one tick later), index as `human_on`.
    human_block: Vec<u64>,
    last_human_tick: u64,
    /// On-tick of each channel-0 note released and not yet closed.
    released_on: [Option<u64>; 128],
    /// The instant (absolute tick) the model left to the band and waits at.
    waiting: Option<u64>,
    now: u64,
    /// Ticks after "now" before which the model writes nothing new ([`Session::set_write_lead`]).
    write_lead: u64,
    stats: SessionStats,
}

impl Session {
    pub fn new(engine: Engine, header: &[String], cfg: SessionConfig) -> Result<Self> {
        cfg.validate()?;
        let ctx = Context::new(
            engine.model.clone(),
            engine.tokenizer.clone(),
            engine.table.clone(),
            engine.params,
            header,
            engine.opener,
            cfg.context,
        )?;
        let sampler = Sampler::new(cfg.sampling, cfg.seed)?;
        Ok(Self {
            engine,
            cfg,
            ctx,
            sampler,
            allowed: Vec::new(),
            queued: Vec::new(),
            human_on: vec![None; 16 * 128],
            human_block: vec![0; 16 * 128],
            last_human_tick: 0,
            released_on: [None; 128],
            waiting: None,
            now: 0,
            write_lead: 0,
            stats: SessionStats::default(),
        })
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            context: self.ctx.stats().clone(),
            ..self.stats.clone()
        }
    }

    /// The tick the model's text has reached.
    pub fn model_tick(&self) -> u64 {
        self.ctx.model_tick()
    }

    /// Whether there is nothing to generate: the model is ahead of `now + lookahead`, or waits
    /// for the band at an instant it left to it.
    pub fn is_ahead(&self, now: u64) -> bool {
        self.waiting.is_some_and(|w| now <= w + self.cfg.wait_ticks)
            || self.ctx.model_tick() >= now.saturating_add(self.cfg.lookahead_ticks)
    }

    /// Write nothing new closer than `ticks` after "now" (a live backend sets it to how long
    /// its iterations take beyond the release horizon: what the model writes must still be due
    /// when the next iteration sends it). Capped at half the lookahead.
    pub fn set_write_lead(&mut self, ticks: u64) {
        self.write_lead = ticks.min(self.cfg.lookahead_ticks / 2);
    }

    /// The instant (absolute tick) the model left to the band, while it waits there.
    pub fn waiting_at(&self) -> Option<u64> {
        self.waiting
    }

    /// Queue a human note event (its tick in the session's ticks). It goes into the context at
    /// the next [`advance`](Self::advance).
    pub fn human(&mut self, ev: NoteEvent) {
        self.queued.push(ev);
    }

    /// Release what is already due, then put the queued human events in the context, without
    /// generating: a live backend sends these before the (slow) generation of
    /// [`advance`](Self::advance), so they are not held back behind the model's tokens. What
    /// is due is released first: a human event that arrives now (its tick a little in the
    /// past) then cannot cut a model event the model no longer has time to write again (a
    /// forced note-off would come out late).
    pub fn release_due(&mut self, now: u64) -> Result<Vec<NoteEvent>> {
        self.now = self.now.max(now);
        // The write lead too: the model could not write those events again in time either.
        let out = self.release(self.now, self.cfg.release_ticks.max(self.write_lead));
        if self.apply_human()? {
            self.waiting = None;
        }
        Ok(out)
    }

    /// Put the queued human events in the context, generate ahead, release what is due.
    pub fn advance(&mut self, now: u64) -> Result<Vec<NoteEvent>> {
        self.now = self.now.max(now);
        let now = self.now;
        if self.apply_human()? {
            // The band's events went in; the time words the model waited after are gone.
            self.waiting = None;
        }
        if self.waiting.is_some_and(|w| now > w + self.cfg.wait_ticks) {
            // The band did not play where the model expected it: decide again from here.
            self.ctx.drop_trailing_time()?;
            self.waiting = None;
            self.stats.waits_expired += 1;
        }
        self.ctx.set_floor(now);
        let target = now.saturating_add(self.cfg.lookahead_ticks);
        let mut steps = 0;
        while self.waiting.is_none()
            && ((self.ctx.model_tick() < target && steps < self.cfg.max_steps_per_advance)
                || self.in_unfinished_instant(steps))
        {
            self.step()?;
            steps += 1;
        }
        Ok(self.release(now, self.cfg.release_ticks))
    }

    /// Whether the text ends inside an instant word: an advance finishes the instant it began
    /// (a few tokens), so a live backend's next advance never finds half an instant whose
    /// tick has gone past meanwhile. Bounded by the most tokens an instant may take.
    fn in_unfinished_instant(&self, steps: usize) -> bool {
        steps < self.cfg.max_steps_per_advance + MAX_INSTANT_TOKENS
            && self.ctx.grammar().in_instant()
    }

    /// Work on the periodic flush for up to `max_tokens` prefill tokens (call when ahead).
    /// Returns whether there was work.
    pub fn idle(&mut self, max_tokens: usize) -> Result<bool> {
        self.ctx.flush_work(max_tokens)
    }

    /// Note-offs (at `now`, or one tick after their note-on if later) for every channel-0 note
    /// released and not closed; tentative events are dropped.
    pub fn stop(&mut self, now: u64) -> Vec<NoteEvent> {
        let now = self.now.max(now);
        let mut out = Vec::new();
        for (p, on) in self.released_on.iter_mut().enumerate() {
            if let Some(on) = on.take() {
                out.push(NoteEvent::off(now.max(on + 1), 0, p as u8));
            }
        }
        out.sort();
        self.stats.events_out += out.len() as u64;
        out
    }

    /// Release the events before `now + ahead` (those before `now` are late).
    fn release(&mut self, now: u64, ahead: u64) -> Vec<NoteEvent> {
        let out = self.ctx.release_until(now.saturating_add(ahead));
        for e in &out {
            if e.tick < now {
                self.stats.late += 1;
            }
            self.released_on[usize::from(e.pitch & 127)] = match e.kind {
                EventKind::On { .. } => Some(e.tick),
                EventKind::Off => None,
            };
        }
        self.stats.events_out += out.len() as u64;
        out
    }
}
