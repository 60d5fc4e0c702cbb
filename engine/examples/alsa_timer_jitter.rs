//! How late the ALSA backend's output timer sends events on this machine (docs/RIGS.md).
//!
//!     cargo run --release --example alsa_timer_jitter -- [EVENTS] [MEAN_GAP_MS] [rt]
//!
//! The timer thread of `midicopilot-engine alsa` (backend::alsa::Timer) sleeps until each event
//! is due and hands it to midir, which sends it at once. This runs the same timer with a sink
//! that records when it was called (no ALSA needed), fed through the same ring a decoder thread
//! would use, with events due at random gaps, and prints the lateness (send time − due time).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use midicopilot_engine::backend::alsa::{MicroClock, RecordingSink, Timer};
use midicopilot_engine::live::{OutEvent, Shared};
use rand::{Rng, SeedableRng};

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let mean_gap_ms: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let realtime = args.next().as_deref() == Some("rt");
    let clock = MicroClock::new();
    let shared = Arc::new(Shared::default());
    let (mut tx, rx) = rtrb::RingBuffer::<OutEvent>::new(8192);
    let sink = RecordingSink {
        clock: Some(clock),
        sent: Vec::with_capacity(events),
    };
    let mut timer = Timer::new(clock, sink, rx, shared.clone());
    timer.realtime_priority = realtime.then_some(65);
    let handle = std::thread::spawn(move || timer.run());

    // All queued up front (the ring holds them), so what is measured is the timer's wake-up
    // alone, not a late producer.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut due = clock.now() + 100_000;
    let mut dues = Vec::with_capacity(events);
    for i in 0..events {
        due += (rng.random::<f64>() * 2.0 * mean_gap_ms * 1e3) as u64;
        let pitch = 36 + (i % 48) as u8;
        let ev = if i % 2 == 0 {
            OutEvent::note_on(due, pitch, 100)
        } else {
            OutEvent::note_off(due, pitch - 1)
        };
        if tx.push(ev).is_err() {
            eprintln!("at most 8192 events");
            std::process::exit(2);
        }
        dues.push(due);
    }
    clock.sleep_until(due + 20_000);
    shared.stop_requested.store(true, Ordering::Release);
    let (sink, stats) = handle.join().expect("timer thread");
    let mut late: Vec<u64> = sink
        .sent
        .iter()
        .zip(&dues)
        .map(|((at, _), d)| at.saturating_sub(*d))
        .collect();
    let early = sink
        .sent
        .iter()
        .zip(&dues)
        .filter(|((at, _), d)| at < *d)
        .count();
    late.sort_unstable();
    let q = |p: f64| late[((late.len() - 1) as f64 * p).round() as usize];
    println!(
        "{} events, mean gap {mean_gap_ms} ms, SCHED_FIFO {}: lateness p50 {} µs, p90 {} µs, p99 {} µs, \
         max {} µs; {} sent early; {} at least 1 ms late (timer's own count {})",
        late.len(),
        stats.realtime,
        q(0.5),
        q(0.9),
        q(0.99),
        late[late.len() - 1],
        early,
        late.iter().filter(|l| **l >= 1000).count(),
        stats.late_1ms,
    );
}
