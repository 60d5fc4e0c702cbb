"""Shared fixtures: the engine binary, the real MIDI files from music21, a temp MIDI cache."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"


def engine_path() -> Path:
    """The release build of midicopilot-engine (the README's test command builds it first)."""
    if os.environ.get("MIDICOPILOT_ENGINE"):
        return Path(os.environ["MIDICOPILOT_ENGINE"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "engine" / "target"))
    return target / "release" / "midicopilot-engine"


@pytest.fixture(scope="session")
def engine_bin() -> Path:
    path = engine_path()
    if not path.exists():
        pytest.fail(f"{path} is missing: build it with `cargo build --release` in engine/ "
                    "(the README's test command does)")
    return path


@pytest.fixture(scope="session")
def music21_midi_files() -> list[Path]:
    """Every real MIDI file made from the music21 package (its own + exported corpus scores)."""
    from midicopilot.train.music21_midi import all_midi_files

    files = all_midi_files()
    assert len(files) >= 300, f"only {len(files)} music21-derived MIDI files"
    return files


@pytest.fixture
def python_exe() -> str:
    return shutil.which("python3") or "python3"
