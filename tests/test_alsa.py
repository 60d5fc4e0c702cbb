"""The ALSA backend (`midicopilot-engine alsa`, engine/src/backend/alsa.rs; docs/RIGS.md).

What runs everywhere: the command line (flags, patterns, one line per problem), the error when
the machine has no ALSA sequencer, and the host's side (`play --backend alsa`, the flags it
builds from a preset). Port matching on lists of port names, the input filter and the output
timer are Rust unit tests (`cargo test alsa`).

Where an ALSA sequencer exists (`/dev/snd/seq`, the kernel's snd-seq with its "Midi Through"
port), `test_alsa_backend_plays_through_the_sequencer` plays a real chorale into the engine with
`aplaymidi` and records the engine's output with `arecordmidi`. It is skipped, with the reason,
where there is none (a kernel without sound support, such as this project's CI VM).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

SEQ = Path("/dev/snd/seq")


def _engine(engine_bin: Path, *args: str, timeout: float = 30
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(engine_bin), "alsa", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _one_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert "panicked" not in out.stderr and "Traceback" not in out.stderr
    return lines[0]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine_fixtures import make_random_bundle

    return make_random_bundle(tmp_path_factory.mktemp("alsa") / "bundle", vocab_size=512,
                              hidden_size=64, layers=2, heads=4, kv_heads=2, seed=3)


def test_no_sequencer_is_one_line_and_a_nonzero_exit(engine_bin: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-seq"
    t0 = time.monotonic()
    out = _engine(engine_bin, "--bundle", str(tmp_path), "--input", "Keystation",
                  "--seq-device", str(missing))
    assert out.returncode == 1
    assert _one_line(out) == (
        f"midicopilot-engine: no ALSA sequencer ({missing} is missing): load it with `modprobe "
        "snd-seq` (a virtual MIDI port: `modprobe snd-virmidi`), or use the jack backend")
    assert time.monotonic() - t0 < 10  # before any model is loaded


@pytest.mark.skipif(SEQ.exists(), reason="this machine has an ALSA sequencer")
def test_this_machine_without_a_sequencer_says_so(engine_bin: Path, bundle: Path) -> None:
    out = _engine(engine_bin, "--bundle", str(bundle), "--input", ".", "--output", "FLUID")
    assert out.returncode == 1
    assert _one_line(out).startswith("midicopilot-engine: no ALSA sequencer (/dev/snd/seq is "
                                     "missing)")


@pytest.mark.parametrize(("args", "want", "code"), [
    (["--input", "MPC("], 'midicopilot-engine: --input "MPC(": bad regular expression', 1),
    (["--output", "[a-"], 'midicopilot-engine: --output "[a-": bad regular expression', 1),
    (["--input-channel", "0=^MPC"], "'0' is not a channel 1–15 (0 is the model's)", 1),
    (["--input-channel", "MPC"], "--input-channel MPC: expected CH=PATTERN", 1),
    (["--tempo-source", "transport"], "--tempo-source transport needs JACK transport", 1),
    (["--backend", "jack"], "--backend jack: this command is the alsa backend", 1),
    (["--bpm", "5000"], "--bpm 5000: the tempo must be between 1 and 999", 1),
    (["--max-polyphony", "0"], "--max-polyphony 0: expected 1 to 128", 1),
    (["--top-p", "2"], "top-p must be in (0, 1]", 1),
    (["--no-such-flag"], "midicopilot-engine: unexpected argument '--no-such-flag'", 2),
])
def test_bad_flags_are_one_line(engine_bin: Path, tmp_path: Path, args: list[str], want: str,
                                code: int) -> None:
    # the flags are checked before the sequencer: these fail the same with or without one
    out = _engine(engine_bin, "--bundle", str(tmp_path), *args, "--seq-device",
                  str(tmp_path / "no-seq"))
    assert out.returncode == code
    assert want in _one_line(out), out.stderr


def test_the_host_builds_the_alsa_flags_from_a_preset(tmp_path: Path) -> None:
    from midicopilot.host.engine import alsa_args
    from midicopilot.host.presets import load_preset

    p = tmp_path / "pi.toml"
    p.write_text("""
bundle = "b"
backend = "alsa"
[tempo]
source = "midi_clock"
bpm = 90
[[inputs]]
name = "keys"
connect = ["Keystation", "^Juno"]
[[inputs]]
name = "pads"
channel = 9
connect = "^MPC"
[output]
connect = ["FLUID Synth", "Juno.*MIDI 1"]
""")
    preset = load_preset(p)
    args = alsa_args(preset, preset.inputs)
    assert args[:2] == ["--bundle", str(tmp_path / "b")]
    tail = args[args.index("--backend"):]
    assert tail == ["--backend", "alsa", "--tempo-source", "midi_clock",
                    "--release-horizon-ms", "40",
                    "--input", "Keystation", "--input", "^Juno", "--input-channel", "9=^MPC",
                    "--output", "FLUID Synth", "--output", "Juno.*MIDI 1"]
    assert "--bpm" in args and args[args.index("--bpm") + 1] == "90"


@pytest.mark.skipif(SEQ.exists(), reason="this machine has an ALSA sequencer")
def test_play_with_the_alsa_backend_says_why_not_here(tmp_path: Path, bundle: Path) -> None:
    p = tmp_path / "song.toml"
    p.write_text(f'bundle = "{bundle}"\n[[inputs]]\nname = "keys"\nconnect = "Keystation"\n')
    out = subprocess.run([sys.executable, "-m", "midicopilot.host.cli", "play", str(p),
                          "--backend", "alsa"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert _one_line(out).startswith("Error: no ALSA sequencer (/dev/snd/seq is missing)")


# -- where the kernel has an ALSA sequencer ----------------------------------------------------
def _alsa_client_port(listing: str, client_name: str, port_name: str) -> str | None:
    """"client:port" of `port_name` in `aconnect -i/-o` output for a client called
    `client_name` (midir makes one client per connection, all with the engine's name)."""
    client = None
    for line in listing.splitlines():
        if line.startswith("client "):
            num, _, rest = line[len("client "):].partition(":")
            client = num.strip() if rest.strip().startswith(f"'{client_name}'") else None
        elif client is not None:
            num, _, rest = line.strip().partition(" ")
            if rest.strip().strip("'").strip() == port_name:
                return f"{client}:{num}"
    return None


def test_the_alsa_port_listing_parser() -> None:
    listing = """client 0: 'System' [type=kernel]
    0 'Timer           '
    1 'Announce        '
client 14: 'Midi Through' [type=kernel]
    0 'Midi Through Port-0'
client 128: 'midicopilot' [type=user,pid=4242]
    0 'in              '
client 129: 'midicopilot' [type=user,pid=4242]
    0 'out             '
"""
    assert _alsa_client_port(listing, "midicopilot", "out") == "129:0"
    assert _alsa_client_port(listing, "Midi Through", "Midi Through Port-0") == "14:0"
    assert _alsa_client_port(listing, "midicopilot", "nope") is None


@pytest.mark.skipif(not SEQ.exists(), reason="no ALSA sequencer on this machine: /dev/snd/seq is "
                    "missing (the kernel has no sound support; `modprobe snd-seq-dummy` fails)")
def test_alsa_backend_plays_through_the_sequencer(engine_bin: Path, bundle: Path,
                                                  tmp_path: Path) -> None:
    import mido

    from midicopilot.host.musician import check_notes, load_piece
    from midicopilot.train.music21_midi import bach_chorales

    for tool in ("aplaymidi", "arecordmidi", "aconnect"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: alsa-utils)")
    listing = subprocess.run(["aconnect", "-o"], capture_output=True, text=True).stdout
    through = _alsa_client_port(listing, "Midi Through", "Midi Through Port-0")
    if through is None:
        pytest.skip("the kernel's 'Midi Through' port is missing (modprobe snd-seq-dummy)")

    piece = load_piece(bach_chorales(limit=1)[0], 120.0, leave_out="Soprano").until(6.0)
    played = tmp_path / "played.mid"
    track = mido.MidiTrack()
    last = 0.0
    for t, m in piece.messages:
        track.append(mido.Message.from_bytes(m, time=round((t - last) * 960)))  # 120 BPM, 480 tpq
        last = t
    mido.MidiFile(tracks=[track], ticks_per_beat=480).save(played)

    report = tmp_path / "report.json"
    eng = subprocess.Popen([str(engine_bin), "alsa", "--bundle", str(bundle), "--input",
                            "^Midi Through", "--bpm", "120", "--report", str(report)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        assert eng.stdout is not None and eng.stdin is not None
        ready = json.loads(eng.stdout.readline())
        assert ready["event"] == "ready" and ready["backend"] == "alsa"
        listing = subprocess.run(["aconnect", "-i"], capture_output=True, text=True).stdout
        out_port = _alsa_client_port(listing, "midicopilot", "out")
        assert out_port is not None, listing
        recorded = tmp_path / "heard.mid"
        rec = subprocess.Popen(["arecordmidi", "-p", out_port, str(recorded)])
        subprocess.run(["aplaymidi", "-p", through, str(played)], check=True, timeout=60)
        time.sleep(1.0)
        eng.stdin.write('{"cmd":"stop"}\n')
        eng.stdin.flush()
        code = eng.wait(timeout=30)
        time.sleep(0.3)
        rec.send_signal(2)
        rec.wait(timeout=10)
    finally:
        if eng.poll() is None:
            eng.kill()
    assert code == 0, eng.stderr.read() if eng.stderr else ""
    r = json.loads(report.read_text())
    assert r["backend"] == "alsa" and r["stop_reason"] == "command"
    assert r["events_in"] == 2 * piece.notes
    assert r["timer"]["sent"] == r["events_out"] - r["stop_offs"]
    heard = [(0, bytes(m.bytes())) for m in mido.MidiFile(recorded)
             if m.type in ("note_on", "note_off")]
    out = check_notes(heard)
    assert out.channels <= {0} and out.hanging == [] and out.unmatched_offs == 0
    assert out.ons + out.offs == r["events_out"]
