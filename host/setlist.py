"""The set-list format: several presets played by one engine run (docs/LIVE.md "Set lists").

    setlist = load_set_list("gig.toml")           # or set_from_presets(["song1", "song2"])
    problems = check_set(setlist)                  # one line each (bundles, style words, mixing)

A set list file:

    [control]                       # optional: MIDI sources whose program changes switch songs
    connect = ["MPK.*capture"]

    [[song]]
    preset = "chorale-alto"         # a preset name or file (relative to this file's folder)
    name = "opener"                 # optional; default: the preset's name
    program = 0                     # optional: MIDI program change 0–127 that selects it
    key = "a"                       # optional: the terminal key that selects it

This module owns reading and validating it (Song, SetList), what one engine run cannot mix
(consistency_problems, check_set), the engine's inputs for the whole set, and re-reading a
song's preset when it is switched to (reload_song). Playing a set is host/player.py.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midicopilot.host.presets import (
    Input,
    Preset,
    PresetError,
    check_preset,
    load_preset,
    resolve_preset,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

DEFAULT_KEYS = "1234567890"
RESERVED_KEYS = "np"          # n: next song, p: previous song


class SetListError(Exception):
    """A set list that cannot be used; `str()` is one line."""


@dataclass(frozen=True)
class Song:
    name: str
    spec: str                 # the preset as written (name or path)
    preset: Preset
    program: int | None = None
    key: str | None = None


@dataclass(frozen=True)
class SetList:
    songs: tuple[Song, ...]
    control_connect: tuple[str, ...] = ()
    path: Path | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.songs]

    def index(self, name: str) -> int | None:
        for i, s in enumerate(self.songs):
            if s.name == name:
                return i
        return None

    def keys(self) -> dict[str, int]:
        """Terminal key → song index: the songs' `key`s if any song sets one, else 1–9, 0."""
        if any(s.key for s in self.songs):
            return {s.key: i for i, s in enumerate(self.songs) if s.key}
        return {k: i for i, k in enumerate(DEFAULT_KEYS[:len(self.songs)])}

    def programs(self) -> dict[int, int]:
        """Program number → song index: the songs' `program`s if any song sets one, else
        program 0 is the first song, 1 the second, …"""
        if any(s.program is not None for s in self.songs):
            return {s.program: i for i, s in enumerate(self.songs) if s.program is not None}
        return {i: i for i in range(len(self.songs))}

    def control_patterns(self) -> list[str]:
        """The set's `[control] connect` and every song preset's, without repeats."""
        out: list[str] = []
        for pat in (*self.control_connect, *(p for s in self.songs
                                              for p in s.preset.control.connect)):
            if pat not in out:
                out.append(pat)
        return out


# -- reading ----------------------------------------------------------------------------------
_SONG_KEYS = ("preset", "name", "program", "key")
_TOP_KEYS = ("song", "control")


def _unknown(where: str, key: str, valid: Sequence[str]) -> str:
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    hint = f"did you mean '{near[0]}'?" if near else f"valid here: {', '.join(valid)}"
    return f"{where}{key}: unknown key ({hint})"


def _load_song_preset(spec: str, base: Path | None, where: str) -> Preset:
    """A song's preset: a path (relative to the set list's folder) or a preset name."""
    candidates = []
    p = Path(os.path.expanduser(spec))
    if base is not None and not p.is_absolute():
        candidates.append(base / p)
    candidates.append(p)
    for c in candidates:
        if c.is_file():
            return load_preset(c)
    try:
        return load_preset(resolve_preset(spec))
    except PresetError as e:
        raise SetListError(f"{where}: {e}") from None


def _check_unique(songs: list[Song], prefix: str, label: Callable[[int], str]) -> None:
    seen: dict[str, int] = {}
    for i, s in enumerate(songs):
        if s.name in seen:
            raise SetListError(f"{prefix}{label(i)}: the song name '{s.name}' is used twice "
                               f"(also {label(seen[s.name])}); give one of them a `name`")
        seen[s.name] = i


def load_set_list(path: str | Path) -> SetList:
    """Read and validate a set list file; SetListError (one line) if it is not usable."""
    display = str(path)
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SetListError(f"{display}: no such file") from None
    except IsADirectoryError:
        raise SetListError(f"{display}: is a folder, not a set list file") from None
    except UnicodeDecodeError:
        raise SetListError(f"{display}: not UTF-8 text") from None
    except OSError as e:
        raise SetListError(f"{display}: cannot read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SetListError(f"{display}: TOML syntax error: {e}") from None
    for key in data:
        if key not in _TOP_KEYS:
            raise SetListError(_unknown(f"{display}: ", key, _TOP_KEYS))
    control: tuple[str, ...] = ()
    if "control" in data:
        raw = data["control"]
        if not isinstance(raw, dict):
            raise SetListError(f"{display}: control: expected a table ([control])")
        for key in raw:
            if key != "connect":
                raise SetListError(_unknown(f"{display}: control.", key, ["connect"]))
        control = _patterns(raw.get("connect", []), f"{display}: control.connect")
    raw_songs = data.get("song")
    if not isinstance(raw_songs, list) or not raw_songs:
        raise SetListError(f"{display}: song: no songs (add [[song]] tables with a `preset`)")
    songs: list[Song] = []
    for i, raw in enumerate(raw_songs):
        where = f"{display}: song[{i}]"
        if not isinstance(raw, dict):
            raise SetListError(f"{where}: expected a table ([[song]])")
        for key in raw:
            if key not in _SONG_KEYS:
                raise SetListError(_unknown(f"{where}.", key, _SONG_KEYS))
        spec = raw.get("preset")
        if not isinstance(spec, str) or not spec.strip():
            raise SetListError(f"{where}.preset: missing (a preset name or file)")
        name = raw.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise SetListError(f"{where}.name: expected a non-empty string")
        program = raw.get("program")
        if program is not None and (isinstance(program, bool) or not isinstance(program, int)
                                    or not 0 <= program <= 127):
            raise SetListError(f"{where}.program: {program!r} is not a MIDI program 0–127")
        key = raw.get("key")
        if key is not None:
            if not isinstance(key, str) or len(key) != 1 or not key.isprintable() or key == " ":
                raise SetListError(f"{where}.key: {key!r} is not one printable character")
            if key in RESERVED_KEYS:
                raise SetListError(f"{where}.key: '{key}' is taken (n: next song, p: previous)")
        preset = _load_song_preset(spec, p.parent, f"{where}.preset")
        songs.append(Song(name or preset.name, spec, preset, program, key))
    _check_unique(songs, f"{display}: ", lambda i: f"song[{i}]")
    for attr, what in (("program", "program"), ("key", "key")):
        seen: dict[object, int] = {}
        for i, s in enumerate(songs):
            v = getattr(s, attr)
            if v is None:
                continue
            if v in seen:
                raise SetListError(f"{display}: song[{i}].{attr}: {what} {v!r} also selects "
                                   f"song[{seen[v]}] ({songs[seen[v]].name})")
            seen[v] = i
    return SetList(tuple(songs), control, p.absolute())


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    from midicopilot.host.preset_schema import regex_list

    try:
        return regex_list(value)
    except ValueError as e:
        raise SetListError(f"{where}: {e}") from None


def set_from_presets(specs: Sequence[str]) -> SetList:
    """A set of the presets named on the command line, in order."""
    if not specs:
        raise SetListError("play: no preset given (PRESET... or --set-list FILE)")
    songs: list[Song] = []
    for spec in specs:
        try:
            preset = load_preset(resolve_preset(spec))
        except PresetError as e:
            raise SetListError(str(e)) from None
        songs.append(Song(preset.name, spec, preset))
    _check_unique(songs, "play: ", lambda i: f"preset {i + 1} ({specs[i]})")
    return SetList(tuple(songs))


def with_backend(setlist: SetList, backend: str | None) -> SetList:
    """Every song played on `backend` (the `--backend` option), or as the presets say."""
    if backend is None:
        return setlist
    songs = tuple(dataclasses.replace(s, preset=dataclasses.replace(s.preset, backend=backend))
                  for s in setlist.songs)
    return dataclasses.replace(setlist, songs=songs)


# -- checks -------------------------------------------------------------------------------------
def engine_inputs(setlist: SetList) -> tuple[Input, ...]:
    """The engine's inputs for the whole set: every song's, by name, first one first."""
    out: dict[str, Input] = {}
    for s in setlist.songs:
        for inp in s.preset.inputs:
            out.setdefault(inp.name, inp)
    return tuple(out.values())


def consistency_problems(setlist: SetList) -> list[str]:
    """What one engine run cannot do: songs on different backends or tempo sources, or one
    input name with two channel modes (the engine's ports are made once for the set)."""
    problems = []
    first = setlist.songs[0]
    modes: dict[str, tuple[str, int | None]] = {}
    for s in setlist.songs:
        p = s.preset
        if p.backend != first.preset.backend:
            problems.append(f"{p.path}: backend: '{p.backend}' differs from "
                            f"'{first.preset.backend}' ({first.name}): one engine plays the "
                            "whole set")
        if p.tempo.source != first.preset.tempo.source:
            problems.append(f"{p.path}: tempo.source: '{p.tempo.source}' differs from "
                            f"'{first.preset.tempo.source}' ({first.name}): one engine plays the "
                            "whole set")
        for inp in p.inputs:
            if inp.name in modes and modes[inp.name][1] != inp.channel:
                other, ch = modes[inp.name]
                problems.append(f"{p.path}: inputs ({inp.name}).channel: "
                                f"{'pass' if inp.channel is None else inp.channel} differs from "
                                f"{'pass' if ch is None else ch} ({other}): the engine's ports "
                                "are made once for the set")
            modes.setdefault(inp.name, (s.name, inp.channel))
    return problems


def check_set(setlist: SetList) -> list[str]:
    """Every problem of the set, one line each: each song's preset (bundle, style words) and
    what one engine run cannot mix."""
    problems: list[str] = []
    for s in setlist.songs:
        problems += check_preset(s.preset)
    return problems + consistency_problems(setlist)


def reload_song(song: Song, backend: str | None = None) -> Preset:
    """The song's preset as it is on disk now, checked (PresetError: one line)."""
    preset = load_preset(song.preset.path)
    if backend is not None:
        preset = dataclasses.replace(preset, backend=backend)
    problems = check_preset(preset)
    if problems:
        raise PresetError(problems[0])
    return preset
