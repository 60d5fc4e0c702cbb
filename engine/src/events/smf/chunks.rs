//! The chunk layer of a Standard MIDI File, read as mido reads it (see [`super`]'s module doc).

use super::super::EventError;

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The header chunk and the raw payload of each announced track.
pub(super) struct Chunks<'a> {
    pub(super) format: u16,
    pub(super) division: u16,
    pub(super) tracks: Vec<&'a [u8]>,
}

pub(super) fn read_chunks(bytes: &[u8]) -> Result<Chunks<'_>, EventError> {
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
