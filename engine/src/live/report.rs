//! The run's report: JSON at exit (`--report FILE.json`) and one summary line on stderr.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::alloc_guard;
use super::decoder_thread::DecoderStats;
use super::stats::RtStats;
use super::Shared;

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Signal,
    /// `--run-seconds` elapsed.
    RunSeconds,
    /// The JACK server shut down (or kicked the client out).
    ServerShutdown,
    /// The decoder thread failed (the error is in `decoder.error`).
    DecoderError,
    /// A `{"cmd":"stop"}` line on the control channel (live::control).
    Command,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dropped {
    /// Note-ons the input ring could not take (their note-offs are then ignored too).
    pub input_ring_full: u64,
    /// Clock messages the input ring could not take.
    pub clock_ring_full: u64,
    /// Writes the output port refused (retried the next cycle, so delayed rather than lost).
    pub output_buffer_full: u64,
    /// Released events that waited for room in the output ring (delayed, not lost).
    pub output_ring_waits: u64,
    /// Total of the above.
    pub total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Callback {
    pub cycles: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Allocations or frees inside the callback (must be 0).
    pub allocations: u64,
    /// Whether the allocation guard was active (the counting allocator is installed and its
    /// self-test saw an allocation on purpose).
    pub alloc_guard: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    pub backend: &'static str,
    pub client: String,
    pub sample_rate: u32,
    pub buffer_frames: u32,
    pub inputs: Vec<String>,
    pub seconds: f64,
    pub stop_reason: StopReason,
    /// Raw MIDI messages read from the input ports.
    pub received: u64,
    /// Human note events received (after the input filter) and passed to the decoder thread.
    pub events_in: u64,
    /// Channel-0 messages written on `out` (stop note-offs included).
    pub events_out: u64,
    /// Model events released after their due frame.
    pub late: u64,
    /// Events written in a cycle that began after their due frame.
    pub written_late: u64,
    pub late_max_ms: f64,
    pub dropped: Dropped,
    /// Non-note messages filtered by design (CC, pitch bend, SysEx, …).
    pub filtered: u64,
    /// Note-ons merged into a sounding note of the same mapped channel and pitch.
    pub merged: u64,
    /// Note-offs of notes not sounding (ignored).
    pub unmatched_offs: u64,
    /// Note-offs that found the input ring full and went in the next cycle.
    pub deferred_offs: u64,
    /// MIDI clock / start / continue / stop messages received.
    pub clock_in: u64,
    /// Note-offs written at stop for channel-0 notes still sounding.
    pub stop_offs: u64,
    /// Released events discarded at stop (never started).
    pub discarded_at_stop: u64,
    pub tokens: u64,
    pub prefix_cuts: u64,
    pub flushes: u64,
    pub flush_stalls: u64,
    pub xruns: u64,
    pub callback: Callback,
    pub decoder: DecoderStats,
}

/// Everything the run's parts counted, gathered once they have stopped.
#[allow(clippy::too_many_arguments)]
pub fn build(
    shared: &Shared,
    decoder: DecoderStats,
    client: String,
    sample_rate: u32,
    buffer_frames: u32,
    inputs: Vec<String>,
    seconds: f64,
    stop_reason: StopReason,
) -> LiveReport {
    let s = &shared.stats;
    let g = RtStats::get;
    let us = |ns: u64| ns as f64 / 1e3;
    let dropped = Dropped {
        input_ring_full: g(&s.dropped_ring_full),
        clock_ring_full: g(&s.dropped_clock_ring_full),
        output_buffer_full: g(&s.out_buffer_full),
        output_ring_waits: decoder.out_ring_waits,
        total: 0,
    };
    let total = dropped.input_ring_full
        + dropped.clock_ring_full
        + dropped.output_buffer_full
        + dropped.output_ring_waits;
    let ctx = &decoder.session.context;
    LiveReport {
        backend: "jack",
        client,
        sample_rate,
        buffer_frames,
        inputs,
        seconds,
        stop_reason,
        received: g(&s.received),
        events_in: g(&s.notes_in),
        events_out: g(&s.written) + g(&s.stop_offs),
        late: decoder.late,
        written_late: g(&s.written_late),
        late_max_ms: decoder
            .late_max_ms
            .max(g(&s.late_frames_max) as f64 / f64::from(sample_rate.max(1)) * 1e3),
        dropped: Dropped { total, ..dropped },
        filtered: g(&s.filtered),
        merged: g(&s.merged),
        unmatched_offs: g(&s.unmatched_off),
        deferred_offs: g(&s.deferred_offs),
        clock_in: g(&s.clock_in),
        stop_offs: g(&s.stop_offs),
        discarded_at_stop: g(&s.discarded_at_stop),
        tokens: decoder.session.tokens,
        prefix_cuts: ctx.prefix_cuts,
        flushes: ctx.flushes,
        flush_stalls: ctx.flush_stalls,
        xruns: shared.xruns.load(Ordering::Relaxed),
        callback: Callback {
            cycles: g(&s.cycles),
            mean_us: s.callback_ns.mean() / 1e3,
            p50_us: us(s.callback_ns.quantile(0.5)),
            p99_us: us(s.callback_ns.quantile(0.99)),
            max_us: us(s.callback_ns.max()),
            allocations: alloc_guard::rt_allocations(),
            alloc_guard: alloc_guard::installed(),
        },
        decoder,
    }
}

impl LiveReport {
    /// One line for stderr.
    pub fn summary(&self) -> String {
        format!(
            "{} events in, {} out, {} late ({} written late, max {:.1} ms), {} dropped (input ring {}, clock {}, output buffer {}, \
             output ring {}), {} filtered, {} tokens, {} prefix cuts, {} flushes, callback p99 \
             {:.1} µs max {:.1} µs over {} cycles, {} allocations in the callback, {} xruns; \
             stopped by {}",
            self.events_in,
            self.events_out,
            self.late,
            self.written_late,
            self.late_max_ms,
            self.dropped.total,
            self.dropped.input_ring_full,
            self.dropped.clock_ring_full,
            self.dropped.output_buffer_full,
            self.dropped.output_ring_waits,
            self.filtered,
            self.tokens,
            self.prefix_cuts,
            self.flushes,
            self.callback.p99_us,
            self.callback.max_us,
            self.callback.cycles,
            self.callback.allocations,
            self.xruns,
            match self.stop_reason {
                StopReason::Signal => "signal",
                StopReason::RunSeconds => "--run-seconds",
                StopReason::ServerShutdown => "the JACK server shutting down",
                StopReason::DecoderError => "a decoder error",
                StopReason::Command => "a stop command",
            }
        )
    }
}
