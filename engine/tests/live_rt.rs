//! The real-time callback on a real JACK server (`jackd --no-realtime -d dummy`, its own name),
//! under the counting allocator: sample-accurate stamps in, exact frame offsets out, channel 0
//! only, clock passed as tempo information, everything else filtered, note-offs at stop, and not
//! one allocation inside the callback.
//!
//! Two probe clients stand in for the musician (one plays into the engine, one listens to it:
//! two clients, so the graph has no feedback loop that would delay one side by a period). The
//! test itself plays the decoder thread's part on the two rings.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jack::contrib::ClosureProcessHandler;
use jack::{Client, ClientOptions, Control, MidiIn, MidiOut, ProcessScope, RawMidi};
use midicopilot_engine::backend::jack::open_client;
use midicopilot_engine::live::alloc_guard::{self, CountingAlloc};
use midicopilot_engine::events::NoteSet;
use midicopilot_engine::live::ports::{InputFilter, InputMode};
use midicopilot_engine::live::rt::RtProcess;
use midicopilot_engine::live::{FrameClock, InEvent, InKind, OutEvent, Shared};

/// Timed raw MIDI messages (absolute frame, bytes), shared with a probe's callback.
type Timed = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// jackd under a unique name; stopped with SIGTERM (a SIGKILL would leak jack2's registry).
struct Jackd {
    child: Child,
}

impl Jackd {
    fn start(name: &str) -> Self {
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

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn callback_is_sample_accurate_channel_0_and_allocation_free() {
    let name = format!("mcp-rt-{}", std::process::id());
    std::env::set_var("JACK_DEFAULT_SERVER", &name);
    let _server = Jackd::start(&name);
    assert!(
        alloc_guard::self_test(),
        "the counting allocator is not installed"
    );

    // The engine's client, as backend::jack builds it.
    let client = open_client("mcp-engine").expect("engine client");
    let input = client.register_port("in_t", MidiIn::default()).unwrap();
    let out = client.register_port("out", MidiOut::default()).unwrap();
    let (in_tx, mut in_rx) = rtrb::RingBuffer::<InEvent>::new(1024);
    let (mut out_tx, out_rx) = rtrb::RingBuffer::<OutEvent>::new(1024);
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

    // Probe 1 plays a fixed schedule (absolute frames, set once the clock is known).
    let schedule: Timed = Arc::default();
    let (src, _) = Client::new("probe-src", ClientOptions::NO_START_SERVER).unwrap();
    let mut src_out = src.register_port("out", MidiOut::default()).unwrap();
    let src_sched = schedule.clone();
    let src = src
        .activate_async(
            (),
            ClosureProcessHandler::new(move |_: &Client, ps: &ProcessScope| {
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
            }),
        )
        .unwrap();
    // Probe 2 records what the engine writes, with absolute frames.
    let heard: Timed = Arc::default();
    let (sink, _) = Client::new("probe-sink", ClientOptions::NO_START_SERVER).unwrap();
    let sink_in = sink.register_port("in", MidiIn::default()).unwrap();
    let sink_heard = heard.clone();
    let sink = sink
        .activate_async(
            (),
            ClosureProcessHandler::new(move |_: &Client, ps: &ProcessScope| {
                let start = u64::from(ps.last_frame_time());
                let mut h = sink_heard.lock().unwrap();
                for m in sink_in.iter(ps) {
                    h.push((start + u64::from(m.time), m.bytes.to_vec()));
                }
                Control::Continue
            }),
        )
        .unwrap();
    let c = engine.as_client();
    c.connect_ports_by_name("probe-src:out", "mcp-engine:in_t")
        .unwrap();
    c.connect_ports_by_name("mcp-engine:out", "probe-sink:in")
        .unwrap();
    wait_until("the first cycles", 10, || {
        shared.stats.cycles.load(Ordering::Acquire) > 4
    });

    // Input: notes on two channels, a CC, a pitch bend, clock and start, at exact frames.
    let t0 = shared.now_frame() + 4800;
    let plan: Vec<(u64, Vec<u8>)> = vec![
        (t0, vec![0x90, 60, 100]),     // channel 0 → assigned channel 5
        (t0 + 1, vec![0xB0, 64, 127]), // sustain: filtered
        (t0 + 17, vec![0x93, 64, 90]), // channel 3 → 5
        (t0 + 300, vec![0xF8]),        // clock
        (t0 + 301, vec![0xE0, 0, 64]), // pitch bend: filtered
        (t0 + 555, vec![0x80, 60, 0]), // off
        (t0 + 556, vec![0x93, 64, 0]), // note-on velocity 0 = off
        (t0 + 900, vec![0xFA]),        // start
    ];
    *schedule.lock().unwrap() = plan.clone();
    let mut got = Vec::new();
    wait_until("the input events", 10, || {
        while let Ok(ev) = in_rx.pop() {
            got.push(ev);
        }
        got.len() == 6
    });
    let expect = vec![
        InEvent {
            frame: t0,
            kind: InKind::NoteOn {
                channel: 5,
                pitch: 60,
                velocity: 100,
            },
        },
        InEvent {
            frame: t0 + 17,
            kind: InKind::NoteOn {
                channel: 5,
                pitch: 64,
                velocity: 90,
            },
        },
        InEvent {
            frame: t0 + 300,
            kind: InKind::Clock,
        },
        InEvent {
            frame: t0 + 555,
            kind: InKind::NoteOff {
                channel: 5,
                pitch: 60,
            },
        },
        InEvent {
            frame: t0 + 556,
            kind: InKind::NoteOff {
                channel: 5,
                pitch: 64,
            },
        },
        InEvent {
            frame: t0 + 900,
            kind: InKind::Start,
        },
    ];
    assert_eq!(got, expect, "input stamps must be the exact frames played");
    let s = &shared.stats;
    assert_eq!(s.filtered.load(Ordering::Relaxed), 2);
    assert_eq!(s.notes_in.load(Ordering::Relaxed), 4);
    assert_eq!(s.clock_in.load(Ordering::Relaxed), 2);

    // Output: events at exact frames, channel 0 whatever the message said.
    let t1 = shared.now_frame() + 4800;
    let outs = [
        OutEvent::note_on(t1, 67, 90),
        OutEvent {
            frame: t1 + 5,
            msg: [0x99, 72, 80],
        }, // says channel 9: must go out on 0
        OutEvent::note_off(t1 + 1000, 67),
        OutEvent::note_off(t1 + 1000, 72),
        OutEvent::note_on(t1 + 2500, 70, 64), // left sounding: stop must close it
    ];
    for ev in outs {
        out_tx.push(ev).unwrap();
    }
    wait_until("the output events", 10, || {
        heard.lock().unwrap().len() == outs.len()
    });
    let got: Vec<(u64, Vec<u8>)> = heard.lock().unwrap().clone();
    let want: Vec<(u64, Vec<u8>)> = vec![
        (t1, vec![0x90, 67, 90]),
        (t1 + 5, vec![0x90, 72, 80]),
        (t1 + 1000, vec![0x80, 67, 64]),
        (t1 + 1000, vec![0x80, 72, 64]),
        (t1 + 2500, vec![0x90, 70, 64]),
    ];
    assert_eq!(
        got, want,
        "output must be written at its exact frames, on channel 0"
    );
    assert_eq!(s.written_late.load(Ordering::Relaxed), 0);

    // Stop: a note-off for the sounding note, queued events discarded, then `stopped`.
    out_tx
        .push(OutEvent::note_on(shared.now_frame() + 48_000, 50, 64))
        .unwrap();
    shared.stop_requested.store(true, Ordering::Release);
    wait_until("stopped", 10, || shared.stopped.load(Ordering::Acquire));
    std::thread::sleep(Duration::from_millis(50));
    let tail: Vec<Vec<u8>> = heard.lock().unwrap()[outs.len()..]
        .iter()
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(tail, vec![vec![0x80, 70, 64]]);
    assert_eq!(s.stop_offs.load(Ordering::Relaxed), 1);
    assert_eq!(s.discarded_at_stop.load(Ordering::Relaxed), 1);

    // And through all of it the callback never touched the allocator.
    assert!(s.cycles.load(Ordering::Relaxed) > 20);
    assert_eq!(alloc_guard::rt_allocations(), 0, "the callback allocated");
    assert!(s.callback_ns.count() > 0);

    drop(sink);
    drop(src);
    let _ = engine.deactivate();
}
