//! A MIDI file as the human side of a session: its parts on channels 1–15.
//!
//! Channel 0 is the model's, but most MIDI files put their first (often their only) part on
//! channel 0, and many put every track there. Taking a file's channels as they are would drop
//! that music without a word. So by default ([`Layout::Parts`]) every part of the file — a
//! (track, channel) that holds notes — gets its own channel, exactly as the training corpus lays
//! out the parts around the one the model learns (train/corpus.py `channel_map`):
//!
//! - drum parts (file channel 9) stay on channel 9;
//! - the other parts take channels 1, 2, …, 15 in (track, channel) order, skipping 9 while a drum
//!   part holds it; more parts than free channels fold onto 1, 2, … again;
//! - then rule 9 of FORMAT.md (one voice per channel and pitch) merges what shares a channel.
//!
//! [`Layout::Keep`] takes the file's channels as they are and leaves out channel 0: for files
//! already laid out for the copilot (a previous render's output, say).

use serde::Serialize;

use super::midi::{guarded, notes_to_events, one_voice_per_pitch, sourced_notes_from_smf};
use super::smf::{parse_smf, Kind};
use super::{EventError, LanguageParams, NoteEvent};

/// The channel that General MIDI keeps for drums (MIDI channel 10).
pub const DRUM_CHANNEL: u8 = 9;

/// How a file's notes become human channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Every part (track, channel) of the file on a channel of its own, 1–15.
    Parts,
    /// The file's channels as they are; its channel 0 is left out.
    Keep,
}

/// Where one part of the file went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartMove {
    pub track: usize,
    /// Its channel in the file (0-based).
    pub channel: u8,
    /// Its channel in the session, or `None` when it was left out.
    pub to: Option<u8>,
    pub notes: usize,
}

/// A file's notes as the human side of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanPart {
    /// Note events on channels 1–15, sorted.
    pub events: Vec<NoteEvent>,
    /// Every part of the file, in (track, channel) order.
    pub parts: Vec<PartMove>,
    /// The file's first tempo (microseconds a quarter note), if it sets one.
    pub first_tempo: Option<u32>,
}

impl HumanPart {
    /// Notes of the file that are not in `events` because their part was left out.
    pub fn notes_left_out(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| p.to.is_none())
            .map(|p| p.notes)
            .sum()
    }
}

/// The channel each part takes under [`Layout::Parts`] (`parts` in (track, channel) order).
pub fn part_channels(parts: &[(usize, u8)]) -> Vec<u8> {
    let drums = parts.iter().any(|p| p.1 == DRUM_CHANNEL);
    let free: Vec<u8> = (1..16u8).filter(|&c| c != DRUM_CHANNEL || !drums).collect();
    let mut next = 0;
    parts
        .iter()
        .map(|p| {
            if p.1 == DRUM_CHANNEL {
                DRUM_CHANNEL
            } else {
                next += 1;
                free[(next - 1) % free.len()]
            }
        })
        .collect()
}

/// Read a MIDI file's bytes as the human side of a session (see the module docs).
pub fn human_part(
    bytes: &[u8],
    params: &LanguageParams,
    layout: Layout,
) -> Result<HumanPart, EventError> {
    guarded(|| {
        let smf = parse_smf(bytes)?;
        let notes = sourced_notes_from_smf(&smf, params)?;
        let first_tempo = smf
            .tracks
            .iter()
            .flatten()
            .filter_map(|e| match e.kind {
                Kind::Tempo { us_per_quarter } => Some((e.tick, us_per_quarter)),
                _ => None,
            })
            .min_by_key(|&(tick, _)| tick)
            .map(|(_, us)| us);
        let mut parts: Vec<(usize, u8)> = notes.iter().map(|n| n.part()).collect();
        parts.sort_unstable();
        parts.dedup();
        let to: Vec<Option<u8>> = match layout {
            Layout::Parts => part_channels(&parts).into_iter().map(Some).collect(),
            Layout::Keep => parts.iter().map(|p| (p.1 != 0).then_some(p.1)).collect(),
        };
        let mut moves: Vec<PartMove> = parts
            .iter()
            .zip(&to)
            .map(|(&(track, channel), &to)| PartMove {
                track,
                channel,
                to,
                notes: 0,
            })
            .collect();
        let mut kept = Vec::with_capacity(notes.len());
        for n in notes {
            let i = parts
                .binary_search(&n.part())
                .expect("every part was collected");
            moves[i].notes += 1;
            if let Some(channel) = moves[i].to {
                kept.push(super::Note { channel, ..n.note });
            }
        }
        let events = notes_to_events(&one_voice_per_pitch(kept), params);
        Ok(HumanPart {
            events,
            parts: moves,
            first_tempo,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_take_channels_like_the_corpus() {
        // three parts on channel 0 (music21's layout), in track order
        assert_eq!(part_channels(&[(1, 0), (2, 0), (3, 0)]), vec![1, 2, 3]);
        // drums keep 9 and the others skip it
        let parts: Vec<(usize, u8)> = (0..10).map(|t| (t, 0)).chain([(10, 9)]).collect();
        assert_eq!(
            part_channels(&parts),
            vec![1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 9]
        );
        // without drums, 9 is a channel like the others; past 15 parts fold onto 1, 2, …
        let parts: Vec<(usize, u8)> = (0..17).map(|t| (t, 0)).collect();
        let got = part_channels(&parts);
        assert_eq!(got[8], 9);
        assert_eq!(&got[14..], &[15, 1, 2]);
    }
}
