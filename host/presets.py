"""Style presets: one TOML file per song (model bundle, style tokens, tempo, sampling, context,
JACK connections), validated into a typed `Preset` the other commands use (docs/PRESETS.md).

This module is the public face: the typed preset (host/preset_types.py) and the file reader
(host/preset_schema.py) are re-exported here; it adds the checks against the bundle and the
folders presets live in.
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midicopilot.host.preset_schema import expand_path, load_preset, parse_preset
from midicopilot.host.preset_types import (
    BACKENDS,
    BUNDLE_FILES,
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

__all__ = [
    "BACKENDS", "BUNDLE_FILES", "INPUT_NAME_RE", "NAME_RE", "TEMPO_SOURCES", "WEIGHTS",
    "Context", "Control", "Input", "Output", "Preset", "PresetEntry", "PresetError", "Sampling",
    "Style", "Tempo",
    "check_preset", "engine_args", "expand_path", "find_presets", "load_preset", "parse_preset",
    "preset_dirs", "project_presets_dir", "read_bundle_meta", "resolve_preset",
    "user_presets_dir",
]


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
