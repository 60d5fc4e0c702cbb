"""Two implementations, one truth: the Rust engine's `encode` against the Python one, byte for
byte, on every MIDI file made from the music21 package, and on the golden vectors."""
from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from midicopilot.train import events

GOLDEN = Path(__file__).parent / "golden" / "midi"


def rust_encode(engine: Path, path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(engine), "encode", str(path), *extra], capture_output=True,
                          timeout=60)


def test_rust_and_python_agree_on_every_music21_file(engine_bin, music21_midi_files):
    differ = []
    for path in music21_midi_files:
        expected = events.encode_file(path) + "\n"
        result = rust_encode(engine_bin, path)
        assert result.returncode == 0, (path, result.stderr)
        if result.stdout.decode() != expected:
            differ.append(path.name)
    print(f"Python and Rust agree byte for byte on {len(music21_midi_files) - len(differ)} of "
          f"{len(music21_midi_files)} music21-derived MIDI files")
    assert not differ, f"{len(differ)} files differ, e.g. {differ[:5]}"


def test_rust_and_python_agree_with_metadata_and_parameters(engine_bin, music21_midi_files):
    for path in music21_midi_files[:: max(1, len(music21_midi_files) // 25)]:
        for tpq, bins in ((48, 4), (2, 1)):
            params = events.LanguageParams(tpq, bins)
            expected = events.encode_file(path, params, ["[GENRE_CHORALE]", "[PART_BASS]"]) + "\n"
            result = rust_encode(engine_bin, path, "--genre", "chorale", "--part", "bass",
                                 "--tpq", str(tpq), "--velocity-bins", str(bins))
            assert result.stdout.decode() == expected, path


@pytest.mark.parametrize("error_case", sorted(GOLDEN.glob("*.err")), ids=lambda p: p.stem)
def test_both_refuse_bad_files_in_one_line(engine_bin, error_case: Path):
    path = error_case.with_suffix(".mid")
    result = rust_encode(engine_bin, path)
    stderr = result.stderr.decode()
    assert result.returncode != 0 and result.stdout == b""
    assert len(stderr.strip().splitlines()) == 1 and "panick" not in stderr, stderr
    assert path.name in stderr and error_case.read_text().strip() in stderr.lower()


def test_damaged_real_files_never_crash_either_side(engine_bin, music21_midi_files, tmp_path):
    """Real files with bytes flipped or cut: each side either refuses in one line or encodes;
    where both encode, they agree (a disagreement there is a bug in one of them)."""
    rng = random.Random(1234)
    both_encoded = refused = 0
    for i in range(150):
        data = bytearray(rng.choice(music21_midi_files).read_bytes())
        if i % 3 == 0:
            data = data[: rng.randrange(14, len(data))]
        else:
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(14, len(data))] = rng.randrange(256)
        damaged = tmp_path / f"damaged{i}.mid"
        damaged.write_bytes(bytes(data))
        result = rust_encode(engine_bin, damaged)
        assert result.returncode in (0, 1), result.stderr
        assert b"panick" not in result.stderr and len(result.stderr.splitlines()) <= 1
        try:
            expected = events.encode_file(damaged) + "\n"
        except events.MidiError:
            refused += 1
            continue
        if result.returncode == 0:
            both_encoded += 1
            assert result.stdout.decode() == expected, damaged
    print(f"damaged files: {both_encoded} encoded identically by both, {refused} refused by Python")
