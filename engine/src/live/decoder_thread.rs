//! The decoder thread: owns the [`Session`] (model, KV cache, context) and the tempo source.
//!
//! One iteration:
//! 1. "now" is the frame just after the callback's last cycle;
//! 2. every input event from the ring: notes become [`NoteEvent`]s at the tick of their frame
//!    (rounded to the nearest tick) and are queued in the session; clock messages go to the
//!    tempo source only (never into the context); the transport snapshot too;
//! 3. `advance(tick at now + horizon)`: the session puts the human events in (cutting tentative
//!    events they precede), generates a few tokens towards `lookahead` ticks ahead, and
//!    releases what is due before the horizon — those go to the callback, converted to frames
//!    (never earlier than the previous one, so the ring stays sorted). One released after its
//!    due frame is counted late;
//! 4. when the model is ahead: flush work (`idle`), or a 1 ms sleep when there is none.
//!
//! Released events that find the output ring full wait here (in order) and are counted.
//!
//! The context can only hold so much at one instant (one instant is one word, and a flush can
//! only cut between words), so a [`HumanGate`] lets at most [`MAX_ONS_PER_TICK`] human note-ons
//! into one tick and at most [`MAX_HUMAN_PER_ADVANCE`] events into one `advance`; the rest of a
//! flood is dropped (with the note-offs of the dropped notes) and counted, never fatal.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::clock::{Follower, TempoStats};
use super::switch::{ControlStats, LoopState, Switcher};
use super::{InEvent, InKind, OutEvent, Shared};
use crate::events::{bin_of_velocity, velocity_of_bin, EventKind, NoteEvent, NoteSet};
use crate::session::lead::WriteLead;
use crate::session::{Session, SessionStats};
use crate::tempo::Tempo;

/// Most human note-ons let into one tick (16 players' four-note chords fit several times).
pub const MAX_ONS_PER_TICK: u32 = 24;
/// Most human events read from the ring per iteration (the session flushes between batches).
pub const MAX_HUMAN_PER_ADVANCE: usize = 64;

/// Lets human notes into the session at a rate its context can hold (see the module docs).
#[derive(Debug, Default)]
pub struct HumanGate {
    tick: u64,
    ons: u32,
    passed: NoteSet,
    /// Note-ons refused (over the per-tick cap) and the note-offs that went with them.
    pub dropped: u64,
}

impl HumanGate {
    /// Whether this event goes into the session.
    pub fn admit(&mut self, ev: &NoteEvent) -> bool {
        match ev.kind {
            EventKind::On { .. } => {
                if ev.tick != self.tick {
                    self.tick = ev.tick;
                    self.ons = 0;
                }
                if self.ons >= MAX_ONS_PER_TICK || self.passed.contains(ev.channel, ev.pitch) {
                    self.dropped += 1;
                    return false;
                }
                self.ons += 1;
                self.passed.insert(ev.channel, ev.pitch);
                true
            }
            EventKind::Off => {
                if self.passed.contains(ev.channel, ev.pitch) {
                    self.passed.remove(ev.channel, ev.pitch);
                    true
                } else {
                    self.dropped += 1;
                    false
                }
            }
        }
    }
}

/// The decoder thread's settings.
#[derive(Debug, Clone, Copy)]
pub struct DecoderConfig {
    /// Release events this many frames before they are due.
    pub horizon_frames: u64,
    /// Flush prefill tokens per idle call.
    pub idle_chunk: usize,
}

/// What the decoder thread did (the report's `decoder` part).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DecoderStats {
    /// Human note events handed to the session.
    pub human_events: u64,
    /// Human note events kept out of the session by the flood gate ([`HumanGate`]).
    pub human_dropped: u64,
    /// Model events released to the callback.
    pub released: u64,
    /// Released at a frame the callback had already passed (the output was late).
    pub late: u64,
    /// How late the latest of those was, in milliseconds.
    pub late_max_ms: f64,
    /// Smallest margin between release and due frame, in milliseconds (negative: late).
    pub margin_min_ms: Option<f64>,
    /// Released events that found the output ring full and waited.
    pub out_ring_waits: u64,
    /// Loop iterations and the longest one (a long one is a forward pass or a flush stall).
    pub iterations: u64,
    pub iteration_max_ms: f64,
    /// The largest write lead the session was given (ticks past the release point).
    pub write_lead_max_ticks: u64,
    /// The error that ended the thread, if any.
    pub error: Option<String>,
    pub tempo: TempoStats,
    pub session: SessionStats,
    /// Switches from the control channel (live::switch), when it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlStats>,
}

/// Run until `quit` is set (or the session fails). Returns what it did.
pub fn run(
    session: Session,
    tempo: Follower,
    input: rtrb::Consumer<InEvent>,
    output: rtrb::Producer<OutEvent>,
    shared: Arc<Shared>,
    cfg: DecoderConfig,
    quit: Arc<AtomicBool>,
) -> DecoderStats {
    run_with_control(session, tempo, input, output, shared, cfg, quit, None)
}

/// [`run`], with songs switched between iterations by the control channel's [`Switcher`].
#[allow(clippy::too_many_arguments)]
pub fn run_with_control(
    mut session: Session,
    mut tempo: Follower,
    mut input: rtrb::Consumer<InEvent>,
    mut output: rtrb::Producer<OutEvent>,
    shared: Arc<Shared>,
    mut cfg: DecoderConfig,
    quit: Arc<AtomicBool>,
    mut control: Option<Switcher>,
) -> DecoderStats {
    super::priority::lower_this_thread();
    let mut stats = DecoderStats::default();
    let rate = f64::from(tempo.map().rate());
    let mut state = Loop {
        pending: VecDeque::new(),
        last_frame: 0,
        gate: HumanGate::default(),
        lead: WriteLead::default(),
    };
    let result = (|| -> Result<()> {
        while !quit.load(Ordering::Acquire) {
            if let Some(switcher) = control.as_mut() {
                switcher.poll(LoopState {
                    session: &mut session,
                    tempo: &mut tempo,
                    horizon_frames: &mut cfg.horizon_frames,
                    pending_out: &mut state.pending,
                    output: &mut output,
                    last_frame: &mut state.last_frame,
                    now: shared.now_frame(),
                });
            }
            let t0 = Instant::now();
            let worked = state.iteration(
                &mut session,
                &mut tempo,
                &mut input,
                &mut output,
                &shared,
                &cfg,
                &mut stats,
                rate,
            )?;
            stats.iterations += 1;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            stats.iteration_max_ms = stats.iteration_max_ms.max(ms);
            // The lead covers the time from one iteration's start to the next one's, sleep and
            // the scheduler included (a descheduled decoder is as late as a slow one).
            state.lead.pass_started(t0);
            if !worked {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        stats.error = Some(format!("{e:#}"));
    }
    stats.human_dropped = state.gate.dropped;
    stats.tempo = tempo.stats();
    // The callback writes the note-offs of what actually sounds; the session's own stop only
    // closes its bookkeeping (its events are never sent).
    let _ = session.stop(0);
    stats.session = session.stats();
    stats.control = control.map(|c| c.stats());
    stats
}

struct Loop {
    /// Released events waiting for room in the output ring.
    pending: VecDeque<OutEvent>,
    /// Frame of the last event sent (the ring stays sorted).
    last_frame: u64,
    gate: HumanGate,
    /// The recent longest gap between iterations, for the write lead.
    lead: WriteLead,
}

impl Loop {
    /// One pass; returns whether there was anything to do (else the caller sleeps a little).
    #[allow(clippy::too_many_arguments)]
    fn iteration(
        &mut self,
        session: &mut Session,
        tempo: &mut Follower,
        input: &mut rtrb::Consumer<InEvent>,
        output: &mut rtrb::Producer<OutEvent>,
        shared: &Shared,
        cfg: &DecoderConfig,
        stats: &mut DecoderStats,
        rate: f64,
    ) -> Result<bool> {
        let now = shared.now_frame();
        let bins = session.context().params().velocity_bins;
        let mut worked = false;

        let mut batch = 0;
        while batch < MAX_HUMAN_PER_ADVANCE {
            let Ok(ev) = input.pop() else { break };
            worked = true;
            let tick = (tempo.ticks_at(ev.frame) + 0.5).floor() as u64;
            let note = match ev.kind {
                InKind::NoteOn {
                    channel,
                    pitch,
                    velocity,
                } => NoteEvent::on(tick, channel, pitch, bin_of_velocity(velocity, bins)),
                InKind::NoteOff { channel, pitch } => NoteEvent::off(tick, channel, pitch),
                kind => {
                    tempo.on_clock_message(ev.frame, kind);
                    continue;
                }
            };
            batch += 1;
            if self.gate.admit(&note) {
                session.human(note);
                stats.human_events += 1;
            }
        }
        if let Some(snap) = shared.transport.read() {
            tempo.on_transport(snap);
        }

        let release_tick = tempo.ticks_at(now + cfg.horizon_frames).floor() as u64;
        let lead = self.write_lead_ticks(tempo, shared, cfg, now, rate);
        stats.write_lead_max_ticks = stats.write_lead_max_ticks.max(lead);
        session.set_write_lead(lead);
        let ahead_before = session.is_ahead(release_tick);
        // What is due goes out before the model generates (a step of a large model takes a
        // good part of the horizon), then what the generation made due.
        let due = session.release_due(release_tick)?;
        worked |= self.send(due, tempo, output, stats, now, rate, bins);
        let released = session.advance(release_tick)?;
        worked |= self.send(released, tempo, output, stats, now, rate, bins);
        // Generating was work; when ahead, the flush is (if there is one to build).
        if !ahead_before || session.idle(cfg.idle_chunk)? {
            worked = true;
        }
        Ok(worked)
    }

    /// The write lead at `now` (session::lead): past the horizon, a period for the callback.
    fn write_lead_ticks(
        &self,
        tempo: &Follower,
        shared: &Shared,
        cfg: &DecoderConfig,
        now: u64,
        rate: f64,
    ) -> u64 {
        let ms = |frames: u64| frames as f64 / rate * 1e3;
        let period = u64::from(shared.cycle_frames.load(Ordering::Relaxed));
        let from = now + cfg.horizon_frames;
        let ms_per_tick =
            ms(rate as u64) / (tempo.ticks_at(from + rate as u64) - tempo.ticks_at(from));
        self.lead
            .ticks(ms_per_tick, ms(period), ms(cfg.horizon_frames))
    }

    /// Released events to the callback (in frames, never before the previous one); returns
    /// whether there were any.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        released: Vec<NoteEvent>,
        tempo: &Follower,
        output: &mut rtrb::Producer<OutEvent>,
        stats: &mut DecoderStats,
        now: u64,
        rate: f64,
        bins: u8,
    ) -> bool {
        let mut worked = false;
        for ev in released {
            let due = tempo.frame_at(ev.tick as f64).max(self.last_frame);
            self.last_frame = due;
            let margin_ms = (due as f64 - now as f64) / rate * 1e3;
            stats.margin_min_ms = Some(stats.margin_min_ms.map_or(margin_ms, |m| m.min(margin_ms)));
            if due < now {
                stats.late += 1;
                stats.late_max_ms = stats.late_max_ms.max(-margin_ms);
            }
            stats.released += 1;
            let out = match ev.kind {
                EventKind::On { velocity_bin } => {
                    OutEvent::note_on(due, ev.pitch, velocity_of_bin(velocity_bin, bins))
                }
                EventKind::Off => OutEvent::note_off(due, ev.pitch),
            };
            self.pending.push_back(out);
            worked = true;
        }
        while let Some(ev) = self.pending.front().copied() {
            if output.push(ev).is_err() {
                stats.out_ring_waits += 1;
                break;
            }
            self.pending.pop_front();
        }
        worked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_caps_ons_per_tick_and_drops_their_offs() {
        let mut g = HumanGate::default();
        let n = MAX_ONS_PER_TICK as u8;
        for p in 0..n + 5 {
            let admitted = g.admit(&NoteEvent::on(10, 1 + p % 4, 40 + p, 3));
            assert_eq!(admitted, p < n, "pitch {p}");
        }
        assert_eq!(g.dropped, 5);
        // the offs of admitted notes pass, those of refused ones are dropped too
        assert!(g.admit(&NoteEvent::off(11, 1, 40)));
        assert!(!g.admit(&NoteEvent::off(11, 1 + n % 4, 40 + n)));
        assert_eq!(g.dropped, 6);
        // a new tick has room again; a second on of a sounding note does not pass
        assert!(g.admit(&NoteEvent::on(12, 1, 40, 3)));
        assert!(!g.admit(&NoteEvent::on(13, 1, 40, 3)));
    }
}
