"""The Rust engine from the host's side: find the `midicopilot-engine` binary, and turn a preset
into its command lines (`render`, `jack`, `alsa`) and its control-channel switch request, all
from one table of the session settings (SESSION_SETTINGS)."""
from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from midicopilot.host.presets import Input, Preset

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


def num(x: float) -> str:
    """A float as the shortest text that reads back the same (100.0 → 100, 0.95 → 0.95)."""
    return repr(int(x)) if float(x).is_integer() else repr(float(x))


def _as_is(value: Any) -> Any:
    return value


def _absolute(path: Path) -> str:
    return str(path.resolve())


@dataclass(frozen=True)
class Setting:
    """One session setting: where the preset holds it, the engine flag that sets it at start and
    the key of the engine's switch request that changes it mid-run (None: none)."""

    field: str                           # an attribute path in Preset, e.g. "tempo.bpm"
    flag: str
    key: str | None
    text: Callable[[Any], str] = str     # the flag's value
    wire: Callable[[Any], Any] = _as_is  # the switch request's value (JSON)
    live: bool = False                   # a flag only the live backends take

    def value(self, preset: Preset) -> Any:
        return attrgetter(self.field)(preset)


# The session settings, in command-line order. A value the preset leaves unset (None; an empty
# style word too) is left out of the command line and is JSON null in a switch request: the
# engine then takes the bundle's recommendation. The switch keys are those of
# engine/src/live/control.rs `SwitchRequest`; a new setting is one row here.
SESSION_SETTINGS: tuple[Setting, ...] = (
    Setting("bundle", "--bundle", "bundle", wire=_absolute),
    Setting("tempo.bpm", "--bpm", "bpm", num),
    Setting("context.size", "--context", "context"),
    Setting("context.lookahead_ticks", "--lookahead-ticks", "lookahead_ticks"),
    Setting("context.max_note_ticks", "--max-note-ticks", "max_note_ticks"),
    Setting("sampling.temperature", "--temperature", "temperature", num),
    Setting("sampling.top_p", "--top-p", "top_p", num),
    Setting("context.max_polyphony", "--max-polyphony", "max_polyphony"),
    Setting("sampling.seed", "--seed", "seed"),
    Setting("weights", "--weights", "weights"),
    Setting("style.genre", "--genre", "genre"),
    Setting("style.part", "--part", "part"),
    # fixed for the whole run: no switch key
    Setting("backend", "--backend", None, live=True),
    Setting("tempo.source", "--tempo-source", None, live=True),
    Setting("context.release_horizon_ms", "--release-horizon-ms", "release_horizon_ms", num,
            live=True),
)


def session_args(preset: Preset, *, live: bool = False) -> list[str]:
    """The flags of SESSION_SETTINGS the preset sets; the live-only ones with `live`."""
    args: list[str] = []
    for s in SESSION_SETTINGS:
        v = s.value(preset)
        if (s.live and not live) or v is None or v == "":
            continue
        args += [s.flag, s.text(v)]
    return args


def engine_args(preset: Preset, *, live: bool = False) -> list[str]:
    """The engine flags a preset sets, shared by `render` and the live `play` command.

    Always: --bundle --bpm --context --lookahead-ticks --max-note-ticks, plus --temperature /
    --top-p / --max-polyphony / --seed / --weights / --genre / --part when the preset sets them
    (names as in the preset: `--genre CHORALE` means the token [GENRE_CHORALE]; what it leaves
    out, the engine takes from the bundle's recommendations). `live=True` adds the flags only a
    live backend uses: --backend, --tempo-source, --release-horizon-ms and one `--input NAME=CH`
    per preset input (CH = `pass` or 1–15).
    """
    args = session_args(preset, live=live)
    if live:
        for inp in preset.inputs:
            args += ["--input", f"{inp.name}={'pass' if inp.channel is None else inp.channel}"]
    return args


def alsa_args(preset: Preset, inputs: Sequence[Input]) -> list[str]:
    """`midicopilot-engine alsa` flags for a preset: the session flags, then one `--input`
    (pass) or `--input-channel CH=…` per input pattern and one `--output` per output pattern."""
    args = session_args(dataclasses.replace(preset, backend="alsa"), live=True)
    for inp in inputs:
        for pat in inp.connect:
            args += (["--input", pat] if inp.channel is None
                     else ["--input-channel", f"{inp.channel}={pat}"])
    for pat in preset.output.connect:
        args += ["--output", pat]
    return args


def switch_command(name: str, preset: Preset) -> dict[str, Any]:
    """The engine's `switch` request for a preset, every session setting it can change
    (docs/LIVE.md "The control channel")."""
    return {"cmd": "switch", "name": name,
            **{s.key: None if (v := s.value(preset)) is None else s.wire(v)
               for s in SESSION_SETTINGS if s.key is not None}}


def render_argv(engine: Path, preset: Preset, midi_in: Path, midi_out: Path, *,
                seed: int | None = None, clock: str | None = None, bpm: float | None = None,
                channels: str | None = None, report: Path | None = None) -> list[str]:
    """`midicopilot-engine render` for a preset; `seed` overrides the preset's. The tempo is IN's
    own (the engine reads it) unless `bpm` is given: the preset's BPM is the live tempo."""
    args = _without(engine_args(preset), "--bpm")
    if bpm is not None:
        args += ["--bpm", num(bpm)]
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
