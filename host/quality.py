"""How well a part plays along with a band: the figures of `midicopilot eval` (docs/QUALITY.md).

Everything here works on notes in language ticks (`Note(start, end, pitch)`), so the same code
measures the model's part and the real part it replaces against the same band. One line each:

- in-chord: share of the part's onsets whose pitch class sounds in the band (any other non-drum
  part) during the beat of the onset; onsets over a silent band are not counted;
- random in-chord: the same for a pitch class drawn uniformly at random on each of those onsets
  (its expectation, computed exactly: no sampling noise);
- on-grid: share of onsets within half a 32nd note of the 16th-note grid (a 32nd-wide window);
- notes per beat: onsets divided by the piece's length in beats;
- pitch range: highest minus lowest pitch, in semitones;
- mean length: mean note duration, in beats;
- repeated: share of onsets (after the first) that strike the same pitch as the onset before.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Note:
    start: int
    end: int
    pitch: int


def band_chords(band: Iterable[Note], tpq: int, beats: int) -> list[int]:
    """For each beat, the pitch classes the band sounds during it, as a 12-bit mask."""
    masks = [0] * beats
    for n in band:
        first, last = n.start // tpq, (max(n.end, n.start + 1) - 1) // tpq
        bit = 1 << (n.pitch % 12)
        for b in range(max(first, 0), min(last, beats - 1) + 1):
            masks[b] |= bit
    return masks


@dataclass
class Tally:
    """Counts behind a part's figures; tallies add, so figures pool over seeds and pieces."""

    onsets: int = 0
    chord_onsets: int = 0      # onsets over a sounding band
    in_chord: int = 0
    random_in_chord: float = 0.0
    on_grid: int = 0
    beats: int = 0
    length_ticks: int = 0
    repeats: int = 0
    successions: int = 0       # onsets with an onset before them
    low: int | None = None
    high: int | None = None
    pieces: int = 0

    def __add__(self, other: Tally) -> Tally:
        low = [x for x in (self.low, other.low) if x is not None]
        high = [x for x in (self.high, other.high) if x is not None]
        summed = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)
                  if f.name not in ("low", "high")}
        return Tally(**summed, low=min(low) if low else None, high=max(high) if high else None)


def tally(part: Sequence[Note], chords: Sequence[int], tpq: int, beats: int) -> Tally:
    """Count one part's onsets against the band's chords (see the module docstring)."""
    sixteenth = tpq // 4
    tolerance = tpq // 16  # half a 32nd note, rounded down to whole ticks
    t = Tally(beats=beats, pieces=1)
    previous: int | None = None
    for n in sorted(part, key=lambda n: (n.start, n.pitch)):
        t.onsets += 1
        t.length_ticks += n.end - n.start
        off = n.start % sixteenth
        if min(off, sixteenth - off) <= tolerance:
            t.on_grid += 1
        beat = n.start // tpq
        mask = chords[beat] if 0 <= beat < len(chords) else 0
        if mask:
            t.chord_onsets += 1
            t.in_chord += bool(mask >> (n.pitch % 12) & 1)
            t.random_in_chord += bin(mask).count("1") / 12
        if previous is not None:
            t.successions += 1
            t.repeats += n.pitch == previous
        previous = n.pitch
        t.low = n.pitch if t.low is None else min(t.low, n.pitch)
        t.high = n.pitch if t.high is None else max(t.high, n.pitch)
    return t


@dataclass
class Figures:
    """A part's figures (None where there is nothing to divide by)."""

    notes: int
    in_chord: float | None
    random_in_chord: float | None
    on_grid: float | None
    notes_per_beat: float | None
    pitch_range: int | None
    mean_length_beats: float | None
    repeated: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def figures(t: Tally, tpq: int) -> Figures:
    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    return Figures(
        notes=t.onsets,
        in_chord=ratio(t.in_chord, t.chord_onsets),
        random_in_chord=ratio(t.random_in_chord, t.chord_onsets),
        on_grid=ratio(t.on_grid, t.onsets),
        notes_per_beat=ratio(t.onsets, t.beats),
        pitch_range=None if t.low is None or t.high is None else t.high - t.low,
        mean_length_beats=ratio(t.length_ticks, t.onsets * tpq),
        repeated=ratio(t.repeats, t.successions),
    )


def piece_beats(*parts: Iterable[Note], tpq: int) -> int:
    """The piece's length in beats: up to the last note-off of any part (at least one)."""
    end = max((n.end for part in parts for n in part), default=0)
    return max(1, -(-end // tpq))
