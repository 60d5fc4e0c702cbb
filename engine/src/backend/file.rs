//! The `file` backend: play a MIDI file's channels 1–15 as the human through a [`Session`] and
//! collect what the model answers on channel 0.
//!
//! - **Virtual clock**: time moves one tick at a time; at each tick the human events of that tick
//!   are fed, then `advance(tick)`, then (when the model is ahead) a fixed amount of flush work.
//!   Nothing depends on how fast the machine is, so one seed gives one output, byte for byte.
//! - **Wall clock**: real time at the given tempo. Human events are fed when their time comes;
//!   the model generates as fast as it can; an event released after its due time is late, and
//!   the report says how many and by how much. The output file still holds each event at the
//!   tick the model meant (the lateness is in the report, not in the file).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde::Serialize;

use crate::events::{events_to_midi_until, LanguageParams, NoteEvent};
use crate::session::lead::WriteLead;
use crate::session::{Session, SessionStats};
use crate::tempo::{FixedTempo, Tempo};

/// The render's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    Virtual,
    Wall,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenderOptions {
    pub clock: Clock,
    pub bpm: f64,
    /// Keep playing this long after the last human event (ticks).
    pub tail_ticks: u64,
    /// Flush prefill tokens per idle call.
    pub idle_chunk: usize,
}

/// What a render produced.
#[derive(Debug, Clone)]
pub struct RenderOutput {
    /// The human part as played (channels 1–15).
    pub human: Vec<NoteEvent>,
    /// The model's channel-0 events, in release order (stop's note-offs last).
    pub model: Vec<NoteEvent>,
    /// The last tick played.
    pub end_tick: u64,
    pub report: RenderReport,
}

/// Figures for `--report` (JSON).
#[derive(Debug, Clone, Serialize)]
pub struct RenderReport {
    pub clock: Clock,
    pub bpm: f64,
    pub seed: u64,
    pub ticks_per_quarter: u32,
    pub end_tick: u64,
    /// Human note events read from the input (channels 1–15).
    pub events_in: u64,
    /// Model note events released (note-offs at stop included).
    pub events_out: u64,
    /// Channel-0 notes played.
    pub model_notes: u64,
    /// Events released after their due time.
    pub late: u64,
    pub late_max_ms: f64,
    pub late_mean_ms: f64,
    pub flushes: u64,
    pub flush_stalls: u64,
    pub prefix_cuts: u64,
    pub tokens_generated: u64,
    /// Average time to append one generated token (forward pass and flush work done with it).
    pub ms_per_token: f64,
    /// The longest time one token took (a flush that stalled would show here).
    pub max_ms_per_token: f64,
    /// Average time to compute one sampling mask.
    pub mask_ms_per_token: f64,
    /// Wall-clock duration of the render.
    pub seconds: f64,
    pub session: SessionStats,
}

/// Play `input` (the human part; channel-0 events are dropped: that is the model's part) through
/// `session`.
pub fn render(
    session: &mut Session,
    input: &[NoteEvent],
    params: &LanguageParams,
    opts: &RenderOptions,
) -> Result<RenderOutput> {
    ensure!(
        opts.idle_chunk >= 1,
        "the idle chunk must be at least one token"
    );
    let mut human: Vec<NoteEvent> = input.iter().copied().filter(|e| e.channel != 0).collect();
    human.sort();
    let end_tick = human
        .last()
        .map_or(0, |e| e.tick)
        .saturating_add(opts.tail_ticks);
    let tempo = FixedTempo::new(opts.bpm, params.ticks_per_quarter, 1_000_000)?;
    let started = Instant::now();
    let mut model = Vec::new();
    let mut late = Lateness::default();
    match opts.clock {
        Clock::Virtual => {
            let mut next = 0;
            for now in 0..=end_tick {
                while next < human.len() && human[next].tick <= now {
                    session.human(human[next]);
                    next += 1;
                }
                let released = session.advance(now)?;
                for e in &released {
                    if e.tick < now {
                        late.add((now - e.tick) as f64 * tempo.seconds_per_tick() * 1000.0);
                    }
                }
                model.extend(released);
                if session.is_ahead(now) {
                    session.idle(opts.idle_chunk)?;
                }
            }
        }
        Clock::Wall => {
            let mut next = 0;
            // As the live backends: what is due goes out before the model generates, and the
            // model writes ahead of "now" by the write lead (session::lead). Here "now" is the
            // tick under way (not a release point past it, as live) and what a pass writes
            // inside the release window goes out at the pass's end: the lead covers the pass
            // and the tick already begun, with no window to spare.
            let mut lead = WriteLead::default();
            let ms_per_tick = tempo.seconds_per_tick() * 1000.0;
            loop {
                let pass = Instant::now();
                lead.pass_started(pass);
                let us = started.elapsed().as_micros() as u64;
                let now = tempo.ticks_at(us).floor() as u64;
                if now > end_tick {
                    break;
                }
                while next < human.len() && human[next].tick <= now {
                    session.human(human[next]);
                    next += 1;
                }
                session.set_write_lead(lead.ticks(ms_per_tick, ms_per_tick, 0.0));
                let mut released = session.release_due(now)?;
                late_at(&released, &tempo, started, &mut late);
                let generated = session.advance(now)?;
                late_at(&generated, &tempo, started, &mut late);
                released.extend(generated);
                model.extend(released);
                if session.is_ahead(now) && !session.idle(opts.idle_chunk)? {
                    // Nothing to do until the next tick or the next human event.
                    let mut wake = tempo.frame_at((now + 1) as f64);
                    if let Some(h) = human.get(next) {
                        wake = wake.min(tempo.frame_at(h.tick as f64));
                    }
                    let at = started.elapsed().as_micros() as u64;
                    if wake > at {
                        std::thread::sleep(Duration::from_micros((wake - at).min(20_000)));
                    }
                }
            }
        }
    }
    model.extend(session.stop(end_tick));
    let seconds = started.elapsed().as_secs_f64();
    let stats = session.stats();
    let tokens = stats.context.tokens_generated.max(1) as f64;
    let report = RenderReport {
        clock: opts.clock,
        bpm: opts.bpm,
        seed: session.config().seed,
        ticks_per_quarter: params.ticks_per_quarter,
        end_tick,
        events_in: human.len() as u64,
        events_out: model.len() as u64,
        model_notes: model.iter().filter(|e| e.is_on()).count() as u64,
        late: match opts.clock {
            Clock::Virtual => stats.late,
            Clock::Wall => late.count,
        },
        late_max_ms: late.max_ms,
        late_mean_ms: if late.count > 0 {
            late.sum_ms / late.count as f64
        } else {
            0.0
        },
        flushes: stats.context.flushes,
        flush_stalls: stats.context.flush_stalls,
        prefix_cuts: stats.context.prefix_cuts,
        tokens_generated: stats.context.tokens_generated,
        ms_per_token: stats.context.generate_seconds * 1000.0 / tokens,
        max_ms_per_token: stats.context.max_token_seconds * 1000.0,
        mask_ms_per_token: stats.mask_seconds * 1000.0 / tokens,
        seconds,
        session: stats,
    };
    Ok(RenderOutput {
        human,
        model,
        end_tick,
        report,
    })
}

#[derive(Debug, Default)]
struct Lateness {
    count: u64,
    max_ms: f64,
    sum_ms: f64,
}

impl Lateness {
    fn add(&mut self, ms: f64) {
        self.count += 1;
        self.max_ms = self.max_ms.max(ms);
        self.sum_ms += ms;
    }
}

/// The output as a format-0 MIDI file: the human part and the model's channel 0.
/// Count the events of `released` whose due time has passed (they are sent now).
fn late_at(released: &[NoteEvent], tempo: &FixedTempo, started: Instant, late: &mut Lateness) {
    let at = started.elapsed().as_micros() as u64;
    for e in released {
        let due = tempo.frame_at(e.tick as f64);
        if at > due {
            late.add((at - due) as f64 / 1000.0);
        }
    }
}

pub fn output_midi(out: &RenderOutput, params: &LanguageParams, bpm: f64) -> Vec<u8> {
    let mut all: Vec<NoteEvent> = out.human.iter().chain(out.model.iter()).copied().collect();
    all.sort();
    let end = all
        .iter()
        .map(|e| e.tick)
        .max()
        .unwrap_or(0)
        .max(out.end_tick);
    events_to_midi_until(&all, params, bpm, end)
}
