"""The demo bundle: a tiny model trained on this CPU from music21's real MIDI files.

    1. style corpus   music21's Bach works (mostly four-part chorales), [GENRE_CHORALE], each part
                      in turn on channel 0, all 12 keys
    2. align corpus   music21's own .mid files and a mix of its corpus (ALIGN_COMPOSERS: Bach,
                      Renaissance polyphony, madrigals, trecento, folk songs, …), minus the style
                      corpus's validation pieces (so the style phase's validation loss is measured
                      on pieces the model never saw) and minus the classical string quartets of
                      UNSEEN_STYLE, kept for evaluating the model on a style it never trained on
    3. tokenizer      BPE on both corpora
    4. align phase    tiny OLMo2 + LoRA, train/configs/tiny.toml
    5. style phase    from the align checkpoint
    6. export         the bundle folder

Every stage is skipped when its output is complete, and a killed run resumes from its last
checkpoint, so the command is idempotent: a finished bundle is reused as it is.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from midicopilot.train import config as config_mod
from midicopilot.train import corpus as corpus_mod
from midicopilot.train import export as export_mod
from midicopilot.train import tokenizer as tok_mod
from midicopilot.train import trainer

DEMO_VERSION = 2
GENRE = "chorale"
VOCAB_SIZE = 2048
TOKENIZER_MAX_EXAMPLES = 3000
CONFIG = "demo"
# The align phase's music (music21 composer folders and how many works of each).
ALIGN_COMPOSERS: dict[str, int] = {
    "bach": 440, "palestrina": 150, "monteverdi": 60, "trecento": 60, "josquin": 10,
    "airdsAirs": 6, "essenFolksong": 12, "joplin": 1, "schoenberg": 2, "corelli": 1,
    "handel": 1, "weber": 1, "verdi": 1, "schubert": 1, "chopin": 1, "cpebach": 1, "beach": 1,
    "luca": 1, "ciconia": 1, "lusitano": 1, "liliuokalani": 1,
}
# Never trained on, in either phase: the "another style" of docs/QUALITY.md.
UNSEEN_STYLE: dict[str, int] = {"mozart": 16, "haydn": 9}


def _print(message: str) -> None:
    print(message, flush=True)


def build_demo_bundle(out: Path | str, work: Path | str | None = None, progress: bool = True,
                      log: Callable[[str], None] = _print, sets: tuple[str, ...] = (),
                      max_chorales: int = 0, max_align_files: int = 0,
                      vocab_size: int = VOCAB_SIZE) -> Path:
    """Build (or reuse) the demo bundle in `out`; intermediate results live in `work`.

    `sets` overrides config keys (as `--set`); `max_chorales`/`max_align_files` > 0 shrink the
    corpora (tests)."""
    out = Path(out)
    work = Path(work) if work else out.with_name(out.name + ".work")
    if _finished_bundle(out):
        log(f"{out}: finished demo bundle, reused")
        return out
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str) -> Callable[[], None]:
        started = time.time()

        def done() -> None:
            timings[name] = round(time.time() - started, 1)
        return done

    from midicopilot.train.music21_midi import bach_chorales, export_corpus, package_midi_files

    style_dir, align_dir = work / "corpus-style", work / "corpus-align"
    if not (style_dir / "corpus.json").exists():
        done = stage("style corpus")
        log("style corpus: music21's Bach works, all 12 keys")
        chorales = bach_chorales(limit=max_chorales or 440, progress=progress)
        corpus_mod.build_corpus(chorales, style_dir, genre=GENRE,
                                transpose=True, val_fraction=0.1, seed=0, progress=progress,
                                on_skip=lambda p, r: log(f"skipped {p}: {r}"))
        done()
    style_val = set(corpus_mod.load_manifest(style_dir)["split"]["val"])
    if not (align_dir / "corpus.json").exists():
        done = stage("align corpus")
        log("align corpus: music21's mix but the chorales held out for validation and the "
            "quartets kept unseen")
        mix = {c: min(n, max_align_files) if max_align_files else n
               for c, n in ALIGN_COMPOSERS.items()}
        files = [f for f in package_midi_files() + export_corpus(composers=mix, progress=progress)
                 if str(f) not in style_val and not _unseen(f)]
        files = files[:max_align_files or None]
        corpus_mod.build_corpus(files, align_dir, val_fraction=0.05, seed=0, min_part_count=3,
                                progress=progress, on_skip=lambda p, r: log(f"skipped {p}: {r}"))
        done()

    tok_dir = work / "tokenizer"
    if not (tok_dir / tok_mod.TOKENIZER_FILE).exists():
        done = stage("tokenizer")
        log(f"tokenizer: BPE, vocabulary {vocab_size}")
        tok = tok_mod.train_tokenizer([align_dir, style_dir], vocab_size,
                                      max_examples=TOKENIZER_MAX_EXAMPLES, progress=progress)
        stats = {name: tok_mod.corpus_tokens_per_note(tok, d, "val")
                 for name, d in (("align", align_dir), ("style", style_dir))}
        tok_mod.save_tokenizer(tok, tok_dir, {
            "vocab_size": tok.get_vocab_size(), "corpora": [str(align_dir), str(style_dir)],
            "meta_tokens": tok_mod.meta_tokens(tok),
            "tokens_per_note_val": {k: s.tokens_per_note for k, s in stats.items()},
            "val_notes": {k: s.notes for k, s in stats.items()},
        })
        done()

    runs = {}
    for phase, corpus_dir, init in (("align", align_dir, None),
                                    ("style", style_dir, work / "run-align")):
        run = work / f"run-{phase}"
        runs[phase] = run
        cfg = config_mod.resolve(CONFIG, phase, sets)
        if _finished_run(run, cfg):
            continue
        done = stage(f"{phase} phase")
        log(f"{phase} phase: {cfg.train.max_steps} steps")
        trainer.train(cfg, run, corpus=corpus_dir, tokenizer=tok_dir, init_from=init,
                      resume=(run / "run.json").exists(), progress=progress, log=log)
        done()

    done = stage("export")
    bundle = export_mod.export_bundle(runs["style"], out, force=True)
    done()
    meta_path = bundle / "midicopilot.json"
    meta = json.loads(meta_path.read_text())
    meta["demo"] = {"version": DEMO_VERSION, "stage_seconds": timings}
    # The recommendations of the recipe as it is now (measured: docs/QUALITY.md), even for runs
    # trained before they changed.
    defaults = config_mod.resolve(CONFIG, "style", sets).export.defaults
    if defaults:
        meta["defaults"] = defaults
    meta["unseen_style_pieces"] = unseen_style_pieces(progress, limit=1 if max_chorales else 0)
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    log(f"demo bundle written to {bundle}")
    return bundle


def _unseen(path: Path) -> bool:
    """Whether a MIDI file is one of UNSEEN_STYLE's works (music21 exports, or music21's own
    .mid files of those composers, such as its Mozart test files)."""
    name = path.name.lower()
    return any(c.lower() in name for c in (*UNSEEN_STYLE, "beethoven", "k525"))


def unseen_style_pieces(progress: bool = False, limit: int = 0) -> list[str]:
    """music21 names of the UNSEEN_STYLE works that export (multi-part, never trained on);
    `limit` > 0: at most that many works per composer."""
    from midicopilot.train.music21_midi import export_corpus, music21_name

    composers = {c: min(n, limit) if limit else n for c, n in UNSEEN_STYLE.items()}
    files = export_corpus(composers=composers, progress=progress)
    return [n for n in (music21_name(f) for f in files) if n]


def _finished_run(run: Path, cfg: config_mod.RunConfig) -> bool:
    summary = run / "summary.json"
    if not summary.exists():
        return False
    return json.loads(summary.read_text()).get("steps") == cfg.train.max_steps


def _finished_bundle(out: Path) -> bool:
    try:
        meta = export_mod.read_bundle(out)
    except (export_mod.ExportError, ValueError, OSError):
        return False
    return meta.get("demo", {}).get("version") == DEMO_VERSION


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default="demo-bundle")
    parser.add_argument("--work")
    args = parser.parse_args()
    build_demo_bundle(args.out, args.work)


if __name__ == "__main__":
    main()
