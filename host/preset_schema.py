"""Reading a preset file: the TOML schema (docs/PRESETS.md) and its one-line errors.

Every problem is one line naming the file, the dotted key and what is wrong, e.g.
`presets/song.toml: sampling.temprature: unknown key (did you mean 'temperature'?)`.
"""
from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from midicopilot.host.preset_types import (
    BACKENDS,
    INPUT_NAME_RE,
    NAME_RE,
    TEMPO_SOURCES,
    WEIGHTS,
    Context,
    Control,
    Input,
    Output,
    Preset,
    PresetError,
    Sampling,
    Style,
    Tempo,
)


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


def regex_list(v: Any) -> tuple[str, ...]:
    """A port pattern or a list of them (presets' and set lists' `connect`), each compiled once
    to check it; ValueError with the reason otherwise."""
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise ValueError(f"expected a regular expression or a list of them, got {_type_name(v)}")
    for x in items:
        try:
            re.compile(x)
        except re.error as e:
            raise ValueError(f"bad regular expression '{x}': {e}") from None
    return tuple(items)


def _regex_list(v: Any) -> tuple[str, ...]:
    try:
        return regex_list(v)
    except ValueError as e:
        raise _Bad(str(e)) from None


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
