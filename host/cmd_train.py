"""Training commands: `corpus build`, `tokenizer train`, `train`, `export`, `demo-bundle`.

Thin wrappers over midicopilot.train (see docs/TRAINING.md); heavy imports happen inside the
commands. Every expected failure is one line on stderr, `midicopilot: error: …`, and exit 1.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click


class CommandError(click.ClickException):
    """One line on stderr, `midicopilot: error: <message>`, exit status 1."""

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"midicopilot: error: {self.format_message()}", err=True)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the training modules' one-line errors into CommandError."""
    from midicopilot.train.config import ConfigError
    from midicopilot.train.corpus import CorpusError
    from midicopilot.train.errors import TrainError
    from midicopilot.train.events import MidiError
    from midicopilot.train.export import ExportError
    from midicopilot.train.model import ModelError
    from midicopilot.train.tokenizer import TokenizerError

    try:
        yield
    except (ConfigError, CorpusError, MidiError, ExportError, ModelError, TokenizerError,
            TrainError) as err:
        raise CommandError(str(err)) from None
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        raise CommandError(f"{where}{err.strerror or err}") from None


TRAIN_EXTRA = ("torch", "transformers", "peft", "safetensors")


def need_train_extra(command: str) -> None:
    """Training needs torch and friends, which a player's install (`pip install .`) leaves out:
    say which extra to install, in one line, before anything imports them."""
    import importlib.util

    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except ImportError:
            return True

    missing = [m for m in TRAIN_EXTRA if absent(m)]
    if missing:
        raise CommandError(f"`midicopilot {command}` needs the training extra ({', '.join(missing)}"
                           " not installed): pip install 'midicopilot[train]' (from a clone: "
                           "pip install -e '.[train]')")


# --- corpus ---------------------------------------------------------------------------------------

@click.group()
def corpus() -> None:
    """Build training corpora from MIDI files."""


@corpus.command("build")
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The corpus folder to write.")
@click.option("--genre", help="Open every example with [GENRE_NAME].")
@click.option("--genre-map", type=click.Path(dir_okay=False, path_type=Path),
              help='TOML/JSON table "glob" = "GENRE" (first match wins; --genre for the rest).')
@click.option("--transpose", is_flag=True, help="Write every example in all 12 keys (-5…+6).")
@click.option("--val-fraction", default=0.1, show_default=True,
              help="Share of pieces held out for validation.")
@click.option("--seed", default=0, show_default=True, help="Seed of the train/val split.")
@click.option("--music21", "music21_set", type=click.Choice(["bach", "all", "package"]),
              help="Add real MIDI files from the music21 package: its Bach works, everything "
                   "(package files and exported corpus), or only the package's own .mid files.")
@click.option("--min-part-count", default=1, show_default=True,
              help="Track names used by fewer pieces fall back to the GM family as [PART_…].")
@click.option("--workers", default=0, help="Processes reading files (0: up to 4).")
@click.option("--tpq", default=24, show_default=True, help="Ticks per quarter note.")
@click.option("--velocity-bins", default=8, show_default=True, help="Velocity levels.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def corpus_build(sources: tuple[Path, ...], out: Path, genre: str | None,
                 genre_map: Path | None, transpose: bool, val_fraction: float, seed: int,
                 music21_set: str | None, min_part_count: int, workers: int, tpq: int,
                 velocity_bins: int, quiet: bool) -> None:
    """Turn MIDI files and folders (SOURCES) into a corpus: one example per part and key."""
    from midicopilot.train import corpus as corpus_mod
    from midicopilot.train import events

    with _errors():
        files: list[Path | str] = list(sources)
        if music21_set:
            files.extend(music21_files(music21_set, progress=not quiet))
        if not files:
            raise CommandError("no SOURCES given (MIDI files or folders, or --music21)")
        try:
            params = events.LanguageParams(tpq, velocity_bins)
        except ValueError as err:
            raise CommandError(str(err)) from None
        mapping = corpus_mod.load_genre_map(genre_map) if genre_map else []

        def skipped(path: str, reason: str) -> None:
            from tqdm import tqdm  # one line each, above the progress bar

            tqdm.write(f"midicopilot: skipped {path}: {reason}", file=sys.stderr)

        summary = corpus_mod.build_corpus(
            files, out, genre=genre, genre_map=mapping, transpose=transpose,
            val_fraction=val_fraction, seed=seed, min_part_count=min_part_count, params=params,
            workers=workers, progress=not quiet, on_skip=skipped)
    for split in ("train", "val"):
        click.echo(f"{split}: {summary.pieces[split]} pieces, {summary.examples[split]} examples, "
                   f"{summary.notes[split]} notes")
    click.echo(f"metadata tokens: {len(summary.meta_tokens)}; skipped files: "
               f"{len(summary.skipped)}")
    click.echo(f"wrote {out}/corpus.json, train.jsonl, val.jsonl")


def music21_files(which: str, progress: bool = False) -> list[Path]:
    from midicopilot.train import music21_midi

    if which == "bach":
        return music21_midi.bach_chorales(progress=progress)
    if which == "package":
        return music21_midi.package_midi_files()
    return music21_midi.all_midi_files(progress=progress)


# --- tokenizer ------------------------------------------------------------------------------------

@click.group()
def tokenizer() -> None:
    """Train and inspect the MIDI tokenizer."""


@tokenizer.command("train")
@click.argument("corpora", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for tokenizer.json.")
@click.option("--vocab", "vocab_size", default=4096, show_default=True,
              help="Vocabulary size, 1024–8192.")
@click.option("--min-frequency", default=2, show_default=True, help="BPE min pair frequency.")
@click.option("--max-examples", default=0, show_default=True,
              help="Train on an evenly spaced sample of this many examples per corpus (0: all).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def tokenizer_train(corpora: tuple[Path, ...], out: Path, vocab_size: int, min_frequency: int,
                    max_examples: int, quiet: bool) -> None:
    """Train the BPE tokenizer on the train split of CORPORA; report tokens per note on val."""
    from midicopilot.train import tokenizer as tok_mod

    with _errors():
        tok = tok_mod.train_tokenizer(corpora, vocab_size, min_frequency=min_frequency,
                                      max_examples=max_examples, progress=not quiet)
        stats = [tok_mod.corpus_tokens_per_note(tok, c, "val") for c in corpora]
        tokens, notes = sum(s.tokens for s in stats), sum(s.notes for s in stats)
        info = {
            "vocab_size": tok.get_vocab_size(),
            "requested_vocab_size": vocab_size,
            "corpora": [str(c) for c in corpora],
            "meta_tokens": tok_mod.meta_tokens(tok),
            "val_tokens": tokens,
            "val_notes": notes,
            "tokens_per_note_val": tokens / notes if notes else None,
        }
        path = tok_mod.save_tokenizer(tok, out, info)
    click.echo(f"vocabulary {tok.get_vocab_size()} ({len(info['meta_tokens'])} metadata tokens)")
    if notes:
        click.echo(f"tokens per note (validation): {tokens / notes:.3f} "
                   f"({tokens} tokens, {notes} notes)")
    else:
        click.echo("tokens per note: no validation notes to measure")
    click.echo(f"wrote {path}")


# --- train ----------------------------------------------------------------------------------------

@click.command("train")
@click.option("--phase", type=click.Choice(["align", "style"]), required=True,
              help="align: generic corpus; style: target corpus with metadata headers.")
@click.option("--config", "config_file", default="tiny", show_default=True,
              help="A TOML config file, or a built-in name (tiny, olmo2-1b).")
@click.option("--corpus", "corpus_dir", type=click.Path(path_type=Path),
              help="Corpus folder (from `corpus build`).")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(path_type=Path),
              help="tokenizer.json or its folder (from `tokenizer train`).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (checkpoints, metrics).")
@click.option("--init-from", type=click.Path(path_type=Path),
              help="Start from this run's latest checkpoint (or a checkpoint folder): the "
                   "align run, for --phase style.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set train.lr=3e-4 (repeatable).")
@click.option("--max-steps", type=int, help="Same as --set train.max_steps=N.")
@click.option("--batch-size", type=int, help="Same as --set train.batch_size=N.")
@click.option("--lr", type=float, help="Same as --set train.lr=X.")
@click.option("--context-length", type=int, help="Same as --set data.context_length=N.")
@click.option("--base", help="Same as --set model.base=ID (tiny, hub id or local folder).")
@click.option("--quantize", type=click.Choice(["8bit", "4bit"]),
              help="Load the frozen base in 8/4 bits (bitsandbytes; CUDA only).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_command(phase: str, config_file: str, corpus_dir: Path | None,
                  tokenizer_path: Path | None, out: Path, init_from: Path | None, resume: bool,
                  sets: tuple[str, ...], max_steps: int | None, batch_size: int | None,
                  lr: float | None, context_length: int | None, base: str | None,
                  quantize: str | None, quiet: bool) -> None:
    """Train one phase (align, then style) from a config file. Runs under torchrun as well:
    torchrun --nproc_per_node N -m midicopilot.host.cli train …"""
    need_train_extra("train")
    _cpu_friendly_threads()
    from midicopilot.train import config as config_mod
    from midicopilot.train import trainer

    explicit = {"train.max_steps": max_steps, "train.batch_size": batch_size, "train.lr": lr,
                "data.context_length": context_length, "model.base": base,
                "model.quantize": quantize}
    all_sets = [*sets, *(f"{k}={_toml(v)}" for k, v in explicit.items() if v is not None)]
    with _errors():
        if phase == "style" and init_from is None and not resume:
            click.echo("midicopilot: note: --phase style without --init-from starts from a fresh "
                       "model, not from an align run", err=True)
        cfg = config_mod.resolve(config_file, phase, all_sets)
        result = trainer.train(cfg, out, corpus=corpus_dir, tokenizer=tokenizer_path,
                               init_from=init_from, resume=resume, progress=not quiet)
    if int(_env("RANK", "0")) == 0:
        loss = "n/a" if result.eval_loss is None else f"{result.eval_loss:.4f}"
        unigram = "n/a" if result.unigram_loss is None else f"{result.unigram_loss:.4f}"
        click.echo(f"{phase}: {result.steps} steps in {result.seconds:.0f} s; eval loss {loss} "
                   f"(unigram baseline {unigram}); run folder {result.run}")


def _cpu_friendly_threads() -> None:
    """Before torch loads OpenMP: idle threads sleep instead of spinning. On a CPU shared with
    other jobs, spinning threads halve training throughput (measured; docs/TRAINING.md)."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _env(name: str, default: str) -> str:
    import os

    return os.environ.get(name, default)


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


# --- export ---------------------------------------------------------------------------------------

@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The bundle folder to write.")
@click.option("--force", is_flag=True, help="Replace an existing bundle folder.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]),
              help="Weights' dtype (default: the config's export.dtype).")
def export_command(checkpoint: Path, out: Path, force: bool, dtype: str | None) -> None:
    """Merge a checkpoint's LoRA adapters and write a model bundle (CHECKPOINT: a run folder or
    one of its checkpoints)."""
    need_train_extra("export")
    from midicopilot.train import export as export_mod

    with _errors():
        bundle = export_mod.export_bundle(checkpoint, out, force=force, dtype=dtype)
    click.echo(f"wrote bundle {bundle}")


# --- demo -----------------------------------------------------------------------------------------

@click.command("demo-bundle")
@click.option("-o", "--out", default="demo-bundle", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="The bundle folder.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path),
              help="Working folder for corpora, tokenizer and runs (default: OUT.work).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a key of the demo's config (train/configs/demo.toml), e.g. "
                   "--set style.train.max_steps=500 (repeatable).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo_bundle(out: Path, work: Path | None, sets: tuple[str, ...], quiet: bool) -> None:
    """Train the demo bundle from music21's files with the recorded recipe (train/demo.py,
    train/configs/demo.toml): align on a generic mix, style on Bach chorales
    ([GENRE_CHORALE]). Reuses a finished bundle and every finished step."""
    need_train_extra("demo-bundle")
    _cpu_friendly_threads()
    from midicopilot.train import demo

    with _errors():
        bundle = demo.build_demo_bundle(out, work, progress=not quiet, log=_echo_err, sets=sets)
    click.echo(f"demo bundle: {bundle}")


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


COMMANDS: list[Callable] = [corpus, tokenizer, train_command, export_command, demo_bundle]


def register(main: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    for command in COMMANDS:
        main.add_command(command)

