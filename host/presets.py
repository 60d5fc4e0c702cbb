"""Style presets: one TOML file per song (model bundle, style tokens, tempo, sampling, context,
JACK connections), validated into a typed `Preset` the other commands use.

The schema is written out in docs/PRESETS.md. Every problem is one line naming the file, the dotted
key and what is wrong, e.g. `presets/song.toml: sampling.temprature: unknown key (did you mean
'temperature'?)`.
"""
from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

BACKENDS = ("jack", "alsa")
WEIGHTS = ("f32", "f16", "q8")  # how the engine holds the model's weights (docs/ENGINE.md)
TEMPO_SOURCES = ("preset", "transport", "midi_clock")
NAME_RE = re.compile(r"^[A-Z0-9_]+$")  # metadata token names (docs/FORMAT.md)
INPUT_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # the JACK port `midicopilot:in_<name>`
BUNDLE_FILES = ("model.safetensors", "config.json", "tokenizer.json")


class PresetError(Exception):
    """A preset that cannot be used; `str()` is one line: `<file>: <key>: <problem>`."""


# -- the typed preset -------------------------------------------------------------------------
@dataclass(frozen=True)
class Style:
    genre: str | None = None  # "CHORALE" → [GENRE_CHORALE]
    part: str | None = None   # "SOPRANO" → [PART_SOPRANO]

    @property
    def tokens(self) -> list[str]:
        out = []
        if self.genre:
            out.append(f"[GENRE_{self.genre}]")
        if self.part:
            out.append(f"[PART_{self.part}]")
        return out


@dataclass(frozen=True)
class Tempo:
    source: str = "preset"    # preset | transport | midi_clock
    bpm: float = 120.0        # used as is for `preset`; the starting tempo otherwise


@dataclass(frozen=True)
class Sampling:
    # None: the bundle's recommendation (midicopilot.json "defaults"), else the engine's default.
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Context:
    size: int = 512
    lookahead_ticks: int = 24
    release_horizon_ms: float = 40.0
    max_note_ticks: int = 192
    max_polyphony: int | None = None  # None: the bundle's for the part, else the engine's


@dataclass(frozen=True)
class Input:
    name: str = "in"
    channel: int | None = None   # None = "pass" (keep the player's channels); 1–15 = assign
    connect: tuple[str, ...] = ()

    @property
    def port(self) -> str:
        """The engine's port short name for this input."""
        return f"in_{self.name}"


@dataclass(frozen=True)
class Output:
    connect: tuple[str, ...] = ()


@dataclass(frozen=True)
class Control:
    """MIDI sources whose program changes switch songs during a set (host/player.py)."""
    connect: tuple[str, ...] = ()


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    bundle: Path
    backend: str = "jack"
    weights: str | None = None   # None: the bundle's recommendation, else f32
    style: Style = field(default_factory=Style)
    tempo: Tempo = field(default_factory=Tempo)
    sampling: Sampling = field(default_factory=Sampling)
    context: Context = field(default_factory=Context)
    inputs: tuple[Input, ...] = ()
    output: Output = field(default_factory=Output)
    control: Control = field(default_factory=Control)

    @property
    def input_ports(self) -> list[str]:
        """Short names of the engine's input ports: `in_<name>` per input, or `in` if none."""
        return [i.port for i in self.inputs] or ["in"]


# -- the schema -------------------------------------------------------------------------------
# A field checker takes the raw TOML value and returns the converted value or raises _Bad.
class _Bad(Exception):
    pass


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(v), type(v).__name__)


def _string(v: Any) -> str:
    if not isinstance(v, str):
        raise _Bad(f"expected a string, got {_type_name(v)}")
    return v


def _choice(*options: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        s = _string(v)
        if s not in options:
            near = difflib.get_close_matches(s, options, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise _Bad(f"'{s}' is not one of {', '.join(options)}{hint}")
        return s
    return check


def _number(lo: float, hi: float, lo_open: bool = False) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _Bad(f"expected a number, got {_type_name(v)}")
        x = float(v)
        if not math.isfinite(x) or x > hi or x < lo or (lo_open and x == lo):
            interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
            raise _Bad(f"{v!r} is out of range {interval}")
        return x
    return check


def _integer(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"expected an integer, got {_type_name(v)}")
        if not lo <= v <= hi:
            raise _Bad(f"{v} is out of range {lo}–{hi}")
        return v
    return check


def _token_name(kind: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        s = _string(v).strip().upper()
        if not NAME_RE.match(s):
            raise _Bad(f"'{v}' cannot name a [{kind}_…] token (use A–Z, 0–9 and _)")
        return s
    return check


def _regex_list(v: Any) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise _Bad(f"expected a regular expression or a list of them, got {_type_name(v)}")
    for x in items:
        try:
            re.compile(x)
        except re.error as e:
            raise _Bad(f"bad regular expression '{x}': {e}") from None
    return tuple(items)


def _channel(v: Any) -> int | None:
    if v == "pass":
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 15:
        raise _Bad(f"{v!r} is not \"pass\" or a channel 1–15 (0 is the model's)")
    return v


def _input_name(v: Any) -> str:
    s = _string(v)
    if not INPUT_NAME_RE.match(s):
        raise _Bad(f"'{s}' is not a port name (1–32 of A–Z a–z 0–9 _ -)")
    return s


_TABLES: dict[str, dict[str, Callable[[Any], Any]]] = {
    "style": {"genre": _token_name("GENRE"), "part": _token_name("PART")},
    "tempo": {"source": _choice(*TEMPO_SOURCES), "bpm": _number(20.0, 300.0)},
    "sampling": {"temperature": _number(0.0, 10.0, lo_open=True),
                 "top_p": _number(0.0, 1.0, lo_open=True),
                 "seed": _integer(0, 2**63 - 1)},
    "context": {"size": _integer(16, 65536), "lookahead_ticks": _integer(1, 960),
                "release_horizon_ms": _number(0.0, 1000.0), "max_note_ticks": _integer(1, 9600),
                "max_polyphony": _integer(1, 128)},
    "output": {"connect": _regex_list},
    "control": {"connect": _regex_list},
}
_INPUT_KEYS: dict[str, Callable[[Any], Any]] = {
    "name": _input_name, "channel": _channel, "connect": _regex_list}
_TOP_KEYS: dict[str, Callable[[Any], Any]] = {
    "name": _string, "bundle": _string, "backend": _choice(*BACKENDS),
    "weights": _choice(*WEIGHTS)}
_REQUIRED_TOP = ("bundle",)


def _unknown(key: str, valid: list[str], other_tables: bool = False) -> str:
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if near:
        return f"unknown key (did you mean '{near[0]}'?)"
    if other_tables:  # a key put at the top level that belongs in a table
        homes = [f"{t}.{key}" for t, keys in _TABLES.items() if key in keys]
        if homes:
            return f"unknown key (did you mean '{homes[0]}'?)"
    return f"unknown key (valid here: {', '.join(valid)})"


def _check_table(file: str, prefix: str, raw: Any, schema: Mapping[str, Callable[[Any], Any]]
                 ) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise PresetError(f"{file}: {prefix}: expected a table, got {_type_name(raw)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in schema:
            raise PresetError(f"{file}: {prefix}.{key}: {_unknown(key, list(schema))}")
        try:
            out[key] = schema[key](value)
        except _Bad as e:
            raise PresetError(f"{file}: {prefix}.{key}: {e}") from None
    return out


def expand_path(value: str, base: Path) -> Path:
    """`~` and `$VARS` expanded; a relative path is relative to `base` (the preset's folder)."""
    expanded = os.path.expanduser(os.path.expandvars(value))
    unset = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)
    if unset:
        raise _Bad(f"environment variable ${unset.group(1)} is not set")
    p = Path(expanded)
    return p if p.is_absolute() else base / p


def parse_preset(data: Mapping[str, Any], path: Path, display: str | None = None) -> Preset:
    """Validate TOML data (already parsed) read from `path` into a Preset."""
    file = display or str(path)
    top: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    inputs: list[Input] = []
    valid_top = [*_TOP_KEYS, *_TABLES, "inputs"]
    for key, value in data.items():
        if key in _TOP_KEYS:
            try:
                top[key] = _TOP_KEYS[key](value)
            except _Bad as e:
                raise PresetError(f"{file}: {key}: {e}") from None
        elif key in _TABLES:
            tables[key] = _check_table(file, key, value, _TABLES[key])
        elif key == "inputs":
            if not isinstance(value, list):
                raise PresetError(f"{file}: inputs: expected an array of tables ([[inputs]]), "
                                  f"got {_type_name(value)}")
            for i, item in enumerate(value):
                fields = _check_table(file, f"inputs[{i}]", item, _INPUT_KEYS)
                if "name" not in fields:
                    raise PresetError(f"{file}: inputs[{i}].name: missing (each input needs a "
                                      "name; its port is midicopilot:in_<name>)")
                inputs.append(Input(name=fields["name"], channel=fields.get("channel"),
                                    connect=fields.get("connect", ())))
        else:
            raise PresetError(f"{file}: {key}: {_unknown(key, valid_top, other_tables=True)}")
    for key in _REQUIRED_TOP:
        if key not in top:
            raise PresetError(f"{file}: {key}: missing (the model bundle folder this preset plays)")
    names = [i.name for i in inputs]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise PresetError(f"{file}: inputs[{i}].name: '{n}' is used twice")
    if top.get("name") is not None and not top["name"].strip():
        raise PresetError(f"{file}: name: must not be empty")
    try:
        bundle = expand_path(top["bundle"], path.parent)
    except _Bad as e:
        raise PresetError(f"{file}: bundle: {e}") from None
    return Preset(
        name=top.get("name") or path.stem,
        path=path,
        bundle=bundle,
        backend=top.get("backend", "jack"),
        weights=top.get("weights"),
        style=Style(**tables.get("style", {})),
        tempo=Tempo(**tables.get("tempo", {})),
        sampling=Sampling(**tables.get("sampling", {})),
        context=Context(**tables.get("context", {})),
        inputs=tuple(inputs),
        output=Output(**tables.get("output", {})),
        control=Control(**tables.get("control", {})),
    )


def load_preset(path: str | Path) -> Preset:
    """Read and validate one preset file; raise PresetError (one line) if it is not usable."""
    display = str(path)
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise PresetError(f"{display}: no such file") from None
    except IsADirectoryError:
        raise PresetError(f"{display}: is a folder, not a preset file") from None
    except OSError as e:
        raise PresetError(f"{display}: cannot read: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PresetError(f"{display}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"{display}: TOML syntax error: {e}") from None
    return parse_preset(data, p.absolute(), display)


# -- checks beyond the schema ------------------------------------------------------------------
def read_bundle_meta(bundle: Path) -> dict[str, Any]:
    """The bundle's midicopilot.json; raise PresetError-free ValueError with a short reason."""
    meta_path = bundle / "midicopilot.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ValueError("not a model bundle (no midicopilot.json)") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"unreadable midicopilot.json: {e}") from None
    if not isinstance(meta, dict):
        raise ValueError("midicopilot.json is not a JSON object")
    return meta


def check_preset(preset: Preset, display: str | None = None) -> list[str]:
    """Problems that do not stop the schema from parsing (each one line): the bundle folder is
    missing or incomplete, or the style tokens are not metadata tokens of the bundle."""
    file = display or str(preset.path)
    b = preset.bundle
    if not b.exists():
        return [f"{file}: bundle: folder {b} does not exist (export a bundle there, or build the "
                "demo bundle)"]
    if not b.is_dir():
        return [f"{file}: bundle: {b} is not a folder"]
    try:
        meta = read_bundle_meta(b)
    except ValueError as e:
        return [f"{file}: bundle: {b}: {e}"]
    problems = [f"{file}: bundle: {b}: missing {name}"
                for name in BUNDLE_FILES if not (b / name).is_file()]
    tokens = meta.get("meta_tokens")
    if not isinstance(tokens, list):
        problems.append(f"{file}: bundle: {b}: midicopilot.json has no meta_tokens list")
        return problems
    for key, token in (("style.genre", preset.style.genre and f"[GENRE_{preset.style.genre}]"),
                       ("style.part", preset.style.part and f"[PART_{preset.style.part}]")):
        if token and token not in tokens:
            kind = token[1:].split("_", 1)[0]
            known = [t for t in tokens if isinstance(t, str) and t.startswith(f"[{kind}_")]
            names = {t[len(kind) + 2:-1]: t for t in known}
            near = difflib.get_close_matches(token[len(kind) + 2:-1], list(names), n=1)
            hint = f"did you mean {names[near[0]]}? " if near else ""
            problems.append(f"{file}: {key}: {token} is not a metadata token of the bundle "
                            f"({hint}it knows {', '.join(known) or 'none'})")
    return problems


# -- where presets live -----------------------------------------------------------------------
def project_presets_dir() -> Path:
    """presets/ at the top of the project (beside host/)."""
    return Path(__file__).resolve().parent.parent / "presets"


def user_presets_dir() -> Path:
    """The user's own presets: platformdirs' user config folder + /presets."""
    import platformdirs

    return Path(platformdirs.user_config_dir("midicopilot")) / "presets"


def preset_dirs() -> list[tuple[str, Path]]:
    """(label, folder) in order of precedence: the user's presets shadow the project's."""
    return [("user", user_presets_dir()), ("project", project_presets_dir())]


@dataclass(frozen=True)
class PresetEntry:
    source: str            # "user" | "project"
    path: Path
    preset: Preset | None  # None when it does not load
    error: str | None = None
    shadowed: bool = False  # a user preset of the same name wins


def find_presets() -> list[PresetEntry]:
    """Every *.toml in the preset folders, loaded (errors kept, never raised)."""
    entries: list[PresetEntry] = []
    seen: set[str] = set()
    for label, folder in preset_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                preset: Preset | None = load_preset(path)
                error = None
            except PresetError as e:
                preset, error = None, str(e)
            name = preset.name if preset else path.stem
            entries.append(PresetEntry(label, path, preset, error, shadowed=name in seen))
            seen.add(name)
    return entries


def resolve_preset(spec: str) -> Path:
    """A preset file from a path, or from a name (file stem or `name` key) in the preset folders."""
    p = Path(spec)
    if p.is_file():
        return p
    if p.suffix == ".toml" or os.sep in spec:
        raise PresetError(f"{spec}: no such file")
    for entry in find_presets():
        if entry.path.stem == spec or (entry.preset and entry.preset.name == spec):
            return entry.path
    folders = ", ".join(str(d) for _, d in preset_dirs())
    raise PresetError(f"{spec}: no preset of that name (looked in {folders}; "
                      "`midicopilot presets list` shows them)")


def engine_args(preset: Preset, *, live: bool = False) -> list[str]:
    """The engine's flags for a preset (see midicopilot.host.engine.engine_args)."""
    from midicopilot.host.engine import engine_args as _engine_args

    return _engine_args(preset, live=live)
