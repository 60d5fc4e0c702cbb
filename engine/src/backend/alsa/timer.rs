//! The output side: a timer thread that sleeps until each released event is due and sends it
//! (see the `alsa` backend's module doc).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::TICK;
use crate::events::NoteSet;
use crate::live::stats::{Histogram, RtStats};
use crate::live::{OutEvent, Shared, MODEL_CHANNEL};

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
