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
        let classified = self.filter.classify(mode, bytes);
        let Classified::Pass(kind) = classified else {
            classified.count(&mut self.filter, stats, false);
            return;
        };
        let mut pushed = self.to_decoder.push(InEvent { frame, kind }).is_ok();
        if !pushed && matches!(kind, InKind::NoteOff { .. }) {
            // Not a real-time thread: a note-off waits for room rather than hang.
            RtStats::bump(&stats.deferred_offs);
            for _ in 0..5000 {
                std::thread::sleep(Duration::from_micros(200));
                if self.to_decoder.push(InEvent { frame, kind }).is_ok() {
                    pushed = true;
                    break;
                }
            }
            if pushed {
                RtStats::bump(&stats.notes_in);
            }
            return;
        }
        classified.count(&mut self.filter, stats, pushed);
    }
}
