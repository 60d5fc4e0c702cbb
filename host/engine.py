"""The Rust engine from the host's side: find the `midicopilot-engine` binary and turn a preset
into its command line."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from midicopilot.host.presets import Preset

ENGINE_NAME = "midicopilot-engine"


class EngineNotFound(Exception):
    """No engine binary; `str()` is one line saying how to get one."""


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def engine_candidates() -> list[tuple[str, Path]]:
    """Where the engine is looked for, in order, with a label saying why."""
    out: list[tuple[str, Path]] = []
    if os.environ.get("CARGO_TARGET_DIR"):
        out.append(("$CARGO_TARGET_DIR",
                    Path(os.environ["CARGO_TARGET_DIR"]) / "release" / ENGINE_NAME))
    out.append(("the project's build", project_root() / "engine" / "target" / "release" /
                ENGINE_NAME))
    on_path = shutil.which(ENGINE_NAME)
    if on_path:
        out.append(("PATH", Path(on_path)))
    return out


def find_engine() -> Path:
    """$MIDICOPILOT_ENGINE, else $CARGO_TARGET_DIR/release/midicopilot-engine, else
    <project>/engine/target/release/midicopilot-engine, else one on PATH."""
    explicit = os.environ.get("MIDICOPILOT_ENGINE")
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise EngineNotFound(f"MIDICOPILOT_ENGINE={explicit}: no such file")
        if not os.access(p, os.X_OK):
            raise EngineNotFound(f"MIDICOPILOT_ENGINE={explicit}: not executable")
        return p
    for _, p in engine_candidates():
        if p.is_file() and os.access(p, os.X_OK):
            return p
    looked = ", ".join(str(p) for _, p in engine_candidates())
    raise EngineNotFound(f"{ENGINE_NAME} not found (looked in {looked}): build it with "
                         "`cargo build --release` in engine/, or set MIDICOPILOT_ENGINE")


def _num(x: float) -> str:
    """A float as the shortest text that reads back the same (100.0 → 100, 0.95 → 0.95)."""
    return repr(int(x)) if float(x).is_integer() else repr(float(x))


def engine_args(preset: Preset, *, live: bool = False) -> list[str]:
    """The engine flags a preset sets, shared by `render` and the live `play` command.

    Always: --bundle --bpm --context --lookahead-ticks --max-note-ticks, plus --temperature /
    --top-p / --max-polyphony / --seed / --weights / --genre / --part when the preset sets them
    (names as in the preset: `--genre CHORALE` means the token [GENRE_CHORALE]; what it leaves
    out, the engine takes from the bundle's recommendations). `live=True` adds the flags only a
    live backend uses: --backend, --tempo-source, --release-horizon-ms and one `--input NAME=CH`
    per preset input (CH = `pass` or 1–15).
    """
    s, c = preset.sampling, preset.context
    args = ["--bundle", str(preset.bundle),
            "--bpm", _num(preset.tempo.bpm),
            "--context", str(c.size),
            "--lookahead-ticks", str(c.lookahead_ticks),
            "--max-note-ticks", str(c.max_note_ticks)]
    if s.temperature is not None:
        args += ["--temperature", _num(s.temperature)]
    if s.top_p is not None:
        args += ["--top-p", _num(s.top_p)]
    if c.max_polyphony is not None:
        args += ["--max-polyphony", str(c.max_polyphony)]
    if s.seed is not None:
        args += ["--seed", str(s.seed)]
    if preset.weights is not None:
        args += ["--weights", preset.weights]
    if preset.style.genre:
        args += ["--genre", preset.style.genre]
    if preset.style.part:
        args += ["--part", preset.style.part]
    if live:
        args += ["--backend", preset.backend,
                 "--tempo-source", preset.tempo.source,
                 "--release-horizon-ms", _num(c.release_horizon_ms)]
        for inp in preset.inputs:
            args += ["--input", f"{inp.name}={'pass' if inp.channel is None else inp.channel}"]
    return args


def render_argv(engine: Path, preset: Preset, midi_in: Path, midi_out: Path, *,
                seed: int | None = None, clock: str | None = None, bpm: float | None = None,
                channels: str | None = None, report: Path | None = None) -> list[str]:
    """`midicopilot-engine render` for a preset; `seed` overrides the preset's. The tempo is IN's
    own (the engine reads it) unless `bpm` is given: the preset's BPM is the live tempo."""
    args = _without(engine_args(preset), "--bpm")
    if bpm is not None:
        args += ["--bpm", _num(bpm)]
    if seed is not None:
        args = _without(args, "--seed") + ["--seed", str(seed)]
    argv = [str(engine), "render", *args, str(midi_in), "-o", str(midi_out)]
    if clock:
        argv += ["--clock", clock]
    if channels:
        argv += ["--channels", channels]
    if report:
        argv += ["--report", str(report)]
    return argv


def _without(args: list[str], flag: str) -> list[str]:
    """`args` without `flag` and its value."""
    if flag not in args:
        return list(args)
    i = args.index(flag)
    return args[:i] + args[i + 2:]
