"""The event language v1 (docs/FORMAT.md) in Python: MIDI files ↔ event text, batch and streaming.

The Rust engine (engine/src/events) implements the same language; both must write byte-identical
text for the same file. FORMAT.md is the truth; the rule numbers in comments refer to it.
"""
from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import mido

LANGUAGE_VERSION = "v1"

_META_RE = re.compile(r"\[[A-Z][A-Z0-9]*_[A-Z0-9_]+\]")
_TIME_RE = re.compile(r"P_([1-9][0-9]{0,5})")
_HEX = "0123456789abcdef"


class MidiError(Exception):
    """A MIDI file that cannot be read. `str(err)` is one line: '<file>: <problem>'."""


class TextError(ValueError):
    """Event text that breaks the grammar. `str(err)` is one line: the word and the problem."""


@dataclass(frozen=True)
class LanguageParams:
    ticks_per_quarter: int = 24
    velocity_bins: int = 8

    def __post_init__(self) -> None:
        if self.ticks_per_quarter < 2 or self.ticks_per_quarter % 2:
            raise ValueError("ticks_per_quarter must be even and >= 2, "
                             f"not {self.ticks_per_quarter}")
        if not 1 <= self.velocity_bins <= 26:
            raise ValueError(f"velocity_bins must be 1..26, not {self.velocity_bins}")

    @property
    def grid(self) -> int:
        return self.ticks_per_quarter // 2

    @property
    def max_grid(self) -> int:
        return 4 * self.ticks_per_quarter

    def to_dict(self) -> dict[str, int]:
        return {"ticks_per_quarter": self.ticks_per_quarter, "velocity_bins": self.velocity_bins}

    @classmethod
    def from_dict(cls, data: dict) -> LanguageParams:
        return cls(int(data.get("ticks_per_quarter", 24)), int(data.get("velocity_bins", 8)))


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


class NoteEvent(NamedTuple):
    tick: int
    kind: str  # "off" | "on"
    channel: int
    pitch: int
    velocity_bin: int | None = None

    def sort_key(self) -> tuple[int, int, int, int]:
        # Design document §3.2: time, note-off before note-on, channel, pitch.
        return (self.tick, 0 if self.kind == "off" else 1, self.channel, self.pitch)


# --- velocity (rule 11) --------------------------------------------------------------------------

def bin_of_velocity(velocity: int, bins: int) -> int:
    return (min(max(velocity, 1), 127) - 1) * bins // 127


def velocity_of_bin(velocity_bin: int, bins: int) -> int:
    return (2 * velocity_bin + 1) * 127 // (2 * bins) + 1


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
        import io

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


# --- writing text --------------------------------------------------------------------------------

def meta_token(kind: str, name: str) -> str:
    """'genre', 'blues' → '[GENRE_BLUES]' (upper case; anything else becomes '_')."""
    clean = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "NONE"
    return f"[{kind.upper()}_{clean}]"


def time_words(delta: int, params: LanguageParams) -> list[str]:
    """A delta in ticks as canonical grid + offset words: 14 → ['P_12', 'P_2']; 0 → []."""
    if delta < 0:
        raise ValueError(f"negative time delta {delta}")
    grid, max_grid = params.grid, params.max_grid
    whole = delta - delta % grid
    words = [f"P_{max_grid}"] * (whole // max_grid)
    if whole % max_grid:
        words.append(f"P_{whole % max_grid}")
    if delta % grid:
        words.append(f"P_{delta % grid}")
    return words


def item_text(event: NoteEvent) -> str:
    if event.kind == "off":
        return f"{_HEX[event.channel]}-{event.pitch:03d}"
    return f"{_HEX[event.channel]}+{event.pitch:03d}{chr(97 + (event.velocity_bin or 0))}"


def event_words(events: Sequence[NoteEvent], params: LanguageParams,
                start_tick: int = 0) -> list[str]:
    """Sorted events → body words: time words between instants, one instant word per tick."""
    words: list[str] = []
    now = start_tick
    i = 0
    while i < len(events):
        tick = events[i].tick
        items = []
        while i < len(events) and events[i].tick == tick:
            items.append(item_text(events[i]))
            i += 1
        words.extend(time_words(tick - now, params))
        words.append("".join(items))
        now = tick
    return words


def events_to_text(events: Iterable[NoteEvent], params: LanguageParams,
                   meta: Sequence[str] = ()) -> str:
    """The text of events (sorted here), with metadata words first. No trailing newline."""
    ordered = sorted(events, key=NoteEvent.sort_key)
    return " ".join([*meta, *event_words(ordered, params)])


def encode_file(path: str | Path, params: LanguageParams | None = None,
                meta: Sequence[str] = ()) -> str:
    """A MIDI file as event text (no trailing newline). Raises MidiError."""
    params = params or LanguageParams()
    piece = read_piece(path, params)
    return events_to_text(notes_to_events(normalize_notes(piece.notes), params), params, meta)


# --- reading text --------------------------------------------------------------------------------

class StreamDecoder:
    """Reads a text one word at a time. A rejected word raises TextError and changes nothing."""

    def __init__(self, params: LanguageParams | None = None) -> None:
        self.params = params or LanguageParams()
        self.tick = 0
        self.sounding: set[tuple[int, int]] = set()
        self.meta: list[str] = []
        self._body_started = False
        self._last: str | None = None  # None | "instant" | "max" | "grid" | "offset"

    def feed_word(self, word: str) -> list[NoteEvent]:
        if _META_RE.fullmatch(word):
            if self._body_started:
                raise TextError(f"{word!r}: metadata word after the body began")
            self.meta.append(word)
            return []
        time = _TIME_RE.fullmatch(word)
        if time:
            self._time_word(word, int(time.group(1)))
            return []
        if word[:1] in _HEX and len(word) > 1:
            return self._instant_word(word)
        raise TextError(f"{word!r}: unknown word (not a metadata, time or instant word)")

    def _time_word(self, word: str, n: int) -> None:
        p = self.params
        if n < p.grid:
            kind = "offset"
        elif n % p.grid == 0 and n <= p.max_grid:
            kind = "max" if n == p.max_grid else "grid"
        else:
            raise TextError(f"{word!r}: not a time word of this language "
                            f"(offsets 1..{p.grid - 1}, grid multiples of {p.grid} "
                            f"up to {p.max_grid})")
        if self._last == "offset" or (self._last == "grid" and kind != "offset"):
            raise TextError(f"{word!r}: time words out of canonical order after a "
                            f"{self._last} word")
        self._body_started = True
        self._last = kind
        self.tick += n

    def _instant_word(self, word: str) -> list[NoteEvent]:
        if self._body_started and self._last == "instant":
            raise TextError(f"{word!r}: two instants with no time word between them")
        if not self._body_started and self.tick != 0:
            raise TextError(f"{word!r}: instant without a time word")
        events: list[NoteEvent] = []
        sounding = set(self.sounding)
        last_key: tuple[int, int, int] | None = None
        i = 0
        while i < len(word):
            event, i = self._item(word, i)
            key = (0 if event.kind == "off" else 1, event.channel, event.pitch)
            if last_key is not None and key <= last_key:
                raise TextError(f"{word!r}: items not in order (offs, then ons; by channel, pitch)"
                                " or repeated")
            last_key = key
            voice = (event.channel, event.pitch)
            if event.kind == "off":
                if voice not in sounding:
                    raise TextError(f"{word!r}: note-off of channel {event.channel} pitch "
                                    f"{event.pitch}, which is not sounding")
                sounding.discard(voice)
            else:
                if voice in sounding:
                    raise TextError(f"{word!r}: note-on of channel {event.channel} pitch "
                                    f"{event.pitch}, which is already sounding")
                sounding.add(voice)
            events.append(event)
        self.sounding = sounding
        self._body_started = True
        self._last = "instant"
        return events

    def _item(self, word: str, i: int) -> tuple[NoteEvent, int]:
        channel = _HEX.find(word[i]) if word[i] in _HEX else -1
        sign = word[i + 1: i + 2]
        digits = word[i + 2: i + 5]
        if channel < 0 or sign not in ("+", "-") or len(digits) != 3 or not digits.isdigit() \
                or not digits.isascii():
            raise TextError(f"{word!r}: malformed item at byte {i}")
        pitch = int(digits)
        if pitch > 127:
            raise TextError(f"{word!r}: pitch {pitch} out of range 0..127")
        if sign == "-":
            return NoteEvent(self.tick, "off", channel, pitch, None), i + 5
        letter = word[i + 5: i + 6]
        velocity_bin = ord(letter) - 97 if letter else -1
        if not 0 <= velocity_bin < self.params.velocity_bins:
            raise TextError(f"{word!r}: missing or bad velocity letter at byte {i + 5}")
        return NoteEvent(self.tick, "on", channel, pitch, velocity_bin), i + 6


def split_words(text: str) -> list[str]:
    """Words of a text, checking the spacing rules (one space between words, one final newline)."""
    body = text[:-1] if text.endswith("\n") else text
    if not body:
        return []
    if "\n" in body or "\t" in body or "\r" in body:
        raise TextError("text has a line break or tab inside it")
    words = body.split(" ")
    if any(not w for w in words):
        raise TextError("text has a leading, trailing or double space")
    return words


def parse_text(text: str, params: LanguageParams | None = None
               ) -> tuple[list[str], list[NoteEvent]]:
    """Strictly parse a text into (metadata words, events). Raises TextError."""
    decoder = StreamDecoder(params)
    events: list[NoteEvent] = []
    for word in split_words(text):
        events.extend(decoder.feed_word(word))
    return decoder.meta, events


class StreamEncoder:
    """Writes the text of note events pushed one at a time in tick order (the live input side)."""

    def __init__(self, params: LanguageParams | None = None) -> None:
        self.params = params or LanguageParams()
        self._now = 0
        self._pending: list[NoteEvent] = []

    def push(self, event: NoteEvent) -> list[str]:
        """Add an event; returns the words completed by it (an earlier instant, with its time)."""
        if self._pending and event.tick < self._pending[0].tick:
            raise ValueError(f"event at tick {event.tick} after tick {self._pending[0].tick}")
        if event.tick < self._now:
            raise ValueError(f"event at tick {event.tick} before written time {self._now}")
        words = self.flush() if self._pending and event.tick > self._pending[0].tick else []
        self._pending.append(event)
        return words

    def flush(self) -> list[str]:
        """Complete the pending instant (if any) and return its words."""
        if not self._pending:
            return []
        ordered = sorted(self._pending, key=NoteEvent.sort_key)
        words = event_words(ordered, self.params, self._now)
        self._now = ordered[0].tick
        self._pending = []
        return words


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


# --- statistics ----------------------------------------------------------------------------------

@dataclass
class TextStats:
    notes: int = 0
    words: int = 0
    time_words: int = 0
    instant_words: int = 0

    @property
    def words_per_note(self) -> float:
        return self.words / self.notes if self.notes else 0.0

    def __add__(self, other: TextStats) -> TextStats:
        return TextStats(self.notes + other.notes, self.words + other.words,
                         self.time_words + other.time_words,
                         self.instant_words + other.instant_words)


def text_stats(text: str) -> TextStats:
    """Notes (note-ons) and body words of a text."""
    stats = TextStats()
    for word in split_words(text):
        if word.startswith("P_"):
            stats.time_words += 1
        elif not word.startswith("["):
            stats.instant_words += 1
            stats.notes += word.count("+")
        else:
            continue
        stats.words += 1
    return stats
