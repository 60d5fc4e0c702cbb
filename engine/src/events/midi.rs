//! From a MIDI file to note events (FORMAT.md rules 1–12) and from events back to a MIDI file.

use std::collections::VecDeque;
use std::path::Path;

use anyhow::Context;
use midly::num::{u15, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Timing, TrackEvent, TrackEventKind};

use super::smf::{parse_smf, Kind, SmfEvents};
use super::text::{events_to_text, meta_word_is_valid};
use super::{bin_of_velocity, velocity_of_bin, EventError, LanguageParams, NoteEvent};

/// One note after rules 1–10, in language ticks: `start < end`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub start: u64,
    pub end: u64,
    pub channel: u8,
    pub pitch: u8,
    /// The note-on velocity, 1..=127.
    pub velocity: u8,
}

/// A note after rules 1–8 with where it came from: the file's part, (track, channel).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SourcedNote {
    pub note: Note,
    /// The index of the track that holds its note-on.
    pub track: usize,
}

impl SourcedNote {
    /// Its part: (track, channel in the file).
    pub fn part(&self) -> (usize, u8) {
        (self.track, self.note.channel)
    }
}

/// A note in file ticks while pairing (rules 4–6).
struct RawNote {
    start: u64,
    end: Option<u64>,
    channel: u8,
    pitch: u8,
    velocity: u8,
    track: usize,
}

/// Rule 7: `q(t) = ⌊(2·t·tpq + division) / (2·division)⌋`, in integers (round half up).
pub fn quantize(t: u64, tpq: u32, division: u16) -> Result<u64, EventError> {
    let d = u128::from(division);
    let q = (2 * u128::from(t) * u128::from(tpq) + d) / (2 * d);
    u64::try_from(q).map_err(|_| EventError::Corrupt("a time is too large for 64 bits".into()))
}

/// The notes of a parsed file, rules 1–10 of FORMAT.md, in the order of their note-ons.
pub fn notes_from_smf(smf: &SmfEvents, params: &LanguageParams) -> Result<Vec<Note>, EventError> {
    let notes: Vec<Note> = sourced_notes_from_smf(smf, params)?
        .into_iter()
        .map(|n| n.note)
        .collect();
    Ok(one_voice_per_pitch(notes))
}

/// The notes of a parsed file after rules 1–8 (before rule 9, so that parts can still move to
/// other channels first), each with its track, in the order of their note-ons.
pub fn sourced_notes_from_smf(
    smf: &SmfEvents,
    params: &LanguageParams,
) -> Result<Vec<SourcedNote>, EventError> {
    params.validate()?;
    // Rule 1: merge by absolute tick; ties keep track order, then order within the track
    // (a stable sort of the tracks' events laid end to end).
    let mut merged: Vec<(u64, usize, Kind)> = smf
        .tracks
        .iter()
        .enumerate()
        .flat_map(|(t, track)| track.iter().map(move |e| (e.tick, t, e.kind)))
        .collect();
    merged.sort_by_key(|e| e.0);
    // Rule 6: the file's last event tick, of any kind.
    let last_tick = merged.last().map_or(0, |e| e.0);

    let mut notes: Vec<RawNote> = Vec::new();
    let mut open: Vec<VecDeque<usize>> = vec![VecDeque::new(); 16 * 128];
    let mut pedal_down = [false; 16];
    let mut held: Vec<Vec<usize>> = vec![Vec::new(); 16];
    for &(tick, track, kind) in &merged {
        match kind {
            Kind::NoteOn {
                channel,
                key,
                velocity,
            } if velocity > 0 => {
                open[usize::from(channel) * 128 + usize::from(key)].push_back(notes.len());
                notes.push(RawNote {
                    start: tick,
                    end: None,
                    channel,
                    pitch: key,
                    velocity,
                    track,
                });
            }
            Kind::NoteOn { channel, key, .. } | Kind::NoteOff { channel, key } => {
                // Rule 4: FIFO pairing; an unpaired note-off is ignored.
                let slot = &mut open[usize::from(channel) * 128 + usize::from(key)];
                if let Some(i) = slot.pop_front() {
                    if pedal_down[usize::from(channel)] {
                        held[usize::from(channel)].push(i); // rule 5
                    } else {
                        notes[i].end = Some(tick);
                    }
                }
            }
            Kind::Controller {
                channel,
                controller: 64,
                value,
            } => {
                let ch = usize::from(channel);
                let down = value >= 64;
                if !down && pedal_down[ch] {
                    for i in held[ch].drain(..) {
                        notes[i].end = Some(tick);
                    }
                }
                pedal_down[ch] = down;
            }
            _ => {}
        }
    }

    // Rules 6–8: close, quantize, give zero-length notes one tick.
    let tpq = params.ticks_per_quarter;
    let mut quantized = Vec::with_capacity(notes.len());
    for n in &notes {
        let start = quantize(n.start, tpq, smf.division)?;
        let mut end = quantize(n.end.unwrap_or(last_tick), tpq, smf.division)?;
        if end <= start {
            end = start + 1;
        }
        quantized.push(SourcedNote {
            note: Note {
                start,
                end,
                channel: n.channel,
                pitch: n.pitch,
                velocity: n.velocity,
            },
            track: n.track,
        });
    }
    Ok(quantized)
}

/// Rule 9: one voice per (channel, pitch): of notes starting together the first is kept, a note
/// still sounding when the next of its pitch starts ends there. `notes` are in (start, file
/// order), as [`sourced_notes_from_smf`] gives them, whatever their channels now are.
pub fn one_voice_per_pitch(mut notes: Vec<Note>) -> Vec<Note> {
    let mut keep = vec![true; notes.len()];
    let mut last_kept: Vec<Option<usize>> = vec![None; 16 * 128];
    for i in 0..notes.len() {
        let slot = usize::from(notes[i].channel) * 128 + usize::from(notes[i].pitch);
        if let Some(j) = last_kept[slot] {
            if notes[j].start == notes[i].start {
                keep[i] = false;
                continue;
            }
            if notes[j].end > notes[i].start {
                notes[j].end = notes[i].start;
            }
        }
        last_kept[slot] = Some(i);
    }
    notes
        .into_iter()
        .zip(keep)
        .filter_map(|(n, k)| k.then_some(n))
        .collect()
}

/// Rule 12: a note-on at each note's start, a note-off at its end, sorted.
pub fn notes_to_events(notes: &[Note], params: &LanguageParams) -> Vec<NoteEvent> {
    let mut events = Vec::with_capacity(notes.len() * 2);
    for n in notes {
        let bin = bin_of_velocity(n.velocity, params.velocity_bins);
        events.push(NoteEvent::on(n.start, n.channel, n.pitch, bin));
        events.push(NoteEvent::off(n.end, n.channel, n.pitch));
    }
    events.sort();
    events
}

/// Read a MIDI file's bytes and return its note events, sorted (FORMAT.md "From a MIDI file to
/// events"). A panic inside the reader is caught and reported as [`EventError::Internal`].
pub fn encode_midi_bytes(
    bytes: &[u8],
    params: &LanguageParams,
) -> Result<Vec<NoteEvent>, EventError> {
    guarded(|| encode_midi_bytes_unguarded(bytes, params))
}

/// Run a file reader; a panic inside it becomes [`EventError::Internal`] (the file boundary:
/// nothing a damaged file holds may take the process down).
pub fn guarded<T>(
    read: impl FnOnce() -> Result<T, EventError> + std::panic::UnwindSafe,
) -> Result<T, EventError> {
    match std::panic::catch_unwind(read) {
        Ok(result) => result,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            Err(EventError::Internal(msg))
        }
    }
}

/// [`encode_midi_bytes`] without the panic guard (the fuzz target calls this one).
pub fn encode_midi_bytes_unguarded(
    bytes: &[u8],
    params: &LanguageParams,
) -> Result<Vec<NoteEvent>, EventError> {
    params.validate()?;
    let smf = parse_smf(bytes)?;
    let notes = notes_from_smf(&smf, params)?;
    Ok(notes_to_events(&notes, params))
}

/// Encode a MIDI file to the whole text of the event language, `meta` words first, ending in
/// `"\n"`. Errors carry the problem; callers add the file name.
pub fn encode_file(
    path: impl AsRef<Path>,
    params: &LanguageParams,
    meta: &[String],
) -> anyhow::Result<String> {
    let path = path.as_ref();
    params.validate()?;
    for word in meta {
        anyhow::ensure!(meta_word_is_valid(word), "invalid metadata word `{word}`");
    }
    let bytes = std::fs::read(path).context("cannot read the file")?;
    let events = encode_midi_bytes(&bytes, params)?;
    Ok(events_to_text(&events, params, meta))
}

/// Write events as a format 0 MIDI file (FORMAT.md "From events back to MIDI"), ending at the
/// last event's tick. See [`events_to_midi_until`].
pub fn events_to_midi(events: &[NoteEvent], params: &LanguageParams, bpm: f64) -> Vec<u8> {
    let end = events.iter().map(|e| e.tick).max().unwrap_or(0);
    events_to_midi_until(events, params, bpm, end)
}

/// Microseconds per quarter note for a tempo in BPM, as mido's `bpm2tempo` (rounded), clamped to
/// the 24-bit range of a tempo event.
pub fn tempo_of_bpm(bpm: f64) -> u32 {
    let t = (60_000_000.0 / bpm).round();
    if t.is_finite() {
        t.clamp(1.0, f64::from(0xFF_FFFFu32)) as u32
    } else {
        500_000
    }
}

/// Write events (in text order) as a format 0 file: division = tpq, one tempo event, each
/// note-on with its bin's middle velocity, each note-off as a note-off message (velocity 64);
/// notes still sounding are closed at `end_tick`, or one tick after their start if later; then
/// End of Track.
pub fn events_to_midi_until(
    events: &[NoteEvent],
    params: &LanguageParams,
    bpm: f64,
    end_tick: u64,
) -> Vec<u8> {
    let mut sounding: Vec<Option<u64>> = vec![None; 16 * 128];
    let mut timeline: Vec<(u64, TrackEventKind<'static>)> = Vec::with_capacity(events.len() + 2);
    let tempo = tempo_of_bpm(bpm);
    timeline.push((0, TrackEventKind::Meta(MetaMessage::Tempo(tempo.into()))));
    let mut end = end_tick;
    for e in events {
        let slot = usize::from(e.channel & 0x0F) * 128 + usize::from(e.pitch & 0x7F);
        let channel = u4::from(e.channel & 0x0F);
        let key = u7::from(e.pitch & 0x7F);
        let message = match e.kind {
            super::EventKind::On { velocity_bin } => {
                sounding[slot] = Some(e.tick);
                let vel = velocity_of_bin(velocity_bin, params.velocity_bins);
                MidiMessage::NoteOn {
                    key,
                    vel: u7::from(vel),
                }
            }
            super::EventKind::Off => {
                sounding[slot] = None;
                MidiMessage::NoteOff {
                    key,
                    vel: u7::from(64),
                }
            }
        };
        end = end.max(e.tick);
        timeline.push((e.tick, TrackEventKind::Midi { channel, message }));
    }
    let mut closing: Vec<(u64, u8, u8)> = sounding
        .iter()
        .enumerate()
        .filter_map(|(slot, s)| {
            s.map(|start| (end.max(start + 1), (slot / 128) as u8, (slot % 128) as u8))
        })
        .collect();
    closing.sort();
    for &(tick, ch, pitch) in &closing {
        let message = MidiMessage::NoteOff {
            key: u7::from(pitch),
            vel: u7::from(64),
        };
        timeline.push((
            tick,
            TrackEventKind::Midi {
                channel: u4::from(ch),
                message,
            },
        ));
        end = end.max(tick);
    }
    timeline.push((end, TrackEventKind::Meta(MetaMessage::EndOfTrack)));

    // Deltas; a gap longer than a delta can hold is bridged with empty text meta events.
    let max_delta = u64::from(u28::max_value().as_int());
    let mut track: Vec<TrackEvent<'static>> = Vec::with_capacity(timeline.len());
    let mut now = 0u64;
    for (tick, kind) in timeline {
        let mut delta = tick - now;
        while delta > max_delta {
            track.push(TrackEvent {
                delta: u28::from(max_delta as u32),
                kind: TrackEventKind::Meta(MetaMessage::Text(b"")),
            });
            delta -= max_delta;
        }
        track.push(TrackEvent {
            delta: u28::from(delta as u32),
            kind,
        });
        now = tick;
    }
    let tpq = u15::from(params.ticks_per_quarter.min(0x7FFF) as u16);
    let header = Header::new(Format::SingleTrack, Timing::Metrical(tpq));
    let mut out = Vec::new();
    // Writing to a Vec cannot fail except past MIDI's own limits (a 4 GB track).
    if midly::write_std(&header, [&track], &mut out).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounds_half_up() {
        // division 48 → tpq 24 halves ticks: 1 → ⌊(48+48)/96⌋ = 1 (0.5 rounds up), 2 → 1, 3 → 2.
        assert_eq!(quantize(1, 24, 48).unwrap(), 1);
        assert_eq!(quantize(2, 24, 48).unwrap(), 1);
        assert_eq!(quantize(3, 24, 48).unwrap(), 2);
        assert_eq!(quantize(0, 24, 48).unwrap(), 0);
        // division 480: 10 ticks → 0.5 → 1; 9 → 0.45 → 0.
        assert_eq!(quantize(10, 24, 480).unwrap(), 1);
        assert_eq!(quantize(9, 24, 480).unwrap(), 0);
    }

    #[test]
    fn tempo_rounds_like_mido() {
        assert_eq!(tempo_of_bpm(120.0), 500_000);
        assert_eq!(tempo_of_bpm(90.0), 666_667);
    }
}
