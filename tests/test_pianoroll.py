"""The piano roll, drawn from real MIDI files of the music21 package: the model's channel 0 and the
humans' channels must show up in their own colours inside the plot (the legend is outside it, so
its swatches cannot make these tests pass)."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colors, image

from midicopilot.host.pianoroll import (
    MODEL_COLOR,
    PianoRollError,
    draw_pianoroll,
    human_color,
    read_notes,
)
from midicopilot.train.music21_midi import package_midi_files

ROOT = Path(__file__).resolve().parent.parent


def midi(name: str) -> Path:
    found = [p for p in package_midi_files() if p.name == name]
    assert found, f"{name} not in the music21 package"
    return found[0]


def colour_mask(png: Path, box: tuple[int, int, int, int], colour: str) -> np.ndarray:
    """Pixels inside `box` (x0, y0, x1, y1) of exactly `colour`."""
    img = image.imread(str(png))[..., :3]
    x0, y0, x1, y1 = box
    want = np.array(colors.to_rgb(colour))
    return np.all(np.abs(img[y0:y1, x0:x1] - want) < 1.5 / 255, axis=-1)


def test_model_and_human_channels_in_their_colours(tmp_path: Path) -> None:
    # test02.mid: four voices on channels 0–3; channel 0 (the highest voice) plays the model.
    src = midi("test02.mid")
    png = tmp_path / "roll.png"
    info = draw_pianoroll(src, png, title="test02")
    assert info.notes == {0: 36, 1: 42, 2: 44, 3: 41}
    assert image.imread(str(png)).shape[:2] == (info.size[1], info.size[0])

    model = colour_mask(png, info.plot_box, MODEL_COLOR)
    assert model.sum() > 36 * 20  # every note is a bar of many pixels
    rows_by_channel = {}
    for ch in (1, 2, 3):
        mask = colour_mask(png, info.plot_box, human_color(ch))
        assert mask.sum() > 40 * 20, ch
        rows_by_channel[ch] = np.nonzero(mask)[0].mean()
    # Drawn where the notes are: the soprano (model) sits above the bass (y grows downwards).
    assert np.nonzero(model)[0].mean() < rows_by_channel[3]
    notes, _ = read_notes(src)
    top = max(n.pitch for n in notes if n.channel == 0)
    assert top == max(n.pitch for n in notes)
    assert np.nonzero(model)[0].min() <= min(np.nonzero(colour_mask(
        png, info.plot_box, human_color(ch)))[0].min() for ch in (1, 2, 3))


def test_file_without_channel_0_has_no_model_colour(tmp_path: Path) -> None:
    # test03.mid plays on channels 4 and 5 only: nothing may look like the model.
    png = tmp_path / "roll.png"
    info = draw_pianoroll(midi("test03.mid"), png)
    assert set(info.notes) == {4, 5}
    assert colour_mask(png, info.plot_box, MODEL_COLOR).sum() == 0
    assert colour_mask(png, info.plot_box, human_color(4)).sum() > 100
    assert colour_mask(png, info.plot_box, human_color(5)).sum() > 100


def test_model_channel_is_a_parameter(tmp_path: Path) -> None:
    png = tmp_path / "roll.png"
    info = draw_pianoroll(midi("test03.mid"), png, model_channel=5)
    assert colour_mask(png, info.plot_box, MODEL_COLOR).sum() > 100


def test_times_are_in_beats() -> None:
    import mido

    src = midi("test09.mid")  # two channels, 192 ticks per beat
    notes, end = read_notes(src)
    mid = mido.MidiFile(str(src))
    tpb = mid.ticks_per_beat
    assert end == max(sum(m.time for m in t) for t in mid.tracks) / tpb
    ons = [m for t in mid.tracks for m in t if m.type == "note_on" and m.velocity > 0]
    assert len(notes) == len(ons)
    assert all(0 <= n.start < n.end <= end for n in notes)
    first = min(sum(m.time for m in t[:i + 1]) for t in mid.tracks
                for i, m in enumerate(t) if m.type == "note_on" and m.velocity > 0)
    assert notes[0].start == first / tpb


def test_bad_midi_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd this is not midi")
    with pytest.raises(PianoRollError, match=r"bad.mid: not a readable MIDI file"):
        read_notes(bad)
    out = subprocess.run([sys.executable, "-m", "midicopilot.host.cli", "roll", str(bad),
                          "-o", str(tmp_path / "x.png")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    assert len(out.stderr.splitlines()) == 1 and "not a readable MIDI file" in out.stderr


def test_roll_command_writes_png(tmp_path: Path) -> None:
    png = tmp_path / "k525.png"
    out = subprocess.run([sys.executable, "-m", "midicopilot.host.cli", "roll",
                          str(midi("k525short.mid")), "-o", str(png)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "166 human notes, 45 model notes" in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_through_engine_draws_model_notes(tmp_path: Path, engine_bin: Path) -> None:
    """`midicopilot render` with a real engine and a real (random-weights) bundle: the output has
    the human parts and the model's channel 0, and the roll shows both."""
    exe = engine_bin
    sys.path.insert(0, str(ROOT / "tests"))
    from engine_fixtures import make_random_bundle

    bundle = make_random_bundle(tmp_path / "bundle", vocab_size=300, hidden_size=32, layers=1,
                                heads=2, kv_heads=1)
    preset = tmp_path / "p.toml"
    preset.write_text(f'bundle = "{bundle}"\n[style]\ngenre = "CHORALE"\npart = "SOPRANO"\n'
                      "[sampling]\nseed = 1\n")
    out_mid, png = tmp_path / "out.mid", tmp_path / "out.png"
    out = subprocess.run([sys.executable, "-m", "midicopilot.host.cli", "render", str(preset),
                          str(midi("test02.mid")), "-o", str(out_mid), "--roll", str(png)],
                         capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "MIDICOPILOT_ENGINE": str(exe)})
    assert out.returncode == 0, out.stderr
    notes, _ = read_notes(out_mid)
    assert any(n.channel == 0 for n in notes), "the model played nothing"
    # test02's four voices are on channels 0–3: each takes a human channel, none is lost
    source, _ = read_notes(midi("test02.mid"))
    by_channel = Counter(n.channel for n in source)
    assert sorted(by_channel) == [0, 1, 2, 3]
    human = Counter(n.channel for n in notes if n.channel != 0)
    assert set(human) == {1, 2, 3, 4}
    assert sorted(human.values()) == sorted(by_channel.values())
    info = draw_pianoroll(out_mid, tmp_path / "again.png")
    assert colour_mask(tmp_path / "again.png", info.plot_box, MODEL_COLOR).sum() > 0

    # --channels keep: the file's own channels, its channel 0 left out (and said so)
    keep = subprocess.run([sys.executable, "-m", "midicopilot.host.cli", "render", str(preset),
                           str(midi("test02.mid")), "-o", str(out_mid), "--channels", "keep"],
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "MIDICOPILOT_ENGINE": str(exe)})
    assert keep.returncode == 0, keep.stderr
    assert f"{by_channel[0]} notes on channel 0 left out" in keep.stderr
    notes, _ = read_notes(out_mid)
    human = Counter(n.channel for n in notes if n.channel != 0)
    assert human == Counter({c: by_channel[c] for c in (1, 2, 3)})
