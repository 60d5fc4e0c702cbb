//! Reading Standard MIDI Files the way the Python side (mido 1.3) reads them.
//!
//! Events are parsed by midly (with its `strict` feature, so a malformed event is an error, not a
//! silently shortened track). Around it, this module keeps mido's rules where midly's differ, so
//! that both implementations accept and refuse the same files:
//!
//! - the chunk layer is read here: mido reads exactly the number of tracks the header announces,
//!   each of which must be an `MTrk` chunk, and ignores anything after them; midly would skip
//!   unknown chunks, accept RIFF-wrapped files and read past the announced count;
//! - the track count is read as a signed number, as mido does (0x8000 and up: no track);
//! - the header's division word is checked here first (midly panics in debug builds on some SMPTE
//!   words, and SMPTE files are refused anyway);
//! - running status survives meta events (mido keeps it; midly clears it);
//! - meta events that mido cannot decode (a tempo shorter than 3 bytes, an unknown key
//!   signature, …) and SysEx data bytes above 0x7F make the file corrupt, as in mido;
//! - events midly refuses but mido reads (system common and real-time messages inside a track,
//!   SMPTE offsets with out-of-range fields, delta times longer than 4 bytes, running status after
//!   a SysEx) are read by [`compat_event`], a small reader that follows mido's code.
//!
//! [`parse_smf_compat`] reads a whole file with the compat reader only; the fuzz target checks
//! that it agrees with [`parse_smf`] on every input.

use midly::{EventBytemapIter, MetaMessage, MidiMessage, TrackEventKind};

use super::EventError;

/// mido's limit on one SysEx or meta event's data (`MAX_MESSAGE_LENGTH`).
pub const MAX_MESSAGE_LENGTH: usize = 1_000_000;

/// What the event language needs of a file event; everything else is `Other`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    NoteOn {
        channel: u8,
        key: u8,
        velocity: u8,
    },
    NoteOff {
        channel: u8,
        key: u8,
    },
    Controller {
        channel: u8,
        controller: u8,
        value: u8,
    },
    /// Set Tempo (meta 0x51): not part of the language (FORMAT.md rule 3), read for players.
    Tempo {
        us_per_quarter: u32,
    },
    Other,
}

/// One event at an absolute tick of its track.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TimedEvent {
    pub tick: u64,
    pub kind: Kind,
}

/// A file's header fields and its tracks' events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmfEvents {
    pub format: u16,
    /// Ticks per quarter note (never 0, never SMPTE).
    pub division: u16,
    pub tracks: Vec<Vec<TimedEvent>>,
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The header chunk and the raw payload of each announced track.
struct Chunks<'a> {
    format: u16,
    division: u16,
    tracks: Vec<&'a [u8]>,
}

fn read_chunks(bytes: &[u8]) -> Result<Chunks<'_>, EventError> {
    if bytes.is_empty() {
        return Err(EventError::NotMidi("the file is empty".into()));
    }
    let head = &bytes[..bytes.len().min(4)];
    if head != &b"MThd"[..head.len()] {
        return Err(EventError::NotMidi(
            "no MThd header chunk at the start".into(),
        ));
    }
    if bytes.len() < 8 {
        return Err(EventError::Truncated(
            "the header chunk is cut short".into(),
        ));
    }
    let header_len = be_u32(&bytes[4..8]) as usize;
    let header_end = 8usize.saturating_add(header_len).min(bytes.len());
    let header = &bytes[8..header_end];
    if header.len() < 6 {
        return Err(EventError::Truncated(format!(
            "the header chunk has {} bytes, at least 6 are needed",
            header.len()
        )));
    }
    let format = be_u16(&header[0..2]);
    // mido reads the track count as a signed 16-bit number: a count of 0x8000 or more reads no
    // track at all.
    let ntracks = u16::try_from(be_u16(&header[2..4]) as i16).unwrap_or(0);
    let division = be_u16(&header[4..6]);
    if division & 0x8000 != 0 {
        return Err(EventError::Smpte(division));
    }
    if division == 0 {
        return Err(EventError::Corrupt(
            "the time division is 0 ticks per quarter note".into(),
        ));
    }
    let mut pos = header_end;
    let mut tracks = Vec::with_capacity(usize::from(ntracks).min(1024));
    for i in 0..usize::from(ntracks) {
        let n = i + 1;
        if bytes.len() - pos < 8 {
            return Err(EventError::Truncated(format!(
                "track {n} of {ntracks} is missing (the file ends at byte {})",
                bytes.len()
            )));
        }
        let id = &bytes[pos..pos + 4];
        if id != b"MTrk" {
            return Err(EventError::Corrupt(format!(
                "track {n} of {ntracks}: expected an MTrk chunk, found {:?}",
                String::from_utf8_lossy(id)
            )));
        }
        let size = be_u32(&bytes[pos + 4..pos + 8]) as usize;
        let start = pos + 8;
        if bytes.len() - start < size {
            return Err(EventError::Truncated(format!(
                "track {n} of {ntracks} announces {size} bytes but only {} remain",
                bytes.len() - start
            )));
        }
        tracks.push(&bytes[start..start + size]);
        pos = start + size;
    }
    Ok(Chunks {
        format,
        division,
        tracks,
    })
}

/// Read a Standard MIDI File: midly for the events, mido's rules around it (see the module doc).
pub fn parse_smf(bytes: &[u8]) -> Result<SmfEvents, EventError> {
    let chunks = read_chunks(bytes)?;
    let mut tracks = Vec::with_capacity(chunks.tracks.len());
    for (i, payload) in chunks.tracks.iter().enumerate() {
        tracks.push(parse_track(payload, i + 1, false)?);
    }
    Ok(SmfEvents {
        format: chunks.format,
        division: chunks.division,
        tracks,
    })
}

/// Read a Standard MIDI File with the mido-compatible reader only (no midly); for cross-checks.
pub fn parse_smf_compat(bytes: &[u8]) -> Result<SmfEvents, EventError> {
    let chunks = read_chunks(bytes)?;
    let mut tracks = Vec::with_capacity(chunks.tracks.len());
    for (i, payload) in chunks.tracks.iter().enumerate() {
        tracks.push(parse_track(payload, i + 1, true)?);
    }
    Ok(SmfEvents {
        format: chunks.format,
        division: chunks.division,
        tracks,
    })
}

/// One parsed event: its delta, what it is, and how many bytes it took.
struct Parsed {
    delta: u64,
    kind: Kind,
    len: usize,
}

fn parse_track(
    payload: &[u8],
    track: usize,
    compat_only: bool,
) -> Result<Vec<TimedEvent>, EventError> {
    let mut events = Vec::with_capacity(payload.len() / 3);
    let mut rest = payload;
    // mido's `last_status`: set by every status byte except 0xFF (meta).
    let mut last_status: Option<u8> = None;
    let mut tick: u64 = 0;
    while !rest.is_empty() {
        let offset = payload.len() - rest.len();
        let via_midly = if compat_only {
            None
        } else {
            midly_event(rest, last_status)
        };
        let (parsed, status) = match via_midly {
            Some(x) => x,
            None => compat_event(rest, last_status).map_err(|e| match e {
                EventError::Corrupt(m) => {
                    EventError::Corrupt(format!("track {track}, byte {offset} of the track: {m}"))
                }
                EventError::Truncated(m) => {
                    EventError::Truncated(format!("track {track}, byte {offset} of the track: {m}"))
                }
                other => other,
            })?,
        };
        tick = tick.checked_add(parsed.delta).ok_or_else(|| {
            EventError::Corrupt(format!("track {track}: the time overflows 64 bits"))
        })?;
        events.push(TimedEvent {
            tick,
            kind: parsed.kind,
        });
        last_status = status;
        rest = &rest[parsed.len..];
    }
    Ok(events)
}

/// Parse one event with midly. `None` when midly refuses it or when mido would refuse what midly
/// accepts (the compat reader then decides, with mido's reasons). Returns the event and mido's
/// new `last_status`.
fn midly_event(rest: &[u8], last_status: Option<u8>) -> Option<(Parsed, Option<u8>)> {
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

/// mido's checks when it decodes a meta event's data (its `MetaSpec.decode` methods).
fn check_meta_like_mido(type_byte: u8, data: &[u8]) -> Result<(), String> {
    if data.len() > MAX_MESSAGE_LENGTH {
        return Err(format!("a meta event of {} bytes is too long", data.len()));
    }
    let need = match type_byte {
        0x00 if data.len() == 1 => 2, // sequence number: empty or 2 bytes
        0x20 => 1,                    // channel prefix
        0x51 => 3,                    // tempo
        0x54 => 5,                    // SMPTE offset
        0x58 => 4,                    // time signature
        0x59 => 2,                    // key signature
        _ => 0,
    };
    if data.len() < need {
        return Err(format!(
            "meta event 0x{type_byte:02x} has {} data bytes, {need} are needed",
            data.len()
        ));
    }
    if type_byte == 0x54 && data[0] >> 5 > 3 {
        return Err(format!(
            "SMPTE offset with an unknown frame rate code {}",
            data[0] >> 5
        ));
    }
    if type_byte == 0x59 {
        let key = data[0] as i8;
        if !(-7..=7).contains(&key) || data[1] > 1 {
            return Err(format!("unknown key signature ({key}, mode {})", data[1]));
        }
    }
    Ok(())
}

/// mido's checks on SysEx data: one leading 0xF0 and one trailing 0xF7 are stripped, the rest must
/// be data bytes.
fn check_sysex_like_mido(data: &[u8]) -> Result<(), String> {
    if data.len() > MAX_MESSAGE_LENGTH {
        return Err(format!("a SysEx event of {} bytes is too long", data.len()));
    }
    let mut body = data;
    if body.first() == Some(&0xF0) {
        body = &body[1..];
    }
    if body.last() == Some(&0xF7) {
        body = &body[..body.len() - 1];
    }
    if body.iter().any(|b| *b > 0x7F) {
        return Err("SysEx data byte above 0x7F".into());
    }
    Ok(())
}

/// A cursor over a track's bytes that reports running past its end as truncation.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, EventError> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| {
            EventError::Truncated("an event runs past the end of its track".into())
        })?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EventError> {
        if n > MAX_MESSAGE_LENGTH {
            return Err(EventError::Corrupt(format!(
                "an event of {n} bytes exceeds the limit of {MAX_MESSAGE_LENGTH}"
            )));
        }
        if self.bytes.len() - self.pos < n {
            return Err(EventError::Truncated(
                "an event runs past the end of its track".into(),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A variable-length quantity, any number of bytes (as mido reads it), within 63 bits.
    fn varlen(&mut self) -> Result<u64, EventError> {
        let mut v: u64 = 0;
        loop {
            let b = self.byte()?;
            if v >> 56 != 0 {
                return Err(EventError::Corrupt(
                    "a variable-length number is too large".into(),
                ));
            }
            v = (v << 7) | u64::from(b & 0x7F);
            if b < 0x80 {
                return Ok(v);
            }
        }
    }
}

/// How many bytes mido's message specs give a status byte (status included); `None` for the
/// undefined ones (0xF4, 0xF5, 0xF9, 0xFD).
fn spec_length(status: u8) -> Option<usize> {
    match status {
        0x80..=0xBF | 0xE0..=0xEF => Some(3),
        0xC0..=0xDF => Some(2),
        0xF1 | 0xF3 => Some(2),
        0xF2 => Some(3),
        0xF6 | 0xF8 | 0xFA | 0xFB | 0xFC | 0xFE => Some(1),
        _ => None,
    }
}

/// Read one event exactly as mido 1.3's `read_track` does. Returns it and the new `last_status`.
fn compat_event(rest: &[u8], last_status: Option<u8>) -> Result<(Parsed, Option<u8>), EventError> {
    let mut c = Cursor {
        bytes: rest,
        pos: 0,
    };
    let delta = c.varlen()?;
    let first = c.byte()?;
    let (status, peek, new_last) = if first < 0x80 {
        let s = last_status.ok_or_else(|| {
            EventError::Corrupt("running status without a previous status byte".into())
        })?;
        (s, Some(first), last_status)
    } else if first == 0xFF {
        (first, None, last_status)
    } else {
        (first, None, Some(first))
    };
    let kind = match status {
        0xFF => {
            let type_byte = c.byte()?;
            let len = c.varlen()?;
            let data = c.take(usize::try_from(len).unwrap_or(usize::MAX))?;
            check_meta_like_mido(type_byte, data).map_err(EventError::Corrupt)?;
            match (type_byte, data) {
                (0x51, &[a, b, c]) => Kind::Tempo {
                    us_per_quarter: u32::from_be_bytes([0, a, b, c]),
                },
                _ => Kind::Other,
            }
        }
        0xF0 | 0xF7 => {
            // With running status, mido drops the data byte it peeked and reads a SysEx.
            let len = c.varlen()?;
            let data = c.take(usize::try_from(len).unwrap_or(usize::MAX))?;
            check_sysex_like_mido(data).map_err(EventError::Corrupt)?;
            Kind::Other
        }
        _ => {
            let length = spec_length(status).ok_or_else(|| {
                EventError::Corrupt(format!("undefined status byte 0x{status:02x}"))
            })?;
            let mut data = [0u8; 2];
            let n = length - 1;
            let from_peek = usize::from(peek.is_some());
            if from_peek > n {
                return Err(EventError::Corrupt(format!(
                    "wrong number of bytes for a 0x{status:02x} message (running status)"
                )));
            }
            if let Some(p) = peek {
                data[0] = p;
            }
            for slot in data.iter_mut().take(n).skip(from_peek) {
                *slot = c.byte()?;
            }
            if data[..n].iter().any(|b| *b > 0x7F) {
                return Err(EventError::Corrupt(
                    "data byte must be in range 0..127".into(),
                ));
            }
            let channel = status & 0x0F;
            match status >> 4 {
                0x8 => Kind::NoteOff {
                    channel,
                    key: data[0],
                },
                0x9 => Kind::NoteOn {
                    channel,
                    key: data[0],
                    velocity: data[1],
                },
                0xB => Kind::Controller {
                    channel,
                    controller: data[0],
                    value: data[1],
                },
                _ => Kind::Other,
            }
        }
    };
    Ok((
        Parsed {
            delta,
            kind,
            len: c.pos,
        },
        new_last,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tracks: &[&[u8]], division: u16) -> Vec<u8> {
        let mut out = b"MThd\0\0\0\x06\0\x01".to_vec();
        out.extend_from_slice(&(tracks.len() as u16).to_be_bytes());
        out.extend_from_slice(&division.to_be_bytes());
        for t in tracks {
            out.extend_from_slice(b"MTrk");
            out.extend_from_slice(&(t.len() as u32).to_be_bytes());
            out.extend_from_slice(t);
        }
        out
    }

    fn both(bytes: &[u8]) -> Result<SmfEvents, EventError> {
        let a = parse_smf(bytes);
        let b = parse_smf_compat(bytes);
        assert_eq!(a.is_ok(), b.is_ok(), "{a:?} vs {b:?}");
        if let (Ok(x), Ok(y)) = (&a, &b) {
            assert_eq!(x, y);
        }
        a
    }

    #[test]
    fn running_status_survives_a_meta_event_as_in_mido() {
        // on C4, meta text, then running-status data (another note-on).
        let t: &[u8] = b"\x00\x90\x3c\x40\x00\xff\x01\x01x\x05\x3e\x40\x00\xff\x2f\x00";
        let smf = both(&file(&[t], 96)).unwrap();
        let kinds: Vec<Kind> = smf.tracks[0].iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds[2],
            Kind::NoteOn {
                channel: 0,
                key: 0x3e,
                velocity: 0x40
            }
        );
        assert_eq!(smf.tracks[0][2].tick, 5);
    }

    #[test]
    fn clock_bytes_inside_a_track_are_read_like_mido() {
        let t: &[u8] = b"\x00\xf8\x00\x90\x3c\x40\x00\xff\x2f\x00";
        let smf = both(&file(&[t], 96)).unwrap();
        assert_eq!(smf.tracks[0].len(), 3);
    }

    #[test]
    fn refusals() {
        let ok_track: &[u8] = b"\x00\xff\x2f\x00";
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty"),
            (b"RIFF....".to_vec(), "not a standard midi"),
            (b"MThd\0\0".to_vec(), "truncated"),
            (file(&[ok_track], 0xE728), "smpte"),
            (file(&[ok_track], 0), "division is 0"),
            (file(&[ok_track], 96)[..20].to_vec(), "truncated"),
            (file(&[b"\x00\x90\x3c"], 96), "truncated"),
            (file(&[b"\x00\x90\x3c\x80"], 96), "0..127"),
            (file(&[b"\x00\xff\x51\x02\x07\xa1"], 96), "tempo"),
            (file(&[b"\x00\xff\x59\x02\x09\x00"], 96), "key signature"),
            (file(&[b"\x00\xf4"], 96), "undefined status"),
            (file(&[b"\x00\x3c\x40"], 96), "running status"),
        ];
        for (bytes, keyword) in cases {
            let err = both(&bytes).expect_err(keyword).to_string().to_lowercase();
            let err = err
                .replace("0x51", "tempo")
                .replace("0x59", "key signature");
            assert!(err.contains(keyword), "{err:?} lacks {keyword:?}");
        }
    }

    #[test]
    fn extra_bytes_after_the_announced_tracks_are_ignored() {
        let mut bytes = file(&[b"\x00\xff\x2f\x00"], 96);
        bytes.extend_from_slice(b"garbage after the last track");
        assert_eq!(both(&bytes).unwrap().tracks.len(), 1);
    }

    #[test]
    fn an_unknown_chunk_in_place_of_a_track_is_refused() {
        let mut bytes = b"MThd\0\0\0\x06\0\x01\0\x01\0\x60".to_vec();
        bytes.extend_from_slice(b"XTRA\0\0\0\x00");
        assert!(both(&bytes).is_err());
    }
}
