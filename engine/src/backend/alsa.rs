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

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use regex::Regex;
use serde::Serialize;

use crate::events::NoteSet;
use crate::live::clock::TempoSource;
use crate::live::ports::{Classified, InputFilter, InputMode};
use crate::live::report::{self, LiveReport, StopReason};
use crate::live::stats::{Histogram, RtStats};
use crate::live::supervise::{wait_for_stop, Decoder, StopWhen, Timing};
use crate::live::switch::Switcher;
use crate::live::{InEvent, InKind, OutEvent, Shared, MODEL_CHANNEL};
use crate::session::Session;

/// The ALSA sequencer device; without it there is no ALSA MIDI at all.
pub const SEQ_DEVICE: &str = "/dev/snd/seq";
/// "Frames" per second of this backend's clock: microseconds.
pub const RATE: u32 = 1_000_000;
/// The timer thread wakes at least this often (it publishes "now" for the decoder thread).
pub const TICK: Duration = Duration::from_millis(1);
/// SCHED_FIFO priority of the output timer thread, when the system allows it (jackd's default
/// client priority is its -P minus a few; 70 is what docs/RIGS.md sets up for jackd).
pub const TIMER_PRIORITY: i32 = 65;
/// Capacity of the rings (as the JACK backend's).
pub const INPUT_RING: usize = 8192;
pub const OUTPUT_RING: usize = 4096;

/// One `--input PATTERN` (pass) or `--input-channel CH=PATTERN`.
#[derive(Debug, Clone)]
pub struct InputPattern {
    pub pattern: Regex,
    pub mode: InputMode,
}

impl InputPattern {
    /// `REGEX`: the ports' channels are kept (channel 0 moves to 1).
    pub fn pass(text: &str) -> Result<Self> {
        Ok(Self {
            pattern: compile(text, "--input")?,
            mode: InputMode::Pass,
        })
    }

    /// `CH=REGEX` (CH 1–15): everything from those ports is channel CH.
    pub fn assigned(text: &str) -> Result<Self> {
        let Some((ch, pat)) = text.split_once('=') else {
            bail!("--input-channel {text}: expected CH=PATTERN (CH 1–15)");
        };
        let ch = match ch.trim().parse::<u8>() {
            Ok(c) if (1..=15).contains(&c) => c,
            _ => bail!("--input-channel {text}: '{ch}' is not a channel 1–15 (0 is the model's)"),
        };
        Ok(Self {
            pattern: compile(pat, "--input-channel")?,
            mode: InputMode::Assign(ch),
        })
    }
}

/// A port pattern (Rust `regex` syntax, searched anywhere in the port's name).
pub fn compile(text: &str, flag: &str) -> Result<Regex> {
    if text.is_empty() {
        bail!("{flag}: empty pattern");
    }
    Regex::new(text).map_err(|e| {
        let why = e.to_string();
        let last = why.lines().last().unwrap_or("invalid").trim().to_string();
        anyhow::anyhow!("{flag} {text:?}: bad regular expression: {last}")
    })
}

/// Which of `names` each pattern matches (indices, in `names` order, no repeats), skipping the
/// engine's own ports (`<own_client>:…`); also the patterns that matched nothing.
pub fn match_ports<'a>(
    names: &[String],
    patterns: impl IntoIterator<Item = &'a Regex>,
    own_client: &str,
) -> (Vec<usize>, Vec<String>) {
    let own = format!("{own_client}:");
    let mut hits = Vec::new();
    let mut unmatched = Vec::new();
    for pat in patterns {
        let mut any = false;
        for (i, name) in names.iter().enumerate() {
            if name.starts_with(&own) || !pat.is_match(name) {
                continue;
            }
            any = true;
            if !hits.contains(&i) {
                hits.push(i);
            }
        }
        if !any {
            unmatched.push(pat.as_str().to_string());
        }
    }
    hits.sort_unstable();
    (hits, unmatched)
}

/// One clear line when there is no ALSA sequencer on this machine.
pub fn check_sequencer(device: &Path) -> Result<()> {
    if !device.exists() {
        bail!(
            "no ALSA sequencer ({} is missing): load it with `modprobe snd-seq` (a virtual MIDI \
             port: `modprobe snd-virmidi`), or use the jack backend",
            device.display()
        );
    }
    Ok(())
}

/// Microseconds since the run started: this backend's frames.
#[derive(Debug, Clone, Copy)]
pub struct MicroClock {
    start: Instant,
}

impl MicroClock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Sleep until `frame` (or return at once if it has passed).
    pub fn sleep_until(&self, frame: u64) {
        let now = self.now();
        if frame > now {
            std::thread::sleep(Duration::from_micros(frame - now));
        }
    }
}

impl Default for MicroClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the timer thread sends channel-0 messages.
pub trait MidiSink: Send {
    /// Send one message now; false if no destination took it.
    fn send(&mut self, msg: &[u8]) -> bool;
}

impl MidiSink for Vec<midir::MidiOutputConnection> {
    fn send(&mut self, msg: &[u8]) -> bool {
        let mut ok = self.is_empty(); // nowhere to send is not a failure of the send
        for conn in self.iter_mut() {
            ok |= conn.send(msg).is_ok();
        }
        ok
    }
}

/// A sink that records what it was given and when (tests, benchmarks).
#[derive(Debug, Default)]
pub struct RecordingSink {
    pub clock: Option<MicroClock>,
    pub sent: Vec<(u64, [u8; 3])>,
}

impl MidiSink for RecordingSink {
    fn send(&mut self, msg: &[u8]) -> bool {
        let at = self.clock.map_or(0, |c| c.now());
        let mut m = [0u8; 3];
        for (d, s) in m.iter_mut().zip(msg) {
            *d = *s;
        }
        self.sent.push((at, m));
        true
    }
}

/// Ask for real-time scheduling (SCHED_FIFO at `priority`, as jackd's -P) for the calling
/// thread; false when the system refuses (no rtprio limit: see docs/RIGS.md).
pub fn try_realtime(priority: i32) -> bool {
    // SAFETY: plain libc calls on the current thread with a valid sched_param.
    unsafe {
        let param = libc::sched_param {
            sched_priority: priority,
        };
        libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0
    }
}

/// How late the timer thread sent events (the backend's output jitter).
#[derive(Debug, Clone, Serialize)]
pub struct TimerStats {
    /// Whether the timer thread got real-time scheduling (SCHED_FIFO).
    pub realtime: bool,
    pub sent: u64,
    /// Sent at least 1 ms after their due time.
    pub late_1ms: u64,
    pub lateness_p50_us: u64,
    pub lateness_p99_us: u64,
    pub lateness_max_us: u64,
    pub send_failures: u64,
}

/// The output side: sleeps until each released event is due and sends it (module docs).
pub struct Timer<S: MidiSink> {
    pub clock: MicroClock,
    pub sink: S,
    pub from_decoder: rtrb::Consumer<OutEvent>,
    pub shared: Arc<Shared>,
    pub sounding: NoteSet,
    pub lateness_us: Histogram,
    pub send_failures: u64,
    /// SCHED_FIFO priority to ask for when the timer starts (None: normal scheduling).
    pub realtime_priority: Option<i32>,
}

impl<S: MidiSink> Timer<S> {
    pub fn new(
        clock: MicroClock,
        sink: S,
        from_decoder: rtrb::Consumer<OutEvent>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            clock,
            sink,
            from_decoder,
            shared,
            sounding: NoteSet::default(),
            lateness_us: Histogram::new(),
            send_failures: 0,
            realtime_priority: None,
        }
    }

    /// Publish "now" and send what is due; returns the frame of the next queued event.
    pub fn tick(&mut self) -> Option<u64> {
        let now = self.clock.now();
        let stats = &self.shared.stats;
        while let Ok(ev) = self.from_decoder.peek() {
            if ev.frame > now {
                break;
            }
            let ev = *ev;
            let _ = self.from_decoder.pop();
            // Channel 0 whatever the decoder thread said (as the JACK callback does).
            let msg = [
                (ev.msg[0] & 0xF0) | MODEL_CHANNEL,
                ev.msg[1] & 0x7f,
                ev.msg[2] & 0x7f,
            ];
            if !self.sink.send(&msg) {
                self.send_failures += 1;
                RtStats::bump(&stats.out_buffer_full);
            }
            if msg[0] & 0xF0 == 0x90 && msg[2] > 0 {
                self.sounding.insert(MODEL_CHANNEL, msg[1]);
            } else {
                self.sounding.remove(MODEL_CHANNEL, msg[1]);
            }
            let late = self.clock.now().saturating_sub(ev.frame);
            self.lateness_us.record(late);
            RtStats::bump(&stats.written);
            if late >= 1000 {
                RtStats::bump(&stats.written_late);
            }
            stats.late_frames_max.fetch_max(late, Ordering::Relaxed);
        }
        self.shared.cycle_frames.store(0, Ordering::Relaxed);
        self.shared.cycle_start.store(now, Ordering::Release);
        RtStats::bump(&stats.cycles);
        self.from_decoder.peek().ok().map(|e| e.frame)
    }

    /// Note-offs for every channel-0 note sounding; the queue is discarded.
    pub fn stop(&mut self) {
        let stats = &self.shared.stats;
        for pitch in 0..128u8 {
            if self.sounding.contains(MODEL_CHANNEL, pitch) {
                self.sink.send(&[0x80 | MODEL_CHANNEL, pitch, 64]);
                self.sounding.remove(MODEL_CHANNEL, pitch);
                RtStats::bump(&stats.stop_offs);
            }
        }
        while self.from_decoder.pop().is_ok() {
            RtStats::bump(&stats.discarded_at_stop);
        }
        self.shared.stopped.store(true, Ordering::Release);
    }

    /// Run until a stop is requested: sleep until the next event is due (at most [`TICK`]).
    pub fn run(mut self) -> (S, TimerStats) {
        let realtime = self.realtime_priority.is_some_and(try_realtime);
        // Sleeps end when asked, not up to 50 µs later (the kernel's default timer slack).
        // SAFETY: prctl with PR_SET_TIMERSLACK only changes this thread's timer slack.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        }
        loop {
            if self.shared.stop_requested.load(Ordering::Acquire) {
                self.stop();
                break;
            }
            let next = self.tick();
            let now = self.clock.now();
            let wake = next.map_or(now + TICK.as_micros() as u64, |f| {
                f.min(now + TICK.as_micros() as u64)
            });
            self.clock.sleep_until(wake);
        }
        let h = &self.lateness_us;
        let stats = TimerStats {
            realtime,
            sent: h.count(),
            late_1ms: RtStats::get(&self.shared.stats.written_late),
            lateness_p50_us: h.quantile(0.5),
            lateness_p99_us: h.quantile(0.99),
            lateness_max_us: h.max(),
            send_failures: self.send_failures,
        };
        (self.sink, stats)
    }
}

/// The input side shared by midir's callbacks (one per connection, each on its own thread).
pub struct InputSide {
    pub to_decoder: rtrb::Producer<InEvent>,
    pub filter: InputFilter,
}

impl InputSide {
    /// One raw message from an input in `mode`, at `frame`: classify, push, count.
    pub fn receive(&mut self, shared: &Shared, mode: InputMode, frame: u64, bytes: &[u8]) {
        let stats = &shared.stats;
        RtStats::bump(&stats.received);
        match self.filter.classify(mode, bytes) {
            Classified::Pass(kind) => {
                let mut ok = self.to_decoder.push(InEvent { frame, kind }).is_ok();
                if !ok {
                    if let InKind::NoteOff { .. } = kind {
                        // Not a real-time thread: a note-off waits for room rather than hang.
                        RtStats::bump(&stats.deferred_offs);
                        for _ in 0..5000 {
                            std::thread::sleep(Duration::from_micros(200));
                            if self.to_decoder.push(InEvent { frame, kind }).is_ok() {
                                ok = true;
                                break;
                            }
                        }
                        if ok {
                            RtStats::bump(&stats.notes_in);
                        }
                        return;
                    }
                }
                match (kind, ok) {
                    (InKind::NoteOn { .. } | InKind::NoteOff { .. }, true) => {
                        RtStats::bump(&stats.notes_in)
                    }
                    (InKind::NoteOn { channel, pitch, .. }, false) => {
                        self.filter.on_refused(channel, pitch);
                        RtStats::bump(&stats.dropped_ring_full);
                    }
                    (_, true) => RtStats::bump(&stats.clock_in),
                    (_, false) => RtStats::bump(&stats.dropped_clock_ring_full),
                }
            }
            Classified::Filtered => RtStats::bump(&stats.filtered),
            Classified::Merged => RtStats::bump(&stats.merged),
            Classified::Unmatched => RtStats::bump(&stats.unmatched_off),
        }
    }
}

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

fn seq_error(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot open the ALSA sequencer ({SEQ_DEVICE}) for {what}: check that you may use it \
         (the audio group) or use the jack backend"
    )
}

/// The ALSA ports this run opens, listed before the model loads (so a bad setup fails fast).
pub struct Ports {
    pub input_names: Vec<String>,
    pub output_names: Vec<String>,
}

/// List the sequencer's ports (readable ones are inputs for us, writable ones outputs).
pub fn list_ports(client_name: &str) -> Result<Ports> {
    let mi = midir::MidiInput::new(client_name).map_err(|_| seq_error("input"))?;
    let mo = midir::MidiOutput::new(client_name).map_err(|_| seq_error("output"))?;
    let input_names = mi
        .ports()
        .iter()
        .filter_map(|p| mi.port_name(p).ok())
        .collect();
    let output_names = mo
        .ports()
        .iter()
        .filter_map(|p| mo.port_name(p).ok())
        .collect();
    Ok(Ports {
        input_names,
        output_names,
    })
}

type Conn = midir::MidiInputConnection<()>;

/// Open the inputs: the virtual port `<client>:in` (pass) and every port a pattern matches.
fn open_inputs(
    opts: &AlsaOptions,
    clock: MicroClock,
    side: &Arc<Mutex<InputSide>>,
    shared: &Arc<Shared>,
) -> Result<(Vec<Conn>, Vec<String>)> {
    use midir::os::unix::VirtualInput;

    let mut conns = Vec::new();
    let mut names = Vec::new();
    let callback = |mode: InputMode, base: u64| {
        let (side, shared) = (side.clone(), shared.clone());
        move |stamp: u64, bytes: &[u8], _: &mut ()| {
            let frame = base.saturating_add(stamp).min(clock.now());
            if let Ok(mut s) = side.lock() {
                s.receive(&shared, mode, frame, bytes);
            }
        }
    };
    let mut midi_in = midir::MidiInput::new(&opts.client_name).map_err(|_| seq_error("input"))?;
    midi_in.ignore(midir::Ignore::None); // clock is tempo information; SysEx is filtered later
    let base = clock.now();
    let conn = midi_in
        .create_virtual("in", callback(InputMode::Pass, base), ())
        .map_err(|e| anyhow::anyhow!("creating the ALSA port {}:in: {e}", opts.client_name))?;
    conns.push(conn);
    names.push(format!("{}:in", opts.client_name));

    for spec in &opts.inputs {
        let mut probe = midir::MidiInput::new(&opts.client_name).map_err(|_| seq_error("input"))?;
        probe.ignore(midir::Ignore::None);
        let ports = probe.ports();
        let port_names: Vec<String> = ports
            .iter()
            .map(|p| probe.port_name(p).unwrap_or_default())
            .collect();
        let (hits, unmatched) = match_ports(&port_names, [&spec.pattern], &opts.client_name);
        for pat in unmatched {
            eprintln!("midicopilot-engine: alsa: warning: --input '{pat}' matched no ALSA port");
        }
        for i in hits {
            let mut m = midir::MidiInput::new(&opts.client_name).map_err(|_| seq_error("input"))?;
            m.ignore(midir::Ignore::None);
            let before = clock.now();
            let conn = m
                .connect(&ports[i], "in", callback(spec.mode, before), ())
                .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", port_names[i]))?;
            conns.push(conn);
            names.push(port_names[i].clone());
        }
    }
    Ok((conns, names))
}

/// Open the outputs: the virtual port `<client>:out` and every port a pattern matches.
fn open_outputs(opts: &AlsaOptions) -> Result<(Vec<midir::MidiOutputConnection>, Vec<String>)> {
    use midir::os::unix::VirtualOutput;

    let mut conns = Vec::new();
    let mut names = Vec::new();
    let mo = midir::MidiOutput::new(&opts.client_name).map_err(|_| seq_error("output"))?;
    conns
        .push(mo.create_virtual("out").map_err(|e| {
            anyhow::anyhow!("creating the ALSA port {}:out: {e}", opts.client_name)
        })?);
    names.push(format!("{}:out", opts.client_name));
    let probe = midir::MidiOutput::new(&opts.client_name).map_err(|_| seq_error("output"))?;
    let ports = probe.ports();
    let port_names: Vec<String> = ports
        .iter()
        .map(|p| probe.port_name(p).unwrap_or_default())
        .collect();
    let (hits, unmatched) = match_ports(&port_names, &opts.outputs, &opts.client_name);
    for pat in unmatched {
        eprintln!("midicopilot-engine: alsa: warning: --output '{pat}' matched no ALSA port");
    }
    for i in hits {
        let m = midir::MidiOutput::new(&opts.client_name).map_err(|_| seq_error("output"))?;
        let conn = m
            .connect(&ports[i], "out")
            .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", port_names[i]))?;
        conns.push(conn);
        names.push(port_names[i].clone());
    }
    Ok((conns, names))
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Queue events for the timer by hand.
    fn push_all(tx: &mut rtrb::Producer<OutEvent>, events: &mut VecDeque<OutEvent>) -> usize {
        let mut n = 0;
        while let Some(ev) = events.front().copied() {
            if tx.push(ev).is_err() {
                break;
            }
            events.pop_front();
            n += 1;
        }
        n
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ports_match_by_search_skipping_our_own() {
        let ports = names(&[
            "Midi Through:Midi Through Port-0 14:0",
            "Keystation 49:Keystation 49 MIDI 1 20:0",
            "MPC Studio:MPC Studio MIDI 1 24:0",
            "midicopilot:out 128:1",
            "FLUID Synth (1234):Synth input port (1234:0) 129:0",
        ]);
        let pats = [
            Regex::new("Keystation").unwrap(),
            Regex::new("^MPC").unwrap(),
        ];
        let (hits, unmatched) = match_ports(&ports, &pats, "midicopilot");
        assert_eq!(hits, vec![1, 2]);
        assert!(unmatched.is_empty());
        // our own ports are never matched, even by a catch-all; a miss is reported
        let pats = [Regex::new(".").unwrap(), Regex::new("Juno").unwrap()];
        let (hits, unmatched) = match_ports(&ports, &pats, "midicopilot");
        assert_eq!(hits, vec![0, 1, 2, 4]);
        assert_eq!(unmatched, vec!["Juno".to_string()]);
        // two patterns matching one port open it once
        let pats = [
            Regex::new("FLUID").unwrap(),
            Regex::new("Synth input").unwrap(),
        ];
        assert_eq!(match_ports(&ports, &pats, "midicopilot").0, vec![4]);
    }

    #[test]
    fn input_patterns_parse_or_say_why_not() {
        let p = InputPattern::pass("Keystation.*MIDI 1").unwrap();
        assert_eq!(p.mode, InputMode::Pass);
        let p = InputPattern::assigned("9=^MPC").unwrap();
        assert_eq!(p.mode, InputMode::Assign(9));
        assert!(p.pattern.is_match("MPC Studio:MPC Studio MIDI 1 24:0"));
        // the pattern may itself hold '='
        assert!(InputPattern::assigned("3=a=b")
            .unwrap()
            .pattern
            .is_match("xa=b"));
        let e = |r: Result<InputPattern>| format!("{:#}", r.unwrap_err());
        assert!(e(InputPattern::assigned("0=x")).contains("'0' is not a channel 1–15"));
        assert!(e(InputPattern::assigned("16=x")).contains("'16' is not a channel"));
        assert!(e(InputPattern::assigned("x")).contains("expected CH=PATTERN"));
        let bad = e(InputPattern::pass("MPC("));
        assert!(
            bad.starts_with("--input \"MPC(\": bad regular expression"),
            "{bad}"
        );
        assert!(!bad.contains('\n'));
        assert!(e(InputPattern::pass("")).contains("empty pattern"));
    }

    #[test]
    fn no_sequencer_is_one_line() {
        let e = format!(
            "{:#}",
            check_sequencer(Path::new("/no/such/seq")).unwrap_err()
        );
        assert!(
            e.starts_with("no ALSA sequencer (/no/such/seq is missing)"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn the_timer_sends_in_order_not_before_due_and_closes_notes_at_stop() {
        let clock = MicroClock::new();
        let shared = Arc::new(Shared::default());
        let (mut tx, rx) = rtrb::RingBuffer::<OutEvent>::new(64);
        let t0 = clock.now() + 5_000;
        let mut evs: VecDeque<OutEvent> = VecDeque::from(vec![
            OutEvent::note_on(t0, 60, 100),
            OutEvent::note_on(t0 + 2_000, 64, 100),
            OutEvent::note_off(t0 + 4_000, 60),
            OutEvent::note_on(t0 + 6_000, 67, 90),
            OutEvent::note_on(t0 + 10_000_000, 72, 90), // far in the future: discarded at stop
        ]);
        assert_eq!(push_all(&mut tx, &mut evs), 5);
        let sink = RecordingSink {
            clock: Some(clock),
            sent: Vec::new(),
        };
        let timer = Timer::new(clock, sink, rx, shared.clone());
        let handle = std::thread::spawn(move || timer.run());
        while RtStats::get(&shared.stats.written) < 4 || shared.now_frame() < t0 + 6_000 {
            std::thread::sleep(Duration::from_millis(1));
        }
        shared.stop_requested.store(true, Ordering::Release);
        let (sink, stats) = handle.join().unwrap();
        let msgs: Vec<[u8; 3]> = sink.sent.iter().map(|(_, m)| *m).collect();
        // played in order, then the stop's note-offs for the two notes left sounding
        assert_eq!(
            msgs,
            vec![
                [0x90, 60, 100],
                [0x90, 64, 100],
                [0x80, 60, 64],
                [0x90, 67, 90],
                [0x80, 64, 64],
                [0x80, 67, 64]
            ]
        );
        for ((at, _), due) in sink
            .sent
            .iter()
            .zip([t0, t0 + 2_000, t0 + 4_000, t0 + 6_000])
        {
            assert!(*at >= due, "sent at {at} before it was due at {due}");
        }
        assert_eq!(stats.sent, 4);
        assert_eq!(RtStats::get(&shared.stats.stop_offs), 2);
        assert_eq!(RtStats::get(&shared.stats.discarded_at_stop), 1);
        assert!(shared.stopped.load(Ordering::Acquire));
    }
}
