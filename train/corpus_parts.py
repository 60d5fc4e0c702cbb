"""The parts of a piece and how an example lays them out (docs/TRAINING.md "Corpus").

A *part* is one (track, channel) source of the file that has notes. For one target part, the target
moves to channel 0 (the model's channel), drums (source channel 9) stay on 9 unless they are the
target, and the other parts take channels 1, 2, …, 15 in (track, channel) order, skipping 9 while
a drum part holds it and folding extra parts onto 1, 2, … again (`channel_map`; FORMAT.md rule 9
then merges the voices that collide). The target's `[PART_…]` word is the canonical voice or
instrument its track name names (`Alto Oboe 2 Viloin 2` → `[PART_ALTO]`), else its General MIDI
program family, else its 1-based index (`part_token`).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from midicopilot.train import events as ev

DRUM_CHANNEL = 9

# General MIDI program families (program // 8), for parts without a track name.
GM_FAMILIES = (
    "PIANO", "CHROMATIC_PERCUSSION", "ORGAN", "GUITAR", "BASS", "STRINGS", "ENSEMBLE", "BRASS",
    "REED", "PIPE", "SYNTH_LEAD", "SYNTH_PAD", "SYNTH_EFFECTS", "ETHNIC", "PERCUSSIVE",
    "SOUND_EFFECTS",
)

# Part names as musicians write them (track names: "Soprano", "Violin 1", "Alto Oboe 2 Viloin 2",
# "Bassus") → one canonical word each, so a corpus gives a small, clean [PART_…] vocabulary.
PART_NAMES: dict[str, str] = {
    **{w: "SOPRANO" for w in ("SOPRANO", "SOPRAN", "CANTUS", "SUPERIUS", "DISCANTUS", "TREBLE")},
    **{w: "ALTO" for w in ("ALTO", "ALT", "ALTUS", "CONTRALTO", "CONTRATENOR", "MEZZO")},
    **{w: "TENOR" for w in ("TENOR", "TENORE")},
    **{w: "BARITONE" for w in ("BARITONE", "BARITON")},
    **{w: "BASS" for w in ("BASS", "BASSO", "BASSUS", "BASSE")},
    **{w: "VIOLIN" for w in ("VIOLIN", "VIOLINS", "VIOLINO", "VIOLINI", "VIOLINE", "VLN", "VL")},
    **{w: "VIOLA" for w in ("VIOLA", "VIOLAS", "VIOLE", "VLA")},
    **{w: "CELLO" for w in ("CELLO", "CELLOS", "VIOLONCELLO", "VIOLONCELLI", "VC")},
    **{w: "CONTRABASS" for w in ("CONTRABASS", "CONTRABASSO", "KONTRABASS", "VIOLONE")},
    **{w: "FLUTE" for w in ("FLUTE", "FLUTES", "FLAUTO", "FLAUTI", "FLOETE", "PICCOLO")},
    **{w: "RECORDER" for w in ("RECORDER", "RECORDERS", "BLOCKFLOETE")},
    **{w: "OBOE" for w in ("OBOE", "OBOES", "OBOI", "HAUTBOIS")},
    **{w: "CLARINET" for w in ("CLARINET", "CLARINETS", "CLARINETTO", "KLARINETTE")},
    **{w: "BASSOON" for w in ("BASSOON", "BASSOONS", "FAGOTTO", "FAGOTT", "FAGOTTI")},
    **{w: "SAXOPHONE" for w in ("SAXOPHONE", "SAX")},
    **{w: "HORN" for w in ("HORN", "HORNS", "CORNO", "CORNI")},
    **{w: "TRUMPET" for w in ("TRUMPET", "TRUMPETS", "TROMBA", "TROMBE", "CLARINO")},
    **{w: "CORNET" for w in ("CORNET", "CORNETT", "CORNETTO")},
    **{w: "TROMBONE" for w in ("TROMBONE", "TROMBONES", "POSAUNE")},
    **{w: "TUBA" for w in ("TUBA",)},
    **{w: "PIANO" for w in ("PIANO", "PIANOFORTE", "KLAVIER")},
    **{w: "ORGAN" for w in ("ORGAN", "ORGANO", "ORGEL")},
    **{w: "HARPSICHORD" for w in ("HARPSICHORD", "CEMBALO")},
    **{w: "CONTINUO" for w in ("CONTINUO",)},
    **{w: "HARP" for w in ("HARP", "ARPA")},
    **{w: "GUITAR" for w in ("GUITAR", "GUITARS", "GUITARRA")},
    **{w: "LUTE" for w in ("LUTE", "LIUTO", "THEORBO")},
    **{w: "TIMPANI" for w in ("TIMPANI", "TIMPANO", "PAUKEN")},
    **{w: "DRUMS" for w in ("DRUMS", "DRUM", "PERCUSSION", "KIT")},
    **{w: "VOICE" for w in ("VOICE", "VOCAL", "VOCALS", "VOX", "VOCE", "SINGER")},
}


def canonical_part(name: str) -> str | None:
    """The canonical part word of a track name: its first word that names a voice or an
    instrument ("Alto Oboe 2 Viloin 2" → ALTO, "Double Bass" → CONTRABASS), or None."""
    words = re.findall(r"[A-Z]+", name.upper())
    for i, word in enumerate(words):
        if word == "DOUBLE" and words[i + 1:i + 2] == ["BASS"]:
            return "CONTRABASS"
        if word in PART_NAMES:
            return PART_NAMES[word]
    return None


def piece_parts(piece: ev.Piece) -> list[tuple[int, int]]:
    """The piece's parts: its (track, channel) sources with notes, in order."""
    return sorted({n.source for n in piece.notes})


def part_token(piece: ev.Piece, source: tuple[int, int], index: int,
               use_name: bool = True) -> str:
    """[PART_…] of a source: its track name's canonical part word, else its GM family, else its
    index."""
    part = canonical_part(piece.part_names.get(source, "")) if use_name else None
    if part:
        return f"[PART_{part}]"
    if source[1] == DRUM_CHANNEL:
        return "[PART_DRUMS]"
    if source in piece.programs:
        return f"[PART_{GM_FAMILIES[piece.programs[source] // 8]}]"
    return f"[PART_{index + 1}]"


def channel_map(parts: Sequence[tuple[int, int]], target: tuple[int, int]) -> dict:
    """Source → output channel for one target part (see the module docstring)."""
    mapping = {target: 0}
    drums = [p for p in parts if p != target and p[1] == DRUM_CHANNEL]
    for part in drums:
        mapping[part] = DRUM_CHANNEL
    free = [c for c in range(1, 16) if c != DRUM_CHANNEL or not drums]
    others = [p for p in parts if p not in mapping]
    for i, part in enumerate(others):
        mapping[part] = free[i % len(free)]
    return mapping
