"""One piece → training examples in the event language (docs/FORMAT.md, docs/TRAINING.md
"Corpus"): one example per (target part, transposition), the target entering after the band.

Transposition writes an example in another key; a note that would leave 0–127 moves by an octave
(never wraps); drums (source channel 9) are never transposed.
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from midicopilot.train import events as ev
from midicopilot.train.corpus_parts import DRUM_CHANNEL, channel_map, part_token, piece_parts

TRANSPOSITIONS = tuple(range(-5, 7))  # all 12 keys: -5 … +6


@dataclass
class Example:
    text: str
    piece: str
    part: str
    transposition: int
    notes: int
    part_fallback: str = ""  # the [PART_…] token used when `part` (a track name) is too rare

    def with_part(self, part: str) -> Example:
        """The example with another [PART_…] token in its header."""
        words = self.text.split(" ")
        words = [part if w == self.part else w for w in header_words(self.text)] + \
            words[len(header_words(self.text)):]
        return Example(" ".join(words), self.piece, part, self.transposition, self.notes)

    def to_json(self) -> str:
        return json.dumps({"text": self.text, "piece": self.piece, "part": self.part,
                           "transposition": self.transposition, "notes": self.notes})


def header_words(text: str) -> list[str]:
    """The metadata words that open a text."""
    words = []
    for word in text.split(" "):
        if not word.startswith("["):
            break
        words.append(word)
    return words


def transpose_pitch(pitch: int, shift: int) -> int:
    """Shift a pitch; one that would leave 0–127 moves by octaves back inside (never wraps)."""
    p = pitch + shift
    while p > 127:
        p -= 12
    while p < 0:
        p += 12
    return p


# Live, the band always plays first: the copilot hears the band's first instant before it can
# play anything, so its part never sounds in the piece's first instant, and it may come in later
# still. Examples are written the same way (docs/QUALITY.md, "Entering after the band"): the
# target's notes that start before its entry are left out. The entry is the band's first onset
# plus a number of beats drawn per example (piece, part, key) from a seeded hash: each beat the
# part comes in with probability ENTRY_HAZARD (0 beats: half the examples, 1: a quarter, …), so
# however long the model has been silent, its chance to come in at the next beat is the same.
ENTRY_HAZARD = 0.5
MAX_ENTRY_BEATS = 16


def entry_beats(piece: str, part: int, shift: int) -> int:
    """The entry delay (beats after the band's first onset) of one example."""
    u = (zlib.crc32(f"{piece}|{part}|{shift}".encode()) + 0.5) / 2**32
    beats = 0
    while u < (1 - ENTRY_HAZARD) ** (beats + 1) and beats < MAX_ENTRY_BEATS:
        beats += 1
    return beats


def piece_examples(piece: ev.Piece, params: ev.LanguageParams, genre: str | None,
                   transpositions: Sequence[int] = (0,)) -> list[Example]:
    """Every (target part, transposition) example of a piece, the target entering after the
    band (see ENTRY_BEATS)."""
    return [target_example(piece, params, genre, target, shift,
                           entry_beats=entry_beats(piece.path, index, shift))
            for index, target in enumerate(piece_parts(piece)) for shift in transpositions]


def target_example(piece: ev.Piece, params: ev.LanguageParams, genre: str | None,
                   target: tuple[int, int], shift: int = 0,
                   part_word: str | None = None, entry_beats: int | None = None) -> Example:
    """One example: `target` on channel 0, the other parts on 1–15, transposed by `shift`.
    `part_word` replaces the [PART_…] word the target's name gives. With `entry_beats`, the
    target's notes that start before the band's first onset plus that many beats are left out
    (0: only those in the band's first instant); None keeps every note."""
    parts = piece_parts(piece)
    index = parts.index(target)
    mapping = channel_map(parts, target)
    genre_words = [ev.meta_token("GENRE", genre)] if genre else []
    header = [*genre_words, part_word or part_token(piece, target, index)]
    entry = -1
    if entry_beats is not None:
        band = [n.start for n in piece.notes if n.source != target]
        if band:
            entry = min(band) + entry_beats * params.ticks_per_quarter
    notes = [
        ev.Note(mapping[n.source],
                n.pitch if n.source[1] == DRUM_CHANNEL else transpose_pitch(n.pitch, shift),
                n.start, n.end, n.velocity, n.source, n.order)
        for n in piece.notes if n.source != target or n.start > entry
    ]
    notes = ev.normalize_notes(notes)
    text = ev.events_to_text(ev.notes_to_events(notes, params), params, header)
    return Example(text, piece.path, header[-1], shift, len(notes),
                   part_token(piece, target, index, use_name=False))
