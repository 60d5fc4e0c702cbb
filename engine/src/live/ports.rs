//! The client's ports and what each input does with the channels it receives.
//!
//! One JACK client (`midicopilot` by default) with one MIDI input per `--input` (`in_<name>`;
//! with no `--input`, a single pass-through input named `in`) and one MIDI output `out`.
//!
//! Input modes:
//! - `NAME=CH` (1–15): everything the input receives is the player on channel CH, whatever
//!   channel the instrument sends on.
//! - `NAME=pass` (the default): the instrument's channels are kept, except channel 0: a keyboard
//!   left on its factory setting (MIDI channel 1 = channel 0) is the model's channel, so it is
//!   **remapped to channel 1** ([`PASS_CHANNEL_0_TO`]). It is heard by the model as a player,
//!   never confused with the model's own notes, and never dropped.
//!
//! [`InputFilter`] keeps each mapped (channel, pitch) consistent for the decoder thread: a
//! note-on of a sounding note is merged, a note-off of a silent one is ignored, a note-on that
//! found the ring full is forgotten (so its note-off is ignored too) and a note-off that found
//! the ring full is retried in the next cycle. The context therefore never holds a hanging human
//! note, whatever was dropped.

use anyhow::{bail, Result};

use super::stats::RtStats;
use super::{InKind, MODEL_CHANNEL};
use crate::events::NoteSet;

/// Where a pass-through input's channel 0 goes.
pub const PASS_CHANNEL_0_TO: u8 = 1;

/// The default input when none is given.
pub const DEFAULT_INPUT: &str = "in";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// Keep the instrument's channels (0 → [`PASS_CHANNEL_0_TO`]).
    Pass,
    /// Everything is this channel (1–15).
    Assign(u8),
}

impl InputMode {
    #[inline]
    pub fn map_channel(self, channel: u8) -> u8 {
        match self {
            InputMode::Pass if channel == MODEL_CHANNEL => PASS_CHANNEL_0_TO,
            InputMode::Pass => channel,
            InputMode::Assign(c) => c,
        }
    }
}

/// One `--input NAME[=CH|=pass]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub name: String,
    pub mode: InputMode,
    /// The default input's port is `in`, the others `in_<name>`.
    pub default: bool,
}

impl InputSpec {
    pub fn default_input() -> Self {
        Self {
            name: DEFAULT_INPUT.into(),
            mode: InputMode::Pass,
            default: true,
        }
    }

    /// Parse `NAME`, `NAME=pass` or `NAME=CH` (CH 1–15).
    pub fn parse(text: &str) -> Result<Self> {
        let (name, mode) = match text.split_once('=') {
            None => (text, InputMode::Pass),
            Some((name, "pass")) => (name, InputMode::Pass),
            Some((name, ch)) => match ch.parse::<u8>() {
                Ok(c) if (1..=15).contains(&c) => (name, InputMode::Assign(c)),
                _ => bail!(
                    "--input {text}: '{ch}' is not 'pass' or a channel 1–15 (0 is the model's)"
                ),
            },
        };
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            bail!("--input {text}: '{name}' is not a port name (1–32 of A–Z a–z 0–9 _ -)");
        }
        Ok(Self {
            name: name.into(),
            mode,
            default: false,
        })
    }

    pub fn port_name(&self) -> String {
        if self.default {
            DEFAULT_INPUT.into()
        } else {
            format!("in_{}", self.name)
        }
    }
}

/// Parse every `--input`; none gives the default pass-through input. Names must be unique.
pub fn parse_inputs(specs: &[String]) -> Result<Vec<InputSpec>> {
    if specs.is_empty() {
        return Ok(vec![InputSpec::default_input()]);
    }
    let mut out: Vec<InputSpec> = Vec::with_capacity(specs.len());
    for s in specs {
        let spec = InputSpec::parse(s)?;
        if out.iter().any(|o| o.name == spec.name) {
            bail!("--input {s}: the name '{}' is used twice", spec.name);
        }
        out.push(spec);
    }
    Ok(out)
}

/// What one raw message is, after the input's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// A note or clock event to pass on.
    Pass(InKind),
    /// Not a note or clock message (CC, bend, SysEx, …), or malformed.
    Filtered,
    /// A note-on of a note already sounding on that mapped channel.
    Merged,
    /// A note-off of a note that is not sounding.
    Unmatched,
}

impl Classified {
    /// Count what became of this message in both backends' input sides. `pushed`: whether a
    /// passed event went into the decoder's ring. A refused note-on is forgotten by the filter
    /// (the note never sounded for the model); a refused note-off waits in it for room
    /// ([`InputFilter::retry_offs`]). Allocation-free: the JACK callback calls it.
    #[inline]
    pub fn count(self, filter: &mut InputFilter, stats: &RtStats, pushed: bool) {
        match (self, pushed) {
            (Classified::Pass(InKind::NoteOn { .. } | InKind::NoteOff { .. }), true) => {
                RtStats::bump(&stats.notes_in)
            }
            (Classified::Pass(InKind::NoteOn { channel, pitch, .. }), false) => {
                filter.on_refused(channel, pitch);
                RtStats::bump(&stats.dropped_ring_full);
            }
            (Classified::Pass(InKind::NoteOff { channel, pitch }), false) => {
                filter.off_refused(channel, pitch);
                RtStats::bump(&stats.deferred_offs);
            }
            (Classified::Pass(_), true) => RtStats::bump(&stats.clock_in),
            (Classified::Pass(_), false) => RtStats::bump(&stats.dropped_clock_ring_full),
            (Classified::Filtered, _) => RtStats::bump(&stats.filtered),
            (Classified::Merged, _) => RtStats::bump(&stats.merged),
            (Classified::Unmatched, _) => RtStats::bump(&stats.unmatched_off),
        }
    }
}

/// The human notes sounding, as the decoder thread has been told (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct InputFilter {
    sounding: NoteSet,
    /// Note-offs that found the ring full, to send first thing next cycle.
    pending_offs: NoteSet,
}

impl InputFilter {
    /// Classify one raw message from an input in `mode`. Real-time safe.
    #[inline]
    pub fn classify(&mut self, mode: InputMode, bytes: &[u8]) -> Classified {
        let Some(&status) = bytes.first() else {
            return Classified::Filtered;
        };
        match status {
            0xF8 => return Classified::Pass(InKind::Clock),
            0xFA => return Classified::Pass(InKind::Start),
            0xFB => return Classified::Pass(InKind::Continue),
            0xFC => return Classified::Pass(InKind::Stop),
            _ => {}
        }
        let kind = status & 0xF0;
        if (kind != 0x80 && kind != 0x90) || bytes.len() < 3 {
            return Classified::Filtered;
        }
        let (pitch, velocity) = (bytes[1], bytes[2]);
        if pitch > 127 || velocity > 127 {
            return Classified::Filtered;
        }
        let channel = mode.map_channel(status & 0x0F);
        if kind == 0x90 && velocity > 0 {
            if self.sounding.contains(channel, pitch) {
                return Classified::Merged;
            }
            self.sounding.insert(channel, pitch);
            Classified::Pass(InKind::NoteOn {
                channel,
                pitch,
                velocity,
            })
        } else {
            if !self.sounding.contains(channel, pitch) {
                return Classified::Unmatched;
            }
            self.sounding.remove(channel, pitch);
            Classified::Pass(InKind::NoteOff { channel, pitch })
        }
    }

    /// The ring refused a note-on: forget it (its note-off will be ignored).
    #[inline]
    pub fn on_refused(&mut self, channel: u8, pitch: u8) {
        self.sounding.remove(channel, pitch);
    }

    /// The ring refused a note-off: keep it for the next cycle.
    #[inline]
    pub fn off_refused(&mut self, channel: u8, pitch: u8) {
        self.pending_offs.insert(channel, pitch);
    }

    pub fn has_pending_offs(&self) -> bool {
        !self.pending_offs.is_empty()
    }

    /// Try to send the pending note-offs with `push` (which says whether the ring took it).
    #[inline]
    pub fn retry_offs(&mut self, mut push: impl FnMut(u8, u8) -> bool) {
        for channel in 0..16u8 {
            for pitch in 0..128u8 {
                if self.pending_offs.contains(channel, pitch) && push(channel, pitch) {
                    self.pending_offs.remove(channel, pitch);
                }
            }
        }
    }

    /// Human notes the decoder thread believes are sounding.
    pub fn sounding(&self) -> &NoteSet {
        &self.sounding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_specs_parse_and_refuse() {
        assert_eq!(InputSpec::parse("keys").unwrap().mode, InputMode::Pass);
        assert_eq!(InputSpec::parse("keys=pass").unwrap().mode, InputMode::Pass);
        let s = InputSpec::parse("bass=3").unwrap();
        assert_eq!(
            (s.mode, s.port_name()),
            (InputMode::Assign(3), "in_bass".to_string())
        );
        for bad in ["keys=0", "keys=16", "keys=x", "=3", "a b=2", ""] {
            assert!(InputSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_inputs(&[]).unwrap()[0].port_name(), "in");
        assert!(parse_inputs(&["a=1".into(), "a=2".into()]).is_err());
    }

    #[test]
    fn pass_remaps_channel_zero_and_assign_overrides() {
        let mut f = InputFilter::default();
        assert_eq!(
            f.classify(InputMode::Pass, &[0x90, 60, 100]),
            Classified::Pass(InKind::NoteOn {
                channel: 1,
                pitch: 60,
                velocity: 100
            })
        );
        assert_eq!(
            f.classify(InputMode::Pass, &[0x93, 60, 100]),
            Classified::Pass(InKind::NoteOn {
                channel: 3,
                pitch: 60,
                velocity: 100
            })
        );
        assert_eq!(
            f.classify(InputMode::Assign(5), &[0x90, 62, 1]),
            Classified::Pass(InKind::NoteOn {
                channel: 5,
                pitch: 62,
                velocity: 1
            })
        );
        // note-on velocity 0 is a note-off
        assert_eq!(
            f.classify(InputMode::Assign(5), &[0x9A, 62, 0]),
            Classified::Pass(InKind::NoteOff {
                channel: 5,
                pitch: 62
            })
        );
    }

    #[test]
    fn filter_keeps_every_note_paired() {
        let mut f = InputFilter::default();
        let m = InputMode::Pass;
        assert!(matches!(
            f.classify(m, &[0x91, 60, 90]),
            Classified::Pass(_)
        ));
        // channel 0 lands on channel 1 too: merged into the sounding note
        assert_eq!(f.classify(m, &[0x90, 60, 90]), Classified::Merged);
        assert!(matches!(f.classify(m, &[0x81, 60, 0]), Classified::Pass(_)));
        assert_eq!(f.classify(m, &[0x80, 60, 0]), Classified::Unmatched);
        // a refused note-on is forgotten, so its note-off is ignored
        assert!(matches!(
            f.classify(m, &[0x92, 40, 90]),
            Classified::Pass(_)
        ));
        f.on_refused(2, 40);
        assert_eq!(f.classify(m, &[0x82, 40, 0]), Classified::Unmatched);
        // a refused note-off is retried until taken
        assert!(matches!(
            f.classify(m, &[0x92, 41, 90]),
            Classified::Pass(_)
        ));
        assert!(matches!(f.classify(m, &[0x82, 41, 0]), Classified::Pass(_)));
        f.off_refused(2, 41);
        assert!(f.has_pending_offs());
        f.retry_offs(|_, _| false);
        assert!(f.has_pending_offs());
        let mut sent = vec![];
        f.retry_offs(|c, p| {
            sent.push((c, p));
            true
        });
        assert_eq!(sent, vec![(2, 41)]);
        assert!(!f.has_pending_offs());
    }

    #[test]
    fn everything_else_is_filtered() {
        let mut f = InputFilter::default();
        for msg in [
            &[0xB0u8, 64, 127][..],
            &[0xE0, 0, 64],
            &[0xC0, 5],
            &[0xF0, 1, 2, 0xF7],
            &[],
            &[0x90, 60],
            &[0xFE],
        ] {
            assert_eq!(
                f.classify(InputMode::Pass, msg),
                Classified::Filtered,
                "{msg:?}"
            );
        }
        assert_eq!(
            f.classify(InputMode::Pass, &[0xF8]),
            Classified::Pass(InKind::Clock)
        );
        assert_eq!(
            f.classify(InputMode::Assign(2), &[0xFA]),
            Classified::Pass(InKind::Start)
        );
    }
}
