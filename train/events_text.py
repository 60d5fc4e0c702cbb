"""The event language v1 (docs/FORMAT.md) as text, in Python: its parameters, note events, and
event text written and strictly read, batch and streaming.

The MIDI file side is `events_midi`; other code imports both through `midicopilot.train.events`.
The Rust engine (engine/src/events) implements the same language; both must write byte-identical
text for the same file. FORMAT.md is the truth; the rule numbers in comments refer to it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

LANGUAGE_VERSION = "v1"

_META_RE = re.compile(r"\[[A-Z][A-Z0-9]*_[A-Z0-9_]+\]")
_TIME_RE = re.compile(r"P_([1-9][0-9]{0,5})")
_HEX = "0123456789abcdef"


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


class NoteEvent(NamedTuple):
    tick: int
    kind: str  # "off" | "on"
    channel: int
    pitch: int
    velocity_bin: int | None = None

    def sort_key(self) -> tuple[int, int, int, int]:
        # docs/FORMAT.md "Sort order": time, note-off before note-on, channel, pitch.
        return (self.tick, 0 if self.kind == "off" else 1, self.channel, self.pitch)


# --- velocity (rule 11) --------------------------------------------------------------------------

def bin_of_velocity(velocity: int, bins: int) -> int:
    return (min(max(velocity, 1), 127) - 1) * bins // 127


def velocity_of_bin(velocity_bin: int, bins: int) -> int:
    return (2 * velocity_bin + 1) * 127 // (2 * bins) + 1


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
