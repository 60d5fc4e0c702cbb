//! The real-time callback on a real JACK server, under the counting allocator, one phase a test:
//! sample-accurate stamps in with everything but notes and clock filtered, exact frame offsets
//! out on channel 0 only, note-offs at stop — and in each, not one allocation inside the
//! callback. The rig is tests/support/live_rig.rs.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use midicopilot_engine::live::alloc_guard::CountingAlloc;
use midicopilot_engine::live::{InEvent, InKind, OutEvent};
use support::live_rig::{wait_until, Rig};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn input_is_stamped_at_its_exact_frames_and_filtered() {
    let mut rig = Rig::start("in");
    // Notes on two channels, a CC, a pitch bend, clock and start, at exact frames.
    let t0 = rig.shared.now_frame() + 4800;
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
    *rig.schedule.lock().unwrap() = plan;
    let mut got = Vec::new();
    wait_until("the input events", 10, || {
        while let Ok(ev) = rig.from_engine.pop() {
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
    let s = &rig.shared.stats;
    assert_eq!(s.filtered.load(Ordering::Relaxed), 2);
    assert_eq!(s.notes_in.load(Ordering::Relaxed), 4);
    assert_eq!(s.clock_in.load(Ordering::Relaxed), 2);
    rig.finish();
}

#[test]
fn output_goes_out_at_its_exact_frames_on_channel_0() {
    let mut rig = Rig::start("out");
    let t1 = rig.shared.now_frame() + 4800;
    let outs = [
        OutEvent::note_on(t1, 67, 90),
        OutEvent {
            frame: t1 + 5,
            msg: [0x99, 72, 80],
        }, // says channel 9: must go out on 0
        OutEvent::note_off(t1 + 1000, 67),
        OutEvent::note_off(t1 + 1000, 72),
        OutEvent::note_on(t1 + 2500, 70, 64),
    ];
    for ev in outs {
        rig.to_engine.push(ev).unwrap();
    }
    wait_until("the output events", 10, || {
        rig.heard.lock().unwrap().len() == outs.len()
    });
    let got: Vec<(u64, Vec<u8>)> = rig.heard.lock().unwrap().clone();
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
    assert_eq!(rig.shared.stats.written_late.load(Ordering::Relaxed), 0);
    rig.finish();
}

#[test]
fn stop_closes_the_sounding_notes_and_discards_the_queue() {
    let mut rig = Rig::start("stop");
    // One note closed, one left sounding: stop must close that one only.
    let t1 = rig.shared.now_frame() + 4800;
    let outs = [
        OutEvent::note_on(t1, 67, 90),
        OutEvent::note_off(t1 + 1000, 67),
        OutEvent::note_on(t1 + 2500, 70, 64),
    ];
    for ev in outs {
        rig.to_engine.push(ev).unwrap();
    }
    wait_until("the output events", 10, || {
        rig.heard.lock().unwrap().len() == outs.len()
    });
    // A note-off for the sounding note, queued events discarded, then `stopped`.
    let later = rig.shared.now_frame() + 48_000;
    rig.to_engine
        .push(OutEvent::note_on(later, 50, 64))
        .unwrap();
    rig.shared.stop_requested.store(true, Ordering::Release);
    wait_until("stopped", 10, || rig.shared.stopped.load(Ordering::Acquire));
    std::thread::sleep(Duration::from_millis(50));
    let tail: Vec<Vec<u8>> = rig.heard.lock().unwrap()[outs.len()..]
        .iter()
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(tail, vec![vec![0x80, 70, 64]]);
    let s = &rig.shared.stats;
    assert_eq!(s.stop_offs.load(Ordering::Relaxed), 1);
    assert_eq!(s.discarded_at_stop.load(Ordering::Relaxed), 1);
    rig.finish();
}
