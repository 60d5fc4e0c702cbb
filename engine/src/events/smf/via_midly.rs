//! The fast path: one event parsed by midly, unless mido would read it differently.

use midly::{EventBytemapIter, MetaMessage, MidiMessage, TrackEventKind};

use super::compat::{check_meta_like_mido, check_sysex_like_mido};
use super::{Kind, Parsed};

/// Parse one event with midly. `None` when midly refuses it or when mido would refuse what midly
/// accepts (the compat reader then decides, with mido's reasons). Returns the event and mido's
/// new `last_status`.
pub(super) fn midly_event(rest: &[u8], last_status: Option<u8>) -> Option<(Parsed, Option<u8>)> {
    let mut iter = EventBytemapIter::new(rest);
    *iter.running_status_mut() = last_status.filter(|s| (0x80..0xF0).contains(s));
    let (raw, event) = iter.next()?.ok()?;
    let len = rest.len() - iter.unread().len();
    let delta = u64::from(event.delta.as_int());
    let (kind, status) = match event.kind {
        TrackEventKind::Midi { channel, message } => {
            let channel = channel.as_int();
            let kind = match message {
                MidiMessage::NoteOn { key, vel } => Kind::NoteOn {
                    channel,
                    key: key.as_int(),
                    velocity: vel.as_int(),
                },
                MidiMessage::NoteOff { key, .. } => Kind::NoteOff {
                    channel,
                    key: key.as_int(),
                },
                MidiMessage::Controller { controller, value } => Kind::Controller {
                    channel,
                    controller: controller.as_int(),
                    value: value.as_int(),
                },
                _ => Kind::Other,
            };
            (kind, iter.running_status())
        }
        TrackEventKind::Meta(meta) => {
            // `raw` is the meta event after its delta: 0xFF, type, length, data.
            let data: &[u8] = match meta {
                MetaMessage::Unknown(_, d)
                | MetaMessage::Text(d)
                | MetaMessage::Copyright(d)
                | MetaMessage::TrackName(d)
                | MetaMessage::InstrumentName(d)
                | MetaMessage::Lyric(d)
                | MetaMessage::Marker(d)
                | MetaMessage::CuePoint(d)
                | MetaMessage::ProgramName(d)
                | MetaMessage::DeviceName(d)
                | MetaMessage::SequencerSpecific(d) => d,
                // Fixed-form metas: re-read the data from the raw bytes for mido's checks.
                _ => return None,
            };
            let type_byte = raw.get(1).copied()?;
            if check_meta_like_mido(type_byte, data).is_err() {
                return None;
            }
            (Kind::Other, last_status)
        }
        TrackEventKind::SysEx(data) | TrackEventKind::Escape(data) => {
            if check_sysex_like_mido(data).is_err() {
                return None;
            }
            (Kind::Other, raw.first().copied())
        }
    };
    Some((Parsed { delta, kind, len }, status))
}
