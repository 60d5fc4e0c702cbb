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
MAX_SCORES_PER_OPUS = 3
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


def _export_one(job: tuple[str, str, str]) -> list[str]:
    """Parse one corpus work and write it (or the first scores of an opus) as MIDI."""
    composer, source, dest_dir = job
    from music21 import corpus, stream

    stem = f"{composer}-{Path(source).stem}".replace(" ", "_")
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
        for source in sorted(str(p) for p in corpus.getComposer(composer))[:limit]:
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


def main(argv: Sequence[str] | None = None) -> None:
    files = all_midi_files(progress=True)
    print(f"{len(files)} MIDI files")


if __name__ == "__main__":
    main()
