//! The `alsa` backend: the live engine on the ALSA sequencer through midir, for rigs without
//! JACK (docs/RIGS.md, "ALSA backend").
//!
//! It drives the same decoder thread as the JACK backend ([`crate::live::decoder_thread`]) with
//! a microsecond clock in place of JACK's frames (a "frame" here is a microsecond since the run
//! started; the tempo map runs at a rate of 1 000 000):
//!
//! - **input**: one midir connection per ALSA sequencer port matching an `--input` pattern,
//!   plus the engine's own virtual port `<client>:in` that other programs (`aconnect`) can
//!   connect to. midir calls back on its own thread with a timestamp in microseconds (the ALSA
//!   queue's, from when the connection opened): it becomes a frame of our clock (never later
//!   than now), and the event goes through the same input filter into the same ring as JACK's;
//! - **output**: midir sends a message the moment it is given, so a timer thread takes the
//!   decoder thread's events and sleeps until each is due, then sends it to every connected
//!   output (`--output` patterns and the virtual port `<client>:out`). Its wake-up lateness is
//!   the backend's jitter (measured in docs/RIGS.md; there is no sample accuracy here). It also
//!   publishes "now" for the decoder thread, and at stop sends a note-off for every channel-0
//!   note still sounding.
//!
//! Here: the run; `ports.rs`: patterns and connections; `input.rs`: the input side;
//! `timer.rs`: the output side.

mod input;
mod ports;
mod timer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use regex::Regex;

pub use input::InputSide;
pub use ports::{check_sequencer, compile, list_ports, match_ports, InputPattern, Ports};
pub use timer::{try_realtime, MicroClock, MidiSink, RecordingSink, Timer, TimerStats};

use crate::live::clock::TempoSource;
use crate::live::ports::InputFilter;
use crate::live::report::{self, LiveReport, StopReason};
use crate::live::stats::RtStats;
use crate::live::supervise::{wait_for_stop, Decoder, StopWhen, Timing};
use crate::live::switch::Switcher;
use crate::live::{InEvent, OutEvent, Shared, INPUT_RING, OUTPUT_RING};
use crate::session::Session;
use ports::{open_inputs, open_outputs};

/// The ALSA sequencer device; without it there is no ALSA MIDI at all.
pub const SEQ_DEVICE: &str = "/dev/snd/seq";
/// "Frames" per second of this backend's clock: microseconds.
pub const RATE: u32 = 1_000_000;
/// The timer thread wakes at least this often (it publishes "now" for the decoder thread).
pub const TICK: Duration = Duration::from_millis(1);
/// SCHED_FIFO priority of the output timer thread, when the system allows it (jackd's default
/// client priority is its -P minus a few; 70 is what docs/RIGS.md sets up for jackd).
pub const TIMER_PRIORITY: i32 = 65;

#[derive(Debug, Clone)]
pub struct AlsaOptions {
    /// The ALSA sequencer client name of the engine's own ports (`<name>:in`, `<name>:out`).
    pub client_name: String,
    pub inputs: Vec<InputPattern>,
    pub outputs: Vec<Regex>,
    pub tempo_source: TempoSource,
    pub bpm: f64,
    pub release_horizon_ms: f64,
    pub run_seconds: Option<f64>,
    pub idle_chunk: usize,
}

/// Play live until stopped; returns the report (as JSON: the JACK report's fields, with
/// `backend: "alsa"`, the ports opened and the timer's lateness).
pub fn run(
    session: Session,
    opts: &AlsaOptions,
    signal: Arc<AtomicBool>,
    command_stop: Arc<AtomicBool>,
    control: Option<Switcher>,
) -> Result<(serde_json::Value, StopReason)> {
    if opts.tempo_source == TempoSource::Transport {
        bail!("--tempo-source transport needs JACK transport: use preset or midi_clock with alsa");
    }
    let clock = MicroClock::new();
    let shared = Arc::new(Shared::default());
    let (in_tx, in_rx) = rtrb::RingBuffer::<InEvent>::new(INPUT_RING);
    let (out_tx, out_rx) = rtrb::RingBuffer::<OutEvent>::new(OUTPUT_RING);
    let side = Arc::new(Mutex::new(InputSide {
        to_decoder: in_tx,
        filter: InputFilter::default(),
    }));

    let (outputs, output_names) = open_outputs(opts)?;
    let (inputs, input_names) = open_inputs(opts, clock, &side, &shared)?;
    eprintln!(
        "midicopilot-engine: alsa: reading {} — playing to {}",
        input_names.join(", "),
        output_names.join(", ")
    );

    let mut timer = Timer::new(clock, outputs, out_rx, shared.clone());
    timer.realtime_priority = Some(TIMER_PRIORITY);
    let timer = std::thread::Builder::new()
        .name("midicopilot-timer".into())
        .spawn(move || timer.run())
        .context("starting the output timer thread")?;
    let started = Instant::now();
    while RtStats::get(&shared.stats.cycles) == 0 {
        std::thread::sleep(Duration::from_micros(200));
    }
    let timing = Timing {
        tempo_source: opts.tempo_source,
        bpm: opts.bpm,
        rate: RATE,
        release_horizon_ms: opts.release_horizon_ms,
        idle_chunk: opts.idle_chunk,
    };
    let decoder = Decoder::start(session, timing, in_rx, out_tx, shared.clone(), control)?;
    let when = StopWhen {
        signal: &signal,
        command: Some(&command_stop),
        run_seconds: opts.run_seconds,
        started,
    };
    let reason = wait_for_stop(&when, &shared, &decoder);
    // Stop reading, then note-offs for everything sounding (the timer sends them and ends).
    drop(inputs);
    shared.stop_requested.store(true, Ordering::Release);
    let (outputs, timer_stats) = match timer.join() {
        Ok(r) => r,
        Err(_) => bail!("the output timer thread panicked"),
    };
    let stats = decoder.stop()?;
    drop(outputs);
    let seconds = started.elapsed().as_secs_f64();
    let report: LiveReport = report::build(
        &shared,
        stats,
        opts.client_name.clone(),
        RATE,
        0,
        input_names,
        seconds,
        reason,
    );
    let mut value = serde_json::to_value(&report)?;
    value["backend"] = "alsa".into();
    value["outputs"] = serde_json::to_value(&output_names)?;
    value["timer"] = serde_json::to_value(&timer_stats)?;
    value["summary"] = report.summary().into();
    Ok((value, reason))
}
