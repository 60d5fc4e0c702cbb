//! A real JACK server for the real-time tests (`jackd --no-realtime -d dummy`, its own name) and
//! a rig around the engine's callback: two probe clients stand in for the musician (one plays
//! into the engine, one listens to it: two clients, so the graph has no feedback loop that would
//! delay one side by a period), and the test plays the decoder thread's part on the two rings.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jack::contrib::ClosureProcessHandler;
use jack::{AsyncClient, Client, ClientOptions, Control, MidiIn, MidiOut, ProcessScope, RawMidi};
use midicopilot_engine::backend::jack::open_client;
use midicopilot_engine::events::NoteSet;
use midicopilot_engine::live::alloc_guard;
use midicopilot_engine::live::ports::{InputFilter, InputMode};
use midicopilot_engine::live::rt::RtProcess;
use midicopilot_engine::live::{FrameClock, InEvent, OutEvent, Shared};

/// Timed raw MIDI messages (absolute frame, bytes), shared with a probe's callback.
pub type Timed = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// jackd under a unique name; stopped with SIGTERM (a SIGKILL would leak jack2's registry).
pub struct Jackd {
    child: Child,
}

impl Jackd {
    pub fn start(name: &str) -> Self {
        let child = Command::new("jackd")
            .args([
                "-n",
                name,
                "--no-realtime",
                "-d",
                "dummy",
                "-r",
                "48000",
                "-p",
                "256",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("jackd is not installed (Debian: apt-get install jackd2)");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok((c, _)) = Client::new("probe-ready", ClientOptions::NO_START_SERVER) {
                drop(c);
                break;
            }
            assert!(Instant::now() < deadline, "jackd {name} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child }
    }
}

impl Drop for Jackd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A probe's process callback.
type Callback = Box<dyn FnMut(&Client, &ProcessScope) -> Control + Send>;
type Probe = AsyncClient<(), ClosureProcessHandler<(), Callback>>;

/// One server at a time: the server is chosen through the environment (JACK_DEFAULT_SERVER),
/// which all the tests of a binary share.
static ONE_SERVER: Mutex<()> = Mutex::new(());

/// The engine's callback on its own server, with input `in_t` assigned to channel 5, the two
/// probes connected, and the first cycles run.
pub struct Rig {
    pub shared: Arc<Shared>,
    /// What the callback passes to the decoder thread.
    pub from_engine: rtrb::Consumer<InEvent>,
    /// What the decoder thread hands the callback.
    pub to_engine: rtrb::Producer<OutEvent>,
    /// What probe 1 plays (absolute frames; set once the clock is known).
    pub schedule: Timed,
    /// What probe 2 heard, with absolute frames.
    pub heard: Timed,
    // Dropped in this order: the probes, the engine, then the server.
    sink: Probe,
    src: Probe,
    engine: AsyncClient<(), RtProcess>,
    _server: Jackd,
    _one: MutexGuard<'static, ()>,
}

impl Rig {
    pub fn start(test: &str) -> Self {
        let one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
        let name = format!("mcp-rt-{}-{test}", std::process::id());
        std::env::set_var("JACK_DEFAULT_SERVER", &name);
        let server = Jackd::start(&name);
        assert!(
            alloc_guard::self_test(),
            "the counting allocator is not installed"
        );

        // The engine's client, as backend::jack builds it.
        let client = open_client("mcp-engine").expect("engine client");
        let input = client.register_port("in_t", MidiIn::default()).unwrap();
        let out = client.register_port("out", MidiOut::default()).unwrap();
        let (in_tx, from_engine) = rtrb::RingBuffer::<InEvent>::new(1024);
        let (to_engine, out_rx) = rtrb::RingBuffer::<OutEvent>::new(1024);
        let shared = Arc::new(Shared::default());
        let process = RtProcess {
            inputs: vec![(input, InputMode::Assign(5))],
            out,
            to_decoder: in_tx,
            from_decoder: out_rx,
            transport: None,
            shared: shared.clone(),
            filter: InputFilter::default(),
            sounding: NoteSet::default(),
            clock: FrameClock::default(),
        };
        let engine = client.activate_async((), process).unwrap();

        let schedule: Timed = Arc::default();
        let (src, _) = Client::new("probe-src", ClientOptions::NO_START_SERVER).unwrap();
        let mut src_out = src.register_port("out", MidiOut::default()).unwrap();
        let src_sched = schedule.clone();
        let play: Callback = Box::new(move |_: &Client, ps: &ProcessScope| {
            let start = u64::from(ps.last_frame_time());
            let end = start + u64::from(ps.n_frames());
            let mut w = src_out.writer(ps);
            if let Ok(mut s) = src_sched.try_lock() {
                while let Some((f, msg)) = s.first().cloned() {
                    if f >= end {
                        break;
                    }
                    let _ = w.write(&RawMidi {
                        time: (f.max(start) - start) as u32,
                        bytes: &msg,
                    });
                    s.remove(0);
                }
            }
            Control::Continue
        });
        let src = src
            .activate_async((), ClosureProcessHandler::new(play))
            .unwrap();
        let heard: Timed = Arc::default();
        let (sink, _) = Client::new("probe-sink", ClientOptions::NO_START_SERVER).unwrap();
        let sink_in = sink.register_port("in", MidiIn::default()).unwrap();
        let sink_heard = heard.clone();
        let listen: Callback = Box::new(move |_: &Client, ps: &ProcessScope| {
            let start = u64::from(ps.last_frame_time());
            let mut h = sink_heard.lock().unwrap();
            for m in sink_in.iter(ps) {
                h.push((start + u64::from(m.time), m.bytes.to_vec()));
            }
            Control::Continue
        });
        let sink = sink
            .activate_async((), ClosureProcessHandler::new(listen))
            .unwrap();
        let c = engine.as_client();
        c.connect_ports_by_name("probe-src:out", "mcp-engine:in_t")
            .unwrap();
        c.connect_ports_by_name("mcp-engine:out", "probe-sink:in")
            .unwrap();
        wait_until("the first cycles", 10, || {
            shared.stats.cycles.load(Ordering::Acquire) > 4
        });
        Rig {
            shared,
            from_engine,
            to_engine,
            schedule,
            heard,
            sink,
            src,
            engine,
            _server: server,
            _one: one,
        }
    }

    /// Through all of the test the callback ran and never touched the allocator; then the
    /// clients close.
    pub fn finish(self) {
        let s = &self.shared.stats;
        assert!(s.cycles.load(Ordering::Relaxed) > 20);
        assert_eq!(alloc_guard::rt_allocations(), 0, "the callback allocated");
        assert!(s.callback_ns.count() > 0);
        let Rig {
            sink, src, engine, ..
        } = self;
        drop(sink);
        drop(src);
        let _ = engine.deactivate();
    }
}
