//! The band's side of the session: queued human events, sanitized, into the context.

use anyhow::Result;

use super::Session;
use crate::events::{EventKind, NoteEvent};

impl Session {
    /// Sanitize the queued human events (docs/FORMAT.md's rules for live input) and insert them.
    /// Returns whether the context changed.
    pub(super) fn apply_human(&mut self) -> Result<bool> {
        if self.queued.is_empty() {
            return Ok(false);
        }
        let queued = std::mem::take(&mut self.queued);
        let floor = self.ctx.base_tick();
        let mut batch: Vec<NoteEvent> = Vec::with_capacity(queued.len());
        for ev in queued {
            if ev.channel == 0 || ev.channel > 15 || ev.pitch > 127 {
                self.stats.events_ignored += 1;
                continue;
            }
            let tick = ev.tick.max(self.last_human_tick).max(floor);
            self.last_human_tick = tick;
            let slot = usize::from(ev.channel) * 128 + usize::from(ev.pitch);
            match ev.kind {
                EventKind::On { velocity_bin } => {
                    let mut bin = velocity_bin.min(self.engine.params.velocity_bins - 1);
                    if self.cfg.band_velocity_as_trained {
                        bin = self.engine.band_bins[usize::from(bin)];
                    }
                    match self.human_on[slot] {
                        _ if tick < self.human_block[slot] => {
                            self.stats.events_ignored += 1;
                            continue;
                        }
                        Some(on) if on == tick => {
                            // A second strike in one instant: the first wins (rule 9).
                            self.stats.events_ignored += 1;
                            continue;
                        }
                        Some(_) => batch.push(NoteEvent::off(tick, ev.channel, ev.pitch)),
                        None => {}
                    }
                    batch.push(NoteEvent::on(tick, ev.channel, ev.pitch, bin));
                    self.human_on[slot] = Some(tick);
                    self.stats.events_in += 1;
                }
                EventKind::Off => match self.human_on[slot] {
                    None => self.stats.events_ignored += 1,
                    Some(on) => {
                        // An off in its note's own instant moves one tick later (rule 8).
                        let at = if on == tick { tick + 1 } else { tick };
                        self.human_block[slot] = at;
                        batch.push(NoteEvent::off(at, ev.channel, ev.pitch));
                        self.human_on[slot] = None;
                        self.stats.events_in += 1;
                    }
                },
            }
        }
        // A deferred off may share its tick with a later strike of the same pitch; the sort puts
        // the off first, which is the order the language needs.
        batch.sort();
        if batch.is_empty() {
            return Ok(false);
        }
        self.ctx.insert_human(&batch)?;
        Ok(true)
    }
}
