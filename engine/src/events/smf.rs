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

mod chunks;
mod compat;
mod via_midly;

use super::EventError;
use chunks::read_chunks;
use compat::compat_event;
use via_midly::midly_event;

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
    /// Set Tempo (meta 0x51): not part of the language (docs/FORMAT.md rule 3), read for players.
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
