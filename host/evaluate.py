"""`midicopilot eval`: how well a bundle plays along with music it never trained on.

For each piece and each chosen target part, the target part is taken out, the rest is played
through the engine (`midicopilot-engine render`, virtual clock: the code path of `render`) with a
few seeds, and the model's channel 0 is compared with the real part (host/quality.py: in-chord
against the band, on-grid, density, range, length, repeats). The model's loss on the piece (the
real part on channel 0, windows cut as in training) comes from `midicopilot-engine score`,
against the unigram baseline of the bundle's training data. Definitions: docs/QUALITY.md.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from midicopilot.host import quality
from midicopilot.host.engine import find_engine
from midicopilot.train import corpus as corpus_mod
from midicopilot.train import events as ev

DRUM_CHANNEL = 9


class EvalError(Exception):
    """Evaluation cannot go on; `str()` is one line."""


@dataclass(frozen=True)
class Sampling:
    """Overrides of the bundle's recommended sampling (None: the bundle's, else the engine's)."""

    temperature: float | None = None
    top_p: float | None = None
    max_polyphony: int | None = None
    listen: bool = True  # False: the model plays at every instant it reaches (comparisons)
    context: int | None = None  # the engine's context limit in tokens (None: render's default)
    # False: the band's velocities reach the model as played (comparisons; docs/ENGINE.md)
    band_velocity_as_trained: bool = True

    def flags(self) -> list[str]:
        out: list[str] = [] if self.listen else ["--no-listen"]
        if not self.band_velocity_as_trained:
            out.append("--band-velocity-as-played")
        for flag, value in (("--temperature", self.temperature), ("--top-p", self.top_p),
                            ("--max-polyphony", self.max_polyphony),
                            ("--context", self.context)):
            if value is not None:
                out += [flag, str(value)]
        return out


@dataclass
class Options:
    seeds: tuple[int, ...] = (0, 1, 2)
    target: str = "top"            # top | bottom | all | a track name | a 1-based part number
    genre: str | None = None       # header words (default: the bundle's recommendation)
    part: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    rolls: Path | None = None      # write a piano roll per piece here
    workers: int = 2
    loss: bool = True


@dataclass
class PieceResult:
    piece: str
    target: str                    # the target part's name (or its number)
    header: list[str]
    seeds: int
    beats: int
    model: quality.Tally
    real: quality.Tally
    loss: float | None = None      # nats per token
    unigram: float | None = None
    tokens: int = 0


@dataclass
class Report:
    bundle: Path
    tpq: int
    pieces: list[PieceResult]
    skipped: list[tuple[str, str]]

    def total(self) -> dict:
        model = sum((p.model for p in self.pieces), quality.Tally())
        real = sum((p.real for p in self.pieces), quality.Tally())
        tokens = sum(p.tokens for p in self.pieces)
        out = {"pieces": len(self.pieces), "model": quality.figures(model, self.tpq).to_dict(),
               "real": quality.figures(real, self.tpq).to_dict(), "loss": None, "unigram": None}
        if tokens:
            out["loss"] = sum(p.loss * p.tokens for p in self.pieces if p.loss is not None) \
                / tokens
            if all(p.unigram is not None for p in self.pieces if p.tokens):
                out["unigram"] = sum(p.unigram * p.tokens for p in self.pieces
                                     if p.unigram is not None) / tokens
        return out

    def to_json(self) -> dict:
        return {
            "bundle": str(self.bundle),
            "pieces": [{
                "piece": p.piece, "target": p.target, "header": p.header, "seeds": p.seeds,
                "beats": p.beats, "loss": p.loss, "unigram": p.unigram, "tokens": p.tokens,
                "model": quality.figures(p.model, self.tpq).to_dict(),
                "real": quality.figures(p.real, self.tpq).to_dict(),
            } for p in self.pieces],
            "skipped": [{"piece": s, "reason": r} for s, r in self.skipped],
            "total": self.total(),
        }


# -- the bundle ------------------------------------------------------------------------------------

@dataclass
class BundleInfo:
    path: Path
    meta: dict
    params: ev.LanguageParams

    @property
    def defaults(self) -> dict:
        return self.meta.get("defaults", {})

    def known(self, kind: str) -> list[str]:
        prefix = f"[{kind}_"
        return [t for t in self.meta.get("meta_tokens", []) if t.startswith(prefix)]

    def header(self, target_name: str, opts: Options) -> tuple[str | None, str | None]:
        """Genre and part names for the engine's header (None: the engine's own choice)."""
        genre = opts.genre or self.defaults.get("genre")
        if genre is None and self.meta.get("genres"):
            genre = self.meta["genres"][0][len("[GENRE_"):-1]
        part = opts.part
        if part is None:
            # The target's part word as the corpus names parts (`Violin I` → VIOLIN), if the
            # bundle was trained to play it; else the bundle's recommended part.
            name = corpus_mod.canonical_part(target_name) if target_name else None
            trained = self.meta.get("parts") or self.known("PART")
            part = name if name and f"[PART_{name}]" in trained else self.defaults.get("part")
        return genre, part


def load_bundle(path: Path) -> BundleInfo:
    meta_path = Path(path) / "midicopilot.json"
    if not Path(path).is_dir():
        raise EvalError(f"{path}: no such bundle folder")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise EvalError(f"{path}: not a model bundle (no midicopilot.json)") from None
    except (OSError, ValueError) as e:
        raise EvalError(f"{meta_path}: unreadable ({e})") from None
    return BundleInfo(Path(path), meta, ev.LanguageParams.from_dict(meta.get("params", {})))


# -- pieces ----------------------------------------------------------------------------------------

def resolve_pieces(names: Sequence[str], corpus: Path | None, bundle: BundleInfo,
                   on_skip: Callable[[str, str], None]) -> list[tuple[str, Path]]:
    """(name, MIDI file) of each piece: files, music21 names (`bach/bwv108.6`, exported and
    cached), a corpus folder's validation pieces, or else the bundle's `validation_pieces`."""
    if corpus is not None:
        try:
            names = [*names, *corpus_mod.load_manifest(corpus)["split"]["val"]]
        except corpus_mod.CorpusError as e:
            raise EvalError(str(e)) from None
    if not names:
        names = bundle.meta.get("validation_pieces", [])
        if not names:
            raise EvalError(f"{bundle.path}: the bundle lists no validation_pieces; name the "
                            "pieces (MIDI files or music21 names) or give --corpus")
    out: list[tuple[str, Path]] = []
    for name in names:
        path = Path(name).expanduser()
        if path.is_file():
            out.append((name, path))
            continue
        from midicopilot.train import music21_midi

        if music21_midi.is_music21_name(name):
            try:
                out.append((name, music21_midi.export_by_name(name)))
            except ModuleNotFoundError:
                raise EvalError(f"{name}: music21 names need the music21 package "
                                "(pip install music21)") from None
            except LookupError as e:
                on_skip(name, str(e).removeprefix(f"{name}: "))
            continue
        on_skip(name, "no such file (and not a music21 name such as bach/bwv108.6)")
    return out


def choose_targets(piece: ev.Piece, target: str) -> list[tuple[int, int]]:
    """The parts to take out, one at a time (drum parts are never targets unless named)."""
    parts = corpus_mod.piece_parts(piece)
    pitched = [p for p in parts if p[1] != DRUM_CHANNEL] or parts

    def mean_pitch(source: tuple[int, int]) -> float:
        pitches = [n.pitch for n in piece.notes if n.source == source]
        return sum(pitches) / len(pitches)

    if target == "all":
        return pitched
    if target == "top":
        return [max(pitched, key=mean_pitch)]
    if target == "bottom":
        return [min(pitched, key=mean_pitch)]
    if target.isdigit():
        i = int(target) - 1
        return [parts[i]] if 0 <= i < len(parts) else []
    wanted = ev.meta_token("PART", target)
    return [p for p in parts if ev.meta_token("PART", piece.part_names.get(p, "")) == wanted]


def part_name(piece: ev.Piece, source: tuple[int, int]) -> str:
    name = piece.part_names.get(source, "").strip()
    return name or str(corpus_mod.piece_parts(piece).index(source) + 1)


# -- one piece -------------------------------------------------------------------------------------

def _notes(events: Sequence[ev.NoteEvent], channels: Callable[[int], bool]) -> list[quality.Note]:
    """Pair note-ons with their note-offs (the language guarantees one voice per channel and
    pitch)."""
    open_at: dict[tuple[int, int], int] = {}
    out = []
    for e in events:
        if not channels(e.channel):
            continue
        key = (e.channel, e.pitch)
        if e.kind == "on":
            open_at[key] = e.tick
        elif key in open_at:
            out.append(quality.Note(open_at.pop(key), e.tick, e.pitch))
    end = max((e.tick for e in events), default=0)
    out += [quality.Note(start, max(end, start + 1), p) for (_, p), start in open_at.items()]
    return out


def _file_notes(path: Path, params: ev.LanguageParams, channels: Callable[[int], bool]):
    piece = ev.read_piece(path, params)
    return [quality.Note(n.start, n.end, n.pitch) for n in piece.notes if channels(n.channel)]


def render_argv(engine: Path, bundle: BundleInfo, midi_in: Path, midi_out: Path, seed: int,
                genre: str | None, part: str | None, opts: Options) -> list[str]:
    argv = [str(engine), "render", "--bundle", str(bundle.path), str(midi_in), "-o",
            str(midi_out), "--seed", str(seed), "--channels", "keep", "--tail-ticks", "0",
            *opts.sampling.flags()]
    if genre:
        argv += ["--genre", genre]
    if part:
        argv += ["--part", part]
    return argv


def _run_engine(argv: list[str], stdin: str | None = None) -> str:
    # One thread each: evaluations run several engines side by side.
    env = {**os.environ, "RAYON_NUM_THREADS": os.environ.get("RAYON_NUM_THREADS", "1")}
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise EvalError(lines[-1] if lines else f"{argv[0]} {argv[1]} exited with "
                        f"{proc.returncode}")
    return proc.stdout


@dataclass
class _Job:
    name: str
    target: tuple[int, int]
    target_name: str
    example: corpus_mod.Example
    scored_text: str
    genre: str | None
    part: str | None
    midi_in: Path


def piece_jobs(name: str, path: Path, bundle: BundleInfo, opts: Options, work: Path,
               on_skip: Callable[[str, str], None]) -> list[_Job]:
    try:
        piece = ev.read_piece(path, bundle.params)
    except ev.MidiError as e:
        on_skip(name, str(e).removeprefix(f"{path}: "))
        return []
    parts = corpus_mod.piece_parts(piece)
    if len(parts) < 2:
        on_skip(name, f"{len(parts)} part(s): nothing to accompany")
        return []
    targets = choose_targets(piece, opts.target)
    if not targets:
        on_skip(name, f"no part matches --target {opts.target}")
        return []
    jobs = []
    for target in targets:
        target_name = part_name(piece, target)
        genre, part = bundle.header(target_name, opts)
        word = ev.meta_token("PART", part) if part else None
        example = corpus_mod.target_example(piece, bundle.params, genre, target, part_word=word)
        # The loss is on the piece as the model meets it live (and in training): its part
        # enters after the band's first instant.
        scored = corpus_mod.target_example(piece, bundle.params, genre, target, part_word=word,
                                           entry_beats=0)
        if not part:  # the header as the engine will make it: genre only
            for ex in (example, scored):
                ex.text = " ".join(w for w in ex.text.split(" ") if not w.startswith("[PART_"))
        fd, name_in = tempfile.mkstemp(suffix="-in.mid", dir=work)
        os.close(fd)
        midi_in = Path(name_in)
        ev.text_to_midi(example.text, bundle.params).save(str(midi_in))
        jobs.append(_Job(name, target, target_name, example, scored.text, genre, part, midi_in))
    return jobs


def evaluate_job(job: _Job, engine: Path, bundle: BundleInfo, opts: Options,
                 tokenizer) -> PieceResult:
    tpq = bundle.params.ticks_per_quarter
    _, events = ev.parse_text(job.example.text, bundle.params)
    real = _notes(events, lambda c: c == 0)
    band = _notes(events, lambda c: c not in (0, DRUM_CHANNEL))
    beats = quality.piece_beats(real, band, tpq=tpq)
    chords = quality.band_chords(band, tpq, beats)
    model = quality.Tally()
    for seed in opts.seeds:
        out = job.midi_in.with_name(f"{job.midi_in.stem}-{seed}.mid")
        _run_engine(render_argv(engine, bundle, job.midi_in, out, seed, job.genre, job.part,
                                opts))
        played = _file_notes(out, bundle.params, lambda c: c == 0)
        model = model + quality.tally(played, chords, tpq, beats)
        if opts.rolls is not None and seed == opts.seeds[0]:
            _roll(out, opts.rolls, job)
    result = PieceResult(job.name, job.target_name, ev_header(job.example.text),
                         len(opts.seeds), beats, model, quality.tally(real, chords, tpq, beats))
    if opts.loss and tokenizer is not None:
        _loss(result, job.scored_text, engine, bundle, tokenizer)
    return result


def ev_header(text: str) -> list[str]:
    return corpus_mod.header_words(text)


def _roll(midi: Path, folder: Path, job: _Job) -> None:
    from midicopilot.host.pianoroll import draw_pianoroll

    folder.mkdir(parents=True, exist_ok=True)
    stem = job.name.replace("/", "_").replace(" ", "_").removesuffix(".mid")
    draw_pianoroll(midi, folder / f"{Path(stem).name}-{job.target_name}.png",
                   title=f"{job.name}: the model plays {job.target_name} (channel 0)")


def _loss(result: PieceResult, text: str, engine: Path, bundle: BundleInfo, tokenizer) -> None:
    from midicopilot.train.windows import make_windows

    length = int(bundle.meta.get("context_length") or 256)
    windows = make_windows([text], tokenizer, length, header=True, eos=True)
    pad = tokenizer.token_to_id("[PAD]")
    lines = []
    for ids, head in zip(windows.ids, windows.header, strict=True):
        row = [int(i) for i in ids if int(i) != pad]
        if len(row) > int(head) + 1:
            lines.append(json.dumps({"ids": row, "header": int(head)}))
    if not lines:
        return
    out = _run_engine([str(engine), "score", "--bundle", str(bundle.path), "-"],
                      stdin="\n".join(lines) + "\n")
    scores = [json.loads(line) for line in out.splitlines() if line.strip()]
    result.tokens = sum(s["tokens"] for s in scores)
    result.loss = sum(s["nll"] for s in scores) / max(result.tokens, 1)
    counts = bundle.meta.get("unigram")
    if counts:
        total = sum(counts) + len(counts)
        nll = 0.0
        for line in lines:
            row = json.loads(line)
            for token in row["ids"][max(row["header"], 1):]:
                nll -= math.log((counts[token] + 1) / total)
        result.unigram = nll / max(result.tokens, 1)


# -- the whole evaluation --------------------------------------------------------------------------

def evaluate(bundle_path: Path, names: Sequence[str], corpus: Path | None, opts: Options,
             on_skip: Callable[[str, str], None], progress: bool = True) -> Report:
    bundle = load_bundle(bundle_path)
    try:
        engine = find_engine()
    except Exception as e:  # EngineNotFound: one line
        raise EvalError(str(e)) from None
    tokenizer = None
    if opts.loss:
        from midicopilot.train.tokenizer import TokenizerError, load_tokenizer

        try:
            tokenizer = load_tokenizer(bundle.path / "tokenizer.json")
        except TokenizerError as e:
            raise EvalError(str(e)) from None
    skipped: list[tuple[str, str]] = []

    def skip(name: str, reason: str) -> None:
        skipped.append((name, reason))
        on_skip(name, reason)

    pieces = resolve_pieces(names, corpus, bundle, skip)
    with tempfile.TemporaryDirectory(prefix="midicopilot-eval-") as tmp:
        jobs: list[_Job] = []
        for name, path in pieces:
            jobs += piece_jobs(name, path, bundle, opts, Path(tmp), skip)
        if not jobs:
            raise EvalError("no piece to evaluate" + (f" ({len(skipped)} skipped)"
                                                      if skipped else ""))
        # A bad bundle fails every job the same way: try one first, so it is one line.
        results: list[PieceResult] = []
        from tqdm import tqdm

        with tqdm(total=len(jobs), desc="eval", unit="piece", disable=not progress) as bar:
            results.append(evaluate_job(jobs[0], engine, bundle, opts, tokenizer))
            bar.update()
            with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
                for result in pool.map(lambda j: evaluate_job(j, engine, bundle, opts,
                                                              tokenizer), jobs[1:]):
                    results.append(result)
                    bar.update()
    return Report(bundle.path, bundle.params.ticks_per_quarter, results, skipped)
