//! The input side: what midir's callbacks do with a message (the same filter and ring as JACK's).

use std::time::Duration;

use crate::live::ports::{Classified, InputFilter, InputMode};
use crate::live::stats::RtStats;
use crate::live::{InEvent, InKind, Shared};

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
