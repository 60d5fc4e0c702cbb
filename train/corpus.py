"""Corpus building: MIDI files → training examples in the event language (docs/FORMAT.md).

A multi-part piece gives one example per target part. A *part* is one (track, channel) source of
the file that has notes. For each target part:

- the target part moves to channel 0 (the model's channel);
- drum parts (source channel 9) stay on channel 9, unless the drum part is the target;
- the other parts take channels 1, 2, …, 15 in (track, channel) order, skipping 9 while a drum part
  holds it; a piece with more parts than free channels folds the extra parts onto channels 1, 2, …
  again (rule 9 of FORMAT.md then merges the voices that collide);
- the example's header is `[GENRE_<NAME>]` (from --genre or a genre map; omitted without one)
  followed by `[PART_<NAME>]`: the canonical voice or instrument its track name names
  (`Alto Oboe 2 Viloin 2` → `[PART_ALTO]`, `Violin 1` → `[PART_VIOLIN]`: see PART_NAMES), else the
  General MIDI program family of the part (`[PART_STRINGS]`, `[PART_DRUMS]` for channel 9), else
  `[PART_<n>]` (its 1-based index).

Optional transposition writes each example in all 12 keys (−5 … +6 semitones). A note that would
leave 0–127 moves by an octave (never wraps); drums (source channel 9) are never transposed.

Pieces (files), never transpositions or parts, are split into train and validation, so no piece
is on both sides. Output folder:

    corpus.json   manifest: parameters, sources, split, counts, metadata tokens, skipped files
    train.jsonl   one example a line: {"text", "piece", "part", "transposition", "notes"}
    val.jsonl     the same for the validation pieces
"""
from __future__ import annotations

import fnmatch
import json
import os
import random
import re
import tomllib
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from midicopilot.train import events as ev

CORPUS_FORMAT = "midicopilot-corpus"
CORPUS_VERSION = 1
MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")
DRUM_CHANNEL = 9
TRANSPOSITIONS = tuple(range(-5, 7))  # all 12 keys: -5 … +6

# General MIDI program families (program // 8), for parts without a track name.
GM_FAMILIES = (
    "PIANO", "CHROMATIC_PERCUSSION", "ORGAN", "GUITAR", "BASS", "STRINGS", "ENSEMBLE", "BRASS",
    "REED", "PIPE", "SYNTH_LEAD", "SYNTH_PAD", "SYNTH_EFFECTS", "ETHNIC", "PERCUSSIVE",
    "SOUND_EFFECTS",
)


class CorpusError(ValueError):
    """A corpus that cannot be built or read. `str(err)` is one line."""


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


@dataclass
class PieceResult:
    """What one file gave: its examples, or the reason it was skipped."""

    path: str
    examples: list[Example] = field(default_factory=list)
    error: str | None = None


@dataclass
class CorpusSummary:
    out: Path
    pieces: dict[str, int]          # split → pieces
    examples: dict[str, int]        # split → examples
    notes: dict[str, int]           # split → notes (note-ons, over every example)
    meta_tokens: list[str]
    skipped: list[tuple[str, str]]  # (path, reason)


# --- finding files and genres -------------------------------------------------------------------

def find_midi_files(sources: Iterable[str | Path]) -> list[Path]:
    """MIDI files named directly, or found (recursively, sorted) in folders."""
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*")
                                if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES))
        elif path.exists():
            files.append(path)
        else:
            raise CorpusError(f"{path}: no such file or folder")
    return files


def load_genre_map(path: Path | str) -> list[tuple[str, str]]:
    """A genre map: a TOML or JSON table {"glob pattern" = "GENRE"}, first match wins.

    Patterns match the file's path as given, or its name, or any of its parent folders' names,
    e.g. `"*/blues/*" = "blues"`, `"blues" = "blues"` (a folder) or `"bwv*.mid" = "chorale"`.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise CorpusError(f"{path}: {err.strerror or err}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise CorpusError(f"{path}: not a TOML/JSON genre map ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise CorpusError(f"{path}: a genre map is a table of \"pattern\" = \"GENRE\"")
    return list(data.items())


def genre_for(path: Path, genre_map: Sequence[tuple[str, str]], default: str | None) -> str | None:
    candidates = [str(path), path.name, *(p.name for p in path.parents)]
    for pattern, genre in genre_map:
        if any(fnmatch.fnmatch(c, pattern) for c in candidates):
            return genre
    return default


# --- one piece → examples -----------------------------------------------------------------------

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


def piece_parts(piece: ev.Piece) -> list[tuple[int, int]]:
    """The piece's parts: its (track, channel) sources with notes, in order."""
    return sorted({n.source for n in piece.notes})


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


def header_words(text: str) -> list[str]:
    """The metadata words that open a text."""
    words = []
    for word in text.split(" "):
        if not word.startswith("["):
            break
        words.append(word)
    return words


def _process(job: tuple[str, dict, str | None, tuple[int, ...]]) -> PieceResult:
    path, params_dict, genre, transpositions = job
    params = ev.LanguageParams.from_dict(params_dict)
    try:
        piece = ev.read_piece(path, params)
    except ev.MidiError as err:
        return PieceResult(path, error=str(err).removeprefix(f"{path}: "))
    if not piece.notes:
        return PieceResult(path, error="no notes")
    return PieceResult(path, piece_examples(piece, params, genre, transpositions))


def split_pieces(pieces: Sequence[str], val_fraction: float, seed: int) -> set[str]:
    """The validation pieces: a seeded shuffle of the sorted names, `val_fraction` of them (at
    least one when there are two pieces or more and the fraction is positive)."""
    names = sorted(pieces)
    if val_fraction <= 0 or len(names) < 2:
        return set()
    count = min(len(names) - 1, max(1, round(val_fraction * len(names))))
    random.Random(seed).shuffle(names)
    return set(names[:count])


# --- the whole corpus -----------------------------------------------------------------------------

def build_corpus(
    sources: Sequence[str | Path],
    out: Path | str,
    *,
    genre: str | None = None,
    genre_map: Sequence[tuple[str, str]] = (),
    transpose: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    min_part_count: int = 1,
    params: ev.LanguageParams | None = None,
    workers: int = 0,
    progress: bool = True,
    on_skip: Callable[[str, str], None] | None = None,
) -> CorpusSummary:
    """Read MIDI files (or folders), write the corpus folder, and return a summary.

    Files that cannot be read are skipped and reported through `on_skip(path, reason)` and in the
    manifest; a corpus with no readable piece is an error. A track name used as [PART_…] by fewer
    than `min_part_count` pieces gives way to the part's GM family (large, messy corpora name
    tracks after songs and people).
    """
    params = params or ev.LanguageParams()
    if not 0 <= val_fraction < 1:
        raise CorpusError(f"--val-fraction must be in [0, 1), not {val_fraction}")
    files = find_midi_files(sources)
    if not files:
        raise CorpusError("no MIDI files found in " + ", ".join(str(s) for s in sources))
    out = Path(out)
    shifts = TRANSPOSITIONS if transpose else (0,)
    jobs = [(str(f), params.to_dict(), genre_for(f, genre_map, genre), shifts) for f in files]

    results: list[PieceResult] = []
    for result in _run(jobs, workers, progress):
        results.append(result)
        if result.error is not None and on_skip:
            on_skip(result.path, result.error)
    good = [r for r in results if r.error is None]
    skipped = [(r.path, r.error or "") for r in results if r.error is not None]
    if not good:
        raise CorpusError(f"no readable MIDI file with notes among {len(files)} "
                          f"({len(skipped)} skipped)")

    val = split_pieces([r.path for r in good], val_fraction, seed)
    name_pieces = Counter(part for r in good for part in {e.part for e in r.examples})
    out.mkdir(parents=True, exist_ok=True)
    counts = {s: Counter() for s in ("train", "val")}
    meta: set[str] = set()
    handles = {s: (out / f"{s}.jsonl.tmp").open("w") for s in ("train", "val")}
    try:
        for result in good:
            split = "val" if result.path in val else "train"
            counts[split]["pieces"] += 1
            for example in result.examples:
                if name_pieces[example.part] < min_part_count:
                    example = example.with_part(example.part_fallback)
                handles[split].write(example.to_json() + "\n")
                counts[split]["examples"] += 1
                counts[split]["notes"] += example.notes
                meta.update(header_words(example.text))
    finally:
        for handle in handles.values():
            handle.close()
    for split in ("train", "val"):
        os.replace(out / f"{split}.jsonl.tmp", out / f"{split}.jsonl")
    manifest = {
        "format": CORPUS_FORMAT,
        "version": CORPUS_VERSION,
        "event_language": ev.LANGUAGE_VERSION,
        "params": params.to_dict(),
        "sources": [str(s) for s in sources],
        "genre": genre,
        "genre_map": [list(item) for item in genre_map],
        "transpositions": list(shifts),
        "val_fraction": val_fraction,
        "seed": seed,
        "min_part_count": min_part_count,
        "split": {"train": sorted(r.path for r in good if r.path not in val),
                  "val": sorted(val)},
        "counts": {s: dict(c) for s, c in counts.items()},
        "meta_tokens": sorted(meta),
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
    }
    (out / "corpus.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return CorpusSummary(
        out=out,
        pieces={s: counts[s]["pieces"] for s in counts},
        examples={s: counts[s]["examples"] for s in counts},
        notes={s: counts[s]["notes"] for s in counts},
        meta_tokens=sorted(meta),
        skipped=skipped,
    )


def _run(jobs: list, workers: int, progress: bool) -> Iterator[PieceResult]:
    workers = workers or min(4, os.cpu_count() or 1)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="corpus", unit="file")
    try:
        if workers <= 1 or len(jobs) < 8:
            for job in jobs:
                yield _process(job)
                if bar:
                    bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(_process, jobs, chunksize=8):
                    yield result
                    if bar:
                        bar.update()
    finally:
        if bar:
            bar.close()


# --- reading a corpus back ------------------------------------------------------------------------

def load_manifest(corpus: Path | str) -> dict:
    """corpus.json of a corpus folder; a missing or foreign folder is a CorpusError."""
    path = Path(corpus)
    manifest_path = path / "corpus.json"
    if not path.is_dir():
        raise CorpusError(f"{path}: no such corpus folder (build one with `midicopilot corpus "
                          "build`)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise CorpusError(f"{path}: not a corpus folder (no corpus.json)") from None
    except (OSError, ValueError) as err:
        raise CorpusError(f"{manifest_path}: unreadable manifest ({err})") from None
    if manifest.get("format") != CORPUS_FORMAT:
        raise CorpusError(f"{manifest_path}: not a midicopilot corpus manifest")
    if manifest.get("event_language") != ev.LANGUAGE_VERSION:
        raise CorpusError(f"{path}: event language {manifest.get('event_language')!r}, this "
                          f"version speaks {ev.LANGUAGE_VERSION!r}; rebuild the corpus")
    return manifest


def iter_examples(corpus: Path | str, split: str) -> Iterator[dict]:
    """The examples of one split ("train" or "val") of a corpus folder, as dicts."""
    load_manifest(corpus)
    path = Path(corpus) / f"{split}.jsonl"
    try:
        handle = path.open()
    except OSError as err:
        raise CorpusError(f"{path}: {err.strerror or err}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            try:
                yield json.loads(line)
            except ValueError:
                raise CorpusError(f"{path}:{number}: not a JSON line") from None


def corpus_texts(corpus: Path | str, split: str) -> Iterator[str]:
    for example in iter_examples(corpus, split):
        yield example["text"]
