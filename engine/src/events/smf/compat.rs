//! The compat reader: events as mido's own code reads them, for what midly refuses (see
//! [`super`]'s module doc), and mido's checks on meta and SysEx data.

use super::super::EventError;
use super::{Kind, Parsed, MAX_MESSAGE_LENGTH};

/// mido's checks when it decodes a meta event's data (its `MetaSpec.decode` methods).
pub(super) fn check_meta_like_mido(type_byte: u8, data: &[u8]) -> Result<(), String> {
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
pub(super) fn check_sysex_like_mido(data: &[u8]) -> Result<(), String> {
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
pub(super) fn compat_event(
    rest: &[u8],
    last_status: Option<u8>,
) -> Result<(Parsed, Option<u8>), EventError> {
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
