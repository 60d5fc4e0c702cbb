//! The JACK process callback (JACK only): the only code that runs on JACK's real-time thread.
//!
//! Per cycle, in this order:
//! 1. note-offs that found the input ring full last cycle are pushed again;
//! 2. every input port's messages: notes (mapped by the input's mode, see [`super::ports`]) and
//!    clock messages are stamped with their absolute frame (`last_frame_time() + offset`) and
//!    pushed to the decoder thread; everything else is counted and dropped;
//! 3. the transport position is copied into [`super::TransportCell`] (no allocation);
//! 4. output: events from the decoder thread (sorted by frame) that are due before the cycle
//!    ends are written at their frame's offset on channel 0 (a late one at offset 0); a write
//!    the port refuses is counted and retried next cycle. After a stop request: a note-off for
//!    every channel-0 note still sounding, the queue discarded, and `stopped` set in the first
//!    cycle that had nothing left to write.
//! 5. the callback's own run time goes into a lock-free histogram.
//!
//! It never allocates (it runs inside an [`RtSection`]; the report counts any allocation and
//! the tests require zero), locks, blocks, logs or decodes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use jack::{Client, Control, MidiIn, MidiOut, Port, ProcessHandler, ProcessScope, RawMidi};

use super::alloc_guard::RtSection;
use super::ports::{Classified, InputFilter, InputMode};
use super::stats::RtStats;
use super::{FrameClock, InEvent, InKind, OutEvent, Shared, TransportSnapshot, MODEL_CHANNEL};
use crate::events::NoteSet;

pub struct RtProcess {
    pub inputs: Vec<(Port<MidiIn>, InputMode)>,
    pub out: Port<MidiOut>,
    pub to_decoder: rtrb::Producer<InEvent>,
    pub from_decoder: rtrb::Consumer<OutEvent>,
    pub transport: Option<jack::Transport>,
    pub shared: Arc<Shared>,
    pub filter: InputFilter,
    /// Channel-0 notes sounding on `out` (for the note-offs at stop).
    pub sounding: NoteSet,
    pub clock: FrameClock,
}

impl ProcessHandler for RtProcess {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        let t0 = Instant::now();
        let rt = RtSection::enter();
        let stats = &self.shared.stats;
        let start = self.clock.extend(ps.last_frame_time());
        let n = ps.n_frames();
        let end = start + u64::from(n);

        // 1. note-offs the ring refused last cycle
        if self.filter.has_pending_offs() {
            let ring = &mut self.to_decoder;
            self.filter.retry_offs(|channel, pitch| {
                let kind = InKind::NoteOff { channel, pitch };
                let ok = ring.push(InEvent { frame: start, kind }).is_ok();
                if ok {
                    RtStats::bump(&stats.notes_in);
                }
                ok
            });
        }

        // 2. inputs
        for (port, mode) in &self.inputs {
            for raw in port.iter(ps) {
                let frame = start + u64::from(raw.time);
                RtStats::bump(&stats.received);
                let classified = self.filter.classify(*mode, raw.bytes);
                let pushed = match classified {
                    Classified::Pass(kind) => self.to_decoder.push(InEvent { frame, kind }).is_ok(),
                    _ => false,
                };
                classified.count(&mut self.filter, stats, pushed);
            }
        }

        // 3. transport
        if let Some(t) = &self.transport {
            if let Ok(sp) = t.query() {
                let rolling = sp.state == jack::TransportState::Rolling;
                if let Some(bbt) = sp.pos.bbt() {
                    // JACK beats are of `sig_denom` notes; the session counts quarters.
                    let per_quarter = f64::from(bbt.sig_denom) / 4.0;
                    let beats = (bbt.bar as f64 - 1.0) * f64::from(bbt.sig_num)
                        + (bbt.beat as f64 - 1.0)
                        + bbt.tick as f64 / bbt.ticks_per_beat;
                    self.shared.transport.publish(TransportSnapshot {
                        frame: start,
                        quarters: beats / per_quarter,
                        qpm: bbt.bpm / per_quarter,
                        rolling,
                    });
                    if rolling {
                        RtStats::bump(&stats.transport_cycles);
                    }
                }
            }
        }

        // 4. output
        let mut writer = self.out.writer(ps);
        if self.shared.stop_requested.load(Ordering::Acquire) {
            if !self.shared.stopped.load(Ordering::Relaxed) {
                let wrote_nothing = self.sounding.is_empty();
                for pitch in 0..128u8 {
                    if self.sounding.contains(MODEL_CHANNEL, pitch) {
                        let msg = [0x80 | MODEL_CHANNEL, pitch, 64];
                        if writer
                            .write(&RawMidi {
                                time: 0,
                                bytes: &msg,
                            })
                            .is_ok()
                        {
                            self.sounding.remove(MODEL_CHANNEL, pitch);
                            RtStats::bump(&stats.stop_offs);
                        } else {
                            RtStats::bump(&stats.out_buffer_full);
                        }
                    }
                }
                while self.from_decoder.pop().is_ok() {
                    RtStats::bump(&stats.discarded_at_stop);
                }
                // `stopped` only in a cycle that wrote nothing: the note-offs of the cycle
                // before have reached the clients downstream by then.
                if wrote_nothing {
                    self.shared.stopped.store(true, Ordering::Release);
                }
            }
        } else {
            // JACK wants non-decreasing offsets within a cycle.
            let mut last_offset = 0u32;
            while let Ok(ev) = self.from_decoder.peek() {
                if ev.frame >= end {
                    break;
                }
                let ev = *ev;
                let late = ev.frame < start;
                let offset = if late { 0 } else { (ev.frame - start) as u32 }.max(last_offset);
                // Channel 0 whatever the decoder thread said.
                let msg = [
                    (ev.msg[0] & 0xF0) | MODEL_CHANNEL,
                    ev.msg[1] & 0x7f,
                    ev.msg[2] & 0x7f,
                ];
                if writer
                    .write(&RawMidi {
                        time: offset,
                        bytes: &msg,
                    })
                    .is_err()
                {
                    RtStats::bump(&stats.out_buffer_full);
                    break; // retried next cycle
                }
                let _ = self.from_decoder.pop();
                last_offset = offset;
                if msg[0] & 0xF0 == 0x90 && msg[2] > 0 {
                    self.sounding.insert(MODEL_CHANNEL, msg[1]);
                } else {
                    self.sounding.remove(MODEL_CHANNEL, msg[1]);
                }
                RtStats::bump(&stats.written);
                if late {
                    RtStats::bump(&stats.written_late);
                    stats
                        .late_frames_max
                        .fetch_max(start - ev.frame, Ordering::Relaxed);
                }
            }
        }

        self.shared.cycle_frames.store(n, Ordering::Relaxed);
        self.shared.cycle_start.store(start, Ordering::Release);
        RtStats::bump(&stats.cycles);
        drop(rt);
        stats.callback_ns.record(t0.elapsed().as_nanos() as u64);
        Control::Continue
    }
}
