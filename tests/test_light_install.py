"""A player's install (`pip install .`) has no torch, transformers or peft: playing, rendering and
evaluating work without them, and the training commands say which extra to install."""
from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRAINING = {"torch", "transformers", "peft", "safetensors", "accelerate"}
# Imported before anything else in the child: these modules cannot be found, as after a
# player's install.
BLOCKER = f"""
import sys
class _NoTraining:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(TRAINING)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None
sys.meta_path.insert(0, _NoTraining())
"""


def requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.strip().splitlines():
        name = line.split(";")[0].split("[")[0]
        for sep in "<>=!~ ":
            name = name.split(sep)[0]
        if name:
            names.add(name.strip().lower())
    return names


def test_training_libraries_are_an_extra():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    base = requirement_names(cfg["options"]["install_requires"])
    train = requirement_names(cfg["options.extras_require"]["train"])
    assert not base & TRAINING, base & TRAINING
    assert TRAINING <= train


@pytest.fixture
def no_training(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midicopilot.host.cli", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_the_blocker_blocks(no_training):
    out = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True,
                         env=no_training)
    assert out.returncode != 0 and "No module named 'torch'" in out.stderr


@pytest.mark.parametrize("command", [
    ["train", "--phase", "align", "-o", "/tmp/never"],
    ["export", "/tmp/never", "-o", "/tmp/never-bundle"],
    ["demo-bundle", "-o", "/tmp/never-bundle"],
])
def test_training_commands_name_the_extra(no_training, command):
    out = run(no_training, *command)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'midicopilot[train]'" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_playing_rendering_and_evaluating_need_no_training_libraries(no_training, engine_bin,
                                                                     tmp_path):
    for args in (["--help"], ["render", "--help"], ["play", "--help"], ["presets", "list"],
                 ["encode", "--help"]):
        out = run(no_training, *args)
        assert out.returncode == 0, (args, out.stderr)
    bundle = ROOT / "bundles" / "demo"
    piece = json.loads((bundle / "midicopilot.json").read_text())["validation_pieces"][0]
    out = run(no_training, "eval", str(bundle), piece, "--seeds", "1", "--quiet",
              "--json", str(tmp_path / "e.json"))
    assert out.returncode == 0, out.stderr
    assert "validation loss" in out.stdout
