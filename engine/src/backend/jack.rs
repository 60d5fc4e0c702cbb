//! The `jack` backend: the live client (see [`crate::live`] for its two threads).
//!
//! Life of a run: open the client (never starting a server: `NO_START_SERVER`, and the exact
//! name, so a second engine cannot silently become `midicopilot-01`), register the ports, build
//! the rings, activate, wait for the first cycle (tick 0 of the session is its end), start the
//! decoder thread, then wait for SIGINT/SIGTERM, `--run-seconds`, the server shutting down or
//! the decoder failing. Stopping: the callback is asked to write a note-off for every sounding
//! channel-0 note in its next cycle and we wait until it has (where the server is still there),
//! then the decoder thread is joined and the client deactivated. The report is built last.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use jack::{Client, ClientOptions, ClientStatus, Control, MidiIn, MidiOut, NotificationHandler};

use crate::events::NoteSet;
use crate::live::alloc_guard;
use crate::live::clock::{TempoMap, TempoSource};
use crate::live::ports::{InputFilter, InputSpec};
use crate::live::report::{self, LiveReport};
use crate::live::rt::RtProcess;
use crate::live::supervise::{wait_for_stop, Decoder, StopWhen, Timing};
use crate::live::switch::Switcher;
use crate::live::{FrameClock, InEvent, OutEvent, Shared, INPUT_RING, OUTPUT_RING};
use crate::session::Session;

#[derive(Debug, Clone)]
pub struct JackOptions {
    pub client_name: String,
    pub inputs: Vec<InputSpec>,
    pub tempo_source: TempoSource,
    pub bpm: f64,
    pub release_horizon_ms: f64,
    pub run_seconds: Option<f64>,
    /// Flush prefill tokens per idle call of the decoder thread.
    pub idle_chunk: usize,
}

/// The server's notifications: set flags only (async-signal-safe).
struct Notifications {
    shared: Arc<Shared>,
}

impl NotificationHandler for Notifications {
    unsafe fn shutdown(&mut self, _status: ClientStatus, _reason: &str) {
        self.shared.server_gone.store(true, Ordering::Release);
    }

    fn xrun(&mut self, _: &Client) -> Control {
        self.shared.xruns.fetch_add(1, Ordering::Relaxed);
        Control::Continue
    }
}

/// The server this process talks to, for messages.
pub fn server_label() -> String {
    std::env::var("JACK_DEFAULT_SERVER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// Open the client, or one clear line saying why not.
pub fn open_client(name: &str) -> Result<Client> {
    // libjack's own messages ("Cannot connect to server socket …") go to its error callback;
    // keep them off stderr: the error below is the one line.
    jack::set_logger(jack::LoggerType::None);
    let options = ClientOptions::NO_START_SERVER | ClientOptions::USE_EXACT_NAME;
    match Client::new(name, options) {
        Ok((client, _status)) => Ok(client),
        Err(jack::Error::ClientError(status)) if status.contains(ClientStatus::NAME_NOT_UNIQUE) => {
            bail!(
                "a JACK client named '{name}' is already on server '{}' (another engine?): stop \
                 it or choose --client-name",
                server_label()
            )
        }
        Err(jack::Error::LibraryError(e)) => {
            bail!("cannot load libjack ({e}): install JACK (Debian: apt-get install jackd2)")
        }
        Err(_) => bail!(
            "no JACK server running (server '{}'): start jackd or PipeWire-JACK first, or choose \
             one with --server / JACK_DEFAULT_SERVER",
            server_label()
        ),
    }
}

/// Play live until stopped; returns the report (and whether the stop was a failure).
pub fn run(session: Session, opts: &JackOptions, signal: Arc<AtomicBool>) -> Result<LiveReport> {
    run_with_control(session, opts, signal, None, None)
}

/// [`run`] with the control channel (live::control): `control` switches songs in the decoder
/// thread, `command_stop` is set by a stop command.
pub fn run_with_control(
    session: Session,
    opts: &JackOptions,
    signal: Arc<AtomicBool>,
    control: Option<Switcher>,
    command_stop: Option<Arc<AtomicBool>>,
) -> Result<LiveReport> {
    let client = open_client(&opts.client_name)?;
    let rate = client.sample_rate();
    let tpq = session.context().params().ticks_per_quarter;
    // Checked before anything runs, so a bad --bpm is an error, not a panic later.
    TempoMap::new(opts.bpm, tpq, rate.max(1), 0).map_err(|e| anyhow::anyhow!("--bpm: {e}"))?;

    let mut inputs = Vec::with_capacity(opts.inputs.len());
    for spec in &opts.inputs {
        let port = client
            .register_port(&spec.port_name(), MidiIn::default())
            .with_context(|| format!("registering the input port {}", spec.port_name()))?;
        inputs.push((port, spec.mode));
    }
    let out = client
        .register_port("out", MidiOut::default())
        .context("registering the port out")?;
    let (in_tx, in_rx) = rtrb::RingBuffer::<InEvent>::new(INPUT_RING);
    let (out_tx, out_rx) = rtrb::RingBuffer::<OutEvent>::new(OUTPUT_RING);
    let shared = Arc::new(Shared::default());
    let transport = (opts.tempo_source == TempoSource::Transport).then(|| client.transport());
    alloc_guard::self_test();
    let process = RtProcess {
        inputs,
        out,
        to_decoder: in_tx,
        from_decoder: out_rx,
        transport,
        shared: shared.clone(),
        filter: InputFilter::default(),
        sounding: NoteSet::default(),
        clock: FrameClock::default(),
    };
    let client_name = client.name().to_string();
    let buffer_frames = client.buffer_size();
    let active = client
        .activate_async(
            Notifications {
                shared: shared.clone(),
            },
            process,
        )
        .context("activating the JACK client")?;
    let started = Instant::now();

    // Tick 0 is the end of the first cycle.
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.stats.cycles.load(Ordering::Acquire) == 0 {
        if shared.server_gone.load(Ordering::Acquire) {
            bail!("the JACK server shut down while the client was starting");
        }
        if Instant::now() > deadline {
            bail!("the JACK server ran no process cycle in 10 s (is its driver running?)");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let timing = Timing {
        tempo_source: opts.tempo_source,
        bpm: opts.bpm,
        rate,
        release_horizon_ms: opts.release_horizon_ms,
        idle_chunk: opts.idle_chunk,
    };
    let decoder = Decoder::start(session, timing, in_rx, out_tx, shared.clone(), control)?;
    let when = StopWhen {
        signal: &signal,
        command: command_stop.as_deref(),
        run_seconds: opts.run_seconds,
        started,
    };
    let reason = wait_for_stop(&when, &shared, &decoder);

    // Note-offs for everything sounding, written by the callback in its next cycle.
    shared.stop_requested.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !shared.stopped.load(Ordering::Acquire)
        && !shared.server_gone.load(Ordering::Acquire)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    // One more cycle, so the clients downstream have read the last note-offs before our ports
    // go away.
    let cycles = shared.stats.cycles.load(Ordering::Acquire);
    let deadline = Instant::now() + Duration::from_millis(500);
    while shared.stats.cycles.load(Ordering::Acquire) < cycles + 2
        && !shared.server_gone.load(Ordering::Acquire)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = decoder.stop()?;
    let seconds = started.elapsed().as_secs_f64();
    if !shared.server_gone.load(Ordering::Acquire) {
        // Errors here mean the server is going away; nothing is sounding any more either way.
        let _ = active.deactivate();
    } else {
        // The server is gone: deactivating would talk to it. Let the process exit close it.
        std::mem::forget(active);
    }
    let inputs = opts.inputs.iter().map(|s| s.port_name()).collect();
    Ok(report::build(
        &shared,
        stats,
        client_name,
        rate,
        buffer_frames,
        inputs,
        seconds,
        reason,
    ))
}
