"""Real MIDI files that no one here wrote: the music21 package's own .mid files, plus scores of its
corpus exported to MIDI by music21 itself. Used by the differential tests, the demo corpus and the
README's main job. Exports are cached (they take ~0.5 s a score), so a second call is instant.
"""
from __future__ import annotations

import json
import os
import signal
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import platformdirs

# Composers (music21's corpus names) and how many of each to export by default. Bach's chorales
# are four-part pieces, the demo's training set; the others add other textures and meters.
DEFAULT_COMPOSERS: dict[str, int] = {
    "bach": 440,
    "beethoven": 12,
    "mozart": 20,
    "haydn": 10,
    "monteverdi": 40,
    "palestrina": 40,
    "trecento": 20,
    "josquin": 10,
    "airdsAirs": 6,
    "essenFolksong": 6,
    "joplin": 1,
    "schoenberg": 2,
    "corelli": 1,
    "handel": 1,
    "weber": 1,
    "verdi": 1,
    "schubert": 1,
    "chopin": 1,
    "cpebach": 1,
    "beach": 1,
    "luca": 1,
    "ciconia": 1,
    "lusitano": 1,
    "liliuokalani": 1,
}
# Every composer folder of music21's corpus (what a music21 name such as `bach/bwv108.6` starts
# with).
KNOWN_COMPOSERS = frozenset({
    *DEFAULT_COMPOSERS, "schumann", "ryansMammoth", "oneills1850", "demos", "leadSheet",
    "miscFolk", "theoryExercises", "nottingham", "schumann_clara", "schumann_robert",
    "bach_cpe",
})
MAX_SCORES_PER_OPUS = 3
ANALYSIS_SUFFIXES = (".rntxt",)
# A few corpus works (Beethoven's quartets) take minutes to parse; past this they are skipped, so
# a cold cache builds in minutes on two cores. The differential tests count what they got.
EXPORT_SECONDS_PER_WORK = 45


def default_cache_dir() -> Path:
    root = os.environ.get("MIDICOPILOT_CACHE") or platformdirs.user_cache_dir("midicopilot")
    return Path(root) / "music21-midi"


def package_midi_files() -> list[Path]:
    """The .mid files that ship inside the music21 package (its MIDI test files and examples)."""
    import music21

    root = Path(music21.__file__).parent
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mid", ".midi"))


def _work_name(composer: str, source: str | Path) -> str:
    """music21's corpus name of a work: `bach/bwv108.6`, `mozart/k155/movement1`."""
    parts = Path(source).with_suffix("").parts
    below = parts[len(parts) - parts[::-1].index(composer):] if composer in parts else parts[-1:]
    return "/".join((composer, *below))


def _file_stem(name: str) -> str:
    """The exported file's stem for a work name: `mozart/k155/movement1` → `mozart-k155-movement1`
    (works of one composer in different folders share file names like `movement1`)."""
    return name.replace("/", "-").replace(" ", "_")


def _export_one(job: tuple[str, str, str]) -> list[str]:
    """Parse one corpus work and write it (or the first scores of an opus) as MIDI."""
    composer, source, dest_dir = job
    from music21 import corpus, stream

    stem = _file_stem(_work_name(composer, source))
    done_mark = Path(dest_dir) / f".{stem}.done"
    if done_mark.exists():
        return json.loads(done_mark.read_text())
    written: list[str] = []

    def give_up(signum, frame):
        raise TimeoutError

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(EXPORT_SECONDS_PER_WORK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            work = corpus.parse(source)
            scores = list(work.scores)[:MAX_SCORES_PER_OPUS] if isinstance(work, stream.Opus) \
                else [work]
            for i, score in enumerate(scores):
                name = f"{stem}.mid" if len(scores) == 1 else f"{stem}-{i}.mid"
                out = Path(dest_dir) / name
                score.write("midi", fp=str(out))
                if out.exists() and out.stat().st_size > 0:
                    written.append(name)
        except Exception:  # noqa: BLE001 - music21 raises many kinds; a work that fails is skipped
            pass
        finally:
            signal.alarm(0)
    done_mark.write_text(json.dumps(written))
    return written


def export_corpus(
    dest: Path | None = None,
    composers: dict[str, int] | None = None,
    workers: int = 2,
    progress: bool = False,
) -> list[Path]:
    """Export music21 corpus works to MIDI under `dest` (cached) and return the files, sorted."""
    from music21 import corpus

    dest = Path(dest) if dest else default_cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, str, str]] = []
    for composer, limit in (composers or DEFAULT_COMPOSERS).items():
        # Roman-numeral analyses (.rntxt) are chord labels, not scores.
        scores = sorted(str(p) for p in corpus.getComposer(composer)
                        if Path(p).suffix not in ANALYSIS_SUFFIXES)
        for source in scores[:limit]:
            jobs.append((composer, source, str(dest)))
    names: list[str] = []
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        results: Iterable[list[str]] = pool.map(_export_one, jobs, chunksize=4)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(jobs), desc="music21 → MIDI", unit="work")
        for written in results:
            names.extend(written)
    return sorted(dest / n for n in names)


def all_midi_files(dest: Path | None = None, composers: dict[str, int] | None = None,
                   progress: bool = False) -> list[Path]:
    """Every real MIDI file this module can make: the package's own, then the exported corpus."""
    return package_midi_files() + export_corpus(dest, composers, progress=progress)


def bach_chorales(dest: Path | None = None, limit: int = 440,
                  progress: bool = False) -> list[Path]:
    """The Bach works of music21's corpus as MIDI (mostly four-part chorales): the demo corpus."""
    return export_corpus(dest, {"bach": limit}, progress=progress)


def _composer_works(composer: str) -> dict[str, str]:
    """music21 name → source path of every work of a composer in music21's corpus."""
    from music21 import corpus

    return {_work_name(composer, p): str(p) for p in corpus.getComposer(composer)}


def music21_name(path: Path | str) -> str | None:
    """`<cache>/bach-bwv108.6.mid` → `bach/bwv108.6`: the music21 corpus name of a file this
    module exported (an opus's scores keep their `-0`, `-1` suffix), else None."""
    path = Path(path)
    composer, _, rest = path.stem.partition("-")
    if path.suffix != ".mid" or not rest or composer not in KNOWN_COMPOSERS:
        return None
    try:
        works = _composer_works(composer)
    except ModuleNotFoundError:
        return None
    for name in works:
        stem = _file_stem(name)
        if path.stem == stem:
            return name
        if path.stem.startswith(stem + "-") and path.stem[len(stem) + 1:].isdigit():
            return f"{name}-{path.stem[len(stem) + 1:]}"
    return None


def is_music21_name(name: str) -> bool:
    """Whether `name` looks like a music21 corpus name (`bach/bwv108.6`), not a file path."""
    composer, _, work = name.partition("/")
    return composer in KNOWN_COMPOSERS and bool(work) and not Path(name).exists()


def export_by_name(name: str, dest: Path | None = None) -> Path:
    """The MIDI file of one music21 corpus work (`bach/bwv108.6`, `mozart/k155/movement1`),
    exported once and cached. An opus's scores are `name-0`, `name-1`, … Raises LookupError when
    music21 has no such work or cannot export it."""
    composer = name.partition("/")[0]
    dest = Path(dest) if dest else default_cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    works = _composer_works(composer)
    work, index = name, None
    if work not in works and "-" in name:
        base, _, number = name.rpartition("-")
        if number.isdigit():
            work, index = base, int(number)
    if work not in works:
        raise LookupError(f"{name}: music21's corpus has no such work")
    written = _export_one((composer, works[work], str(dest)))
    wanted = [w for w in written if w == f"{_file_stem(name)}.mid"]
    if not wanted and index is None and len(written) == 1:
        wanted = written
    if not wanted:
        raise LookupError(f"{name}: music21 could not export it to MIDI")
    return dest / wanted[0]


def main(argv: Sequence[str] | None = None) -> None:
    files = all_midi_files(progress=True)
    print(f"{len(files)} MIDI files")


if __name__ == "__main__":
    main()
