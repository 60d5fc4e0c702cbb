"""The typed style preset: what a preset file (docs/PRESETS.md) becomes once it is valid.

Frozen dataclasses only; reading and checking a file is host/preset_schema.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

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
