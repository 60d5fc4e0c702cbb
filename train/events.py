"""The event language v1 (docs/FORMAT.md) in Python: MIDI files ↔ event text, batch and streaming.

One import for both sides, `from midicopilot.train import events as ev`:
- `events_text`: the text language (parameters, note events, time words, writing text, the strict
  streaming decoder and encoder, statistics);
- `events_midi`: the MIDI file boundary (reading and quantizing MIDI files into notes and text,
  writing text back as MIDI files).
"""
from __future__ import annotations

from midicopilot.train.events_midi import (
    MidiError,
    Note,
    Piece,
    encode_file,
    events_to_midi,
    normalize_notes,
    notes_to_events,
    quantize,
    read_piece,
    text_to_midi,
)
from midicopilot.train.events_text import (
    LANGUAGE_VERSION,
    LanguageParams,
    NoteEvent,
    StreamDecoder,
    StreamEncoder,
    TextError,
    TextStats,
    bin_of_velocity,
    event_words,
    events_to_text,
    item_text,
    meta_token,
    parse_text,
    split_words,
    text_stats,
    time_words,
    velocity_of_bin,
)

__all__ = [
    # the text language (events_text)
    "LANGUAGE_VERSION",
    "LanguageParams",
    "NoteEvent",
    "StreamDecoder",
    "StreamEncoder",
    "TextError",
    "TextStats",
    "bin_of_velocity",
    "event_words",
    "events_to_text",
    "item_text",
    "meta_token",
    "parse_text",
    "split_words",
    "text_stats",
    "time_words",
    "velocity_of_bin",
    # the MIDI file boundary (events_midi)
    "MidiError",
    "Note",
    "Piece",
    "encode_file",
    "events_to_midi",
    "normalize_notes",
    "notes_to_events",
    "quantize",
    "read_piece",
    "text_to_midi",
]
