"""The MIDI file boundary of the event language v1 (docs/FORMAT.md): MIDI files read into notes
and event text (rules 1–12), and event text written back as MIDI files, with mido.

The text side is `events_text`; other code imports both through `midicopilot.train.events`.
"""
from __future__ import annotations

import io
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mido

from midicopilot.train.events_text import (
    LanguageParams,
    NoteEvent,
    StreamDecoder,
    bin_of_velocity,
    events_to_text,
    split_words,
    velocity_of_bin,
)


class MidiError(Exception):
    """A MIDI file that cannot be read. `str(err)` is one line: '<file>: <problem>'."""


@dataclass
class Note:
    """One note in language ticks. `source` is (track, channel) in the file it came from; `order`
    is the position of its note-on in the merged event stream (ties in rule 9)."""

    channel: int
    pitch: int
    start: int
    end: int
    velocity: int
    source: tuple[int, int] = (0, 0)
    order: int = 0


@dataclass
class Piece:
    """A MIDI file read into quantized notes (rules 1–8), with what is known of its parts."""

    path: str
    notes: list[Note]
    part_names: dict[tuple[int, int], str] = field(default_factory=dict)
    programs: dict[tuple[int, int], int] = field(default_factory=dict)


# --- reading MIDI files (rules 1–8) --------------------------------------------------------------

def _check_header(path: str, data: bytes) -> None:
    if not data:
        raise MidiError(f"{path}: empty file")
    if data[:4] != b"MThd":
        raise MidiError(f"{path}: not a Standard MIDI File (no MThd header)")
    if len(data) < 14:
        raise MidiError(f"{path}: truncated MIDI header")
    if data[12] & 0x80:
        raise MidiError(f"{path}: SMPTE time division is not supported (only ticks per quarter)")
    if int.from_bytes(data[12:14], "big") == 0:
        raise MidiError(f"{path}: time division is zero")


def _keep_unknown_meta_time() -> None:
    """mido 1.3.3 drops the delta time of a meta event whose type it does not know (0x08, program
    name, is one), which moves every later event of the track earlier. Rule 1 needs exact ticks,
    so the builder mido's file reader calls is wrapped to put the delta back. Idempotent."""
    from mido.midifiles import midifiles as reader

    build = reader.build_meta_message
    if getattr(build, "keeps_time", False):
        return

    def build_keeping_time(meta_type, data, delta=0):
        msg = build(meta_type, data, delta)
        msg.time = delta
        return msg

    build_keeping_time.keeps_time = True  # type: ignore[attr-defined]
    reader.build_meta_message = build_keeping_time


def _load(path: str | Path) -> mido.MidiFile:
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise MidiError(f"{path}: {err.strerror or err}") from None
    _check_header(path, data)
    _keep_unknown_meta_time()
    try:
        return mido.MidiFile(file=io.BytesIO(data))
    # mido raises OSError, EOFError, ValueError, IndexError, KeyError, KeySignatureError… on
    # corrupt data: this is the file boundary, so every one becomes the same one-line error.
    except Exception as err:  # noqa: BLE001
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MidiError(f"{path}: corrupt or truncated MIDI data ({problem})") from None


def quantize(tick: int, division: int, tpq: int) -> int:
    """Rule 7: file ticks → language ticks, rounding half up, in integers."""
    return (2 * tick * tpq + division) // (2 * division)


def _merged(mid: mido.MidiFile) -> list[tuple[int, int, int, mido.Message]]:
    """Rule 1: every event with its absolute tick, ordered by (tick, track, position in track)."""
    merged = []
    for track_index, track in enumerate(mid.tracks):
        now = 0
        for position, msg in enumerate(track):
            now += msg.time
            merged.append((now, track_index, position, msg))
    merged.sort(key=lambda item: item[:3])
    return merged


def read_piece(path: str | Path, params: LanguageParams | None = None) -> Piece:
    """Read a MIDI file into quantized notes (rules 1–8). Raises MidiError."""
    params = params or LanguageParams()
    mid = _load(path)
    division = mid.ticks_per_beat
    events = _merged(mid)

    part_names: dict[tuple[int, int], str] = {}
    track_names: dict[int, str] = {}
    programs: dict[tuple[int, int], int] = {}
    open_notes: dict[tuple[int, int], deque] = defaultdict(deque)
    pedal_down = [False] * 16
    held_by_pedal: list[list[list]] = [[] for _ in range(16)]
    raw: list[list] = []  # [channel, pitch, start, end|None, velocity, source, order]
    last_tick = 0

    for tick, track_index, _, msg in events:
        last_tick = max(last_tick, tick)
        kind = msg.type
        if kind == "track_name" and track_index not in track_names:
            track_names[track_index] = msg.name
        elif kind == "program_change":
            programs.setdefault((track_index, msg.channel), msg.program)
        elif kind == "note_on" and msg.velocity > 0:
            note = [msg.channel, msg.note, tick, None, msg.velocity,
                    (track_index, msg.channel), len(raw)]
            raw.append(note)
            open_notes[(msg.channel, msg.note)].append(note)
        elif kind in ("note_off", "note_on"):
            waiting = open_notes.get((msg.channel, msg.note))
            if waiting:  # rule 4: FIFO; an off with nothing open is ignored
                note = waiting.popleft()
                if pedal_down[msg.channel]:
                    held_by_pedal[msg.channel].append(note)  # rule 5
                else:
                    note[3] = tick
        elif kind == "control_change" and msg.control == 64:
            channel = msg.channel
            if msg.value >= 64:
                pedal_down[channel] = True
            elif pedal_down[channel]:
                pedal_down[channel] = False
                for note in held_by_pedal[channel]:
                    note[3] = tick
                held_by_pedal[channel].clear()

    tpq = params.ticks_per_quarter
    notes = []
    for channel, pitch, start, end, velocity, source, order in raw:
        end = last_tick if end is None else end  # rule 6
        q_start, q_end = quantize(start, division, tpq), quantize(end, division, tpq)
        notes.append(Note(channel, pitch, q_start, max(q_end, q_start + 1),  # rule 8
                          velocity, source, order))
    for source in {n.source for n in notes}:
        part_names[source] = track_names.get(source[0], "")
    return Piece(str(path), notes, part_names, programs)


def normalize_notes(notes: Iterable[Note]) -> list[Note]:
    """Rule 9: one voice per (channel, pitch): same-start duplicates dropped (the first wins), a
    note still sounding when the next of its pitch starts ends there. Returns new Note objects."""
    by_voice: dict[tuple[int, int], list[Note]] = defaultdict(list)
    for note in notes:
        by_voice[(note.channel, note.pitch)].append(note)
    result: list[Note] = []
    for voice in by_voice.values():
        voice.sort(key=lambda n: (n.start, n.order))
        kept: list[Note] = []
        for note in voice:
            if kept and kept[-1].start == note.start:
                continue
            if kept and kept[-1].end > note.start:
                kept[-1].end = note.start
            kept.append(Note(note.channel, note.pitch, note.start, note.end, note.velocity,
                             note.source, note.order))
        result.extend(kept)
    result.sort(key=lambda n: (n.start, n.channel, n.pitch))
    return result


def notes_to_events(notes: Iterable[Note], params: LanguageParams) -> list[NoteEvent]:
    """Rule 12: a note-on at each start and a note-off at each end, in the language's sort order."""
    events: list[NoteEvent] = []
    for n in notes:
        events.append(NoteEvent(n.start, "on", n.channel, n.pitch,
                                bin_of_velocity(n.velocity, params.velocity_bins)))
        events.append(NoteEvent(n.end, "off", n.channel, n.pitch, None))
    events.sort(key=NoteEvent.sort_key)
    return events


def encode_file(path: str | Path, params: LanguageParams | None = None,
                meta: Sequence[str] = ()) -> str:
    """A MIDI file as event text (no trailing newline). Raises MidiError."""
    params = params or LanguageParams()
    piece = read_piece(path, params)
    return events_to_text(notes_to_events(normalize_notes(piece.notes), params), params, meta)


# --- writing MIDI --------------------------------------------------------------------------------

def text_to_midi(text: str, params: LanguageParams | None = None, bpm: float = 120.0
                 ) -> mido.MidiFile:
    """Decode a text to a format-0 MIDI file; notes still sounding at the end are closed at the
    text's end time (or one tick after their start, if later). Raises TextError."""
    params = params or LanguageParams()
    decoder = StreamDecoder(params)
    events: list[NoteEvent] = []
    starts: dict[tuple[int, int], int] = {}
    for word in split_words(text):
        for event in decoder.feed_word(word):
            if event.kind == "on":
                starts[(event.channel, event.pitch)] = event.tick
            events.append(event)
    for channel, pitch in sorted(decoder.sounding):
        end = max(decoder.tick, starts[(channel, pitch)] + 1)
        events.append(NoteEvent(end, "off", channel, pitch, None))
    events.sort(key=NoteEvent.sort_key)
    return events_to_midi(events, params, bpm)


def events_to_midi(events: Iterable[NoteEvent], params: LanguageParams, bpm: float = 120.0
                   ) -> mido.MidiFile:
    mid = mido.MidiFile(type=0, ticks_per_beat=params.ticks_per_quarter)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    now = 0
    for event in events:
        delta, now = event.tick - now, event.tick
        if event.kind == "on":
            velocity = velocity_of_bin(event.velocity_bin or 0, params.velocity_bins)
            track.append(mido.Message("note_on", channel=event.channel, note=event.pitch,
                                      velocity=velocity, time=delta))
        else:
            track.append(mido.Message("note_off", channel=event.channel, note=event.pitch,
                                      velocity=64, time=delta))
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.append(track)
    return mid
