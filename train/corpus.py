"""Corpus building: MIDI files → a corpus folder of training examples (docs/TRAINING.md "Corpus").

The parts of a piece and their channels are train/corpus_parts.py; one piece's examples are
train/corpus_examples.py (both re-exported here). This module finds the files, reads them (a
process pool), splits the pieces (files, never transpositions or parts, so no piece is on both
sides) and writes, and reads back, the folder:

    corpus.json   manifest: parameters, sources, split, counts, metadata tokens, skipped files
    train.jsonl   one example a line: {"text", "piece", "part", "transposition", "notes"}
    val.jsonl     the same for the validation pieces
"""
from __future__ import annotations

import fnmatch
import json
import os
import random
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from midicopilot.train import events as ev
from midicopilot.train.corpus_examples import (
    ENTRY_HAZARD,
    MAX_ENTRY_BEATS,
    TRANSPOSITIONS,
    Example,
    entry_beats,
    header_words,
    piece_examples,
    target_example,
    transpose_pitch,
)
from midicopilot.train.corpus_parts import (
    DRUM_CHANNEL,
    GM_FAMILIES,
    PART_NAMES,
    canonical_part,
    channel_map,
    part_token,
    piece_parts,
)

__all__ = [
    "CORPUS_FORMAT", "CORPUS_VERSION", "DRUM_CHANNEL", "ENTRY_HAZARD", "GM_FAMILIES",
    "MAX_ENTRY_BEATS", "MIDI_SUFFIXES", "PART_NAMES", "TRANSPOSITIONS",
    "CorpusError", "CorpusSummary", "Example", "PieceResult",
    "build_corpus", "canonical_part", "channel_map", "corpus_texts", "entry_beats",
    "find_midi_files", "genre_for", "header_words", "iter_examples", "load_genre_map",
    "load_manifest", "part_token", "piece_examples", "piece_parts", "split_pieces",
    "target_example", "transpose_pitch",
]

CORPUS_FORMAT = "midicopilot-corpus"
CORPUS_VERSION = 1
MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")


class CorpusError(ValueError):
    """A corpus that cannot be built or read. `str(err)` is one line."""


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
