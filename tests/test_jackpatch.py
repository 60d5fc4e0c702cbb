"""JACK patching against a real dummy jackd (tests/jackserver.py) with real JACK-Client ports:
the engine is stood in for by a JACK client named `midicopilot` with the engine's ports, hardware
by clients named and flagged as a2jmidid registers its ports (physical + terminal)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jack
import pytest
from jackserver import JackServer, jack_server  # noqa: F401 - jack_server is a fixture

from midicopilot.host import jackpatch
from midicopilot.host.presets import load_preset

pytestmark = pytest.mark.jack

KEYSTATION = "Keystation 49 [20] (capture): Keystation 49 MIDI 1"
JUNO_IN = "Juno [24] (playback): Juno MIDI 1"
JUNO_OUT = "Juno [24] (capture): Juno MIDI 1"
THROUGH = "Midi Through [14] (capture): Midi Through Port-0"

PRESET = """
bundle = "bundle"
[[inputs]]
name = "keys"
channel = "pass"
connect = ["a2j:.*Keystation.*capture"]
[[inputs]]
name = "pads"
channel = 9
connect = ["^mpc:", "^nothing-here:"]
[output]
connect = ["fluidsynth:midi.*", "a2j:.*Juno.*playback", "synth-by-alias"]
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}  # JACK_DEFAULT_SERVER is set by the fixture
    return subprocess.run([sys.executable, "-m", "midicopilot.host.cli", *args],
                          capture_output=True, text=True, timeout=60, env=env)


@dataclass
class Studio:
    clients: dict[str, jack.Client] = field(default_factory=dict)
    to_send: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    received: dict[str, list[tuple[str, bytes]]] = field(default_factory=lambda: defaultdict(list))

    def client(self, name: str) -> jack.Client:
        """A real JACK client whose first MIDI output plays `to_send[name]` and whose MIDI inputs
        record into `received[name]`."""
        c = jack.Client(name, no_start_server=True, use_exact_name=True)
        self.clients[name] = c
        send, got = self.to_send[name], self.received[name]

        @c.set_process_callback
        def _process(frames: int) -> None:
            for port in c.midi_outports:
                port.clear_buffer()
            if send and c.midi_outports:
                c.midi_outports[0].write_midi_event(0, send.pop(0))
            for port in c.midi_inports:
                for _offset, data in port.incoming_midi_events():
                    got.append((port.shortname, bytes(data)))
        return c


@pytest.fixture
def studio(jack_server: JackServer) -> Iterator[Studio]:  # noqa: F811
    """A studio on the dummy server: a2jmidid-style hardware, an MPC, two synths, the engine."""
    st = Studio()
    a2j = st.client("a2j")
    a2j.midi_outports.register(KEYSTATION, is_physical=True, is_terminal=True)
    a2j.midi_outports.register(JUNO_OUT, is_physical=True, is_terminal=True)
    a2j.midi_inports.register(JUNO_IN, is_physical=True, is_terminal=True)
    a2j.midi_outports.register(THROUGH, is_physical=True, is_terminal=True)
    st.client("mpc").midi_outports.register("out")
    st.client("fluidsynth").midi_inports.register("midi_00")
    other = st.client("Midi-Bridge").midi_inports.register("port-7")
    other.set_alias("synth-by-alias:playback_1")
    eng = st.client("midicopilot")
    eng.midi_outports.register("out")
    eng.midi_inports.register("in_keys")
    eng.midi_inports.register("in_pads")
    for c in st.clients.values():
        c.activate()
    try:
        yield st
    finally:
        for c in st.clients.values():
            c.deactivate()
            c.close()


def connections(client: jack.Client, port: str) -> set[str]:
    return {p.name for p in client.get_all_connections(port)}


def test_fixture_runs_and_stops_a_private_server() -> None:
    before = os.environ.get("JACK_DEFAULT_SERVER")
    with JackServer() as server:
        assert os.environ["JACK_DEFAULT_SERVER"] == server.name
        c = jack.Client("probe", no_start_server=True)
        assert (c.samplerate, c.blocksize) == (48000, 256)
        assert "system:playback_1" in [p.name for p in c.get_ports()]
        c.close()
        assert server.is_running()
    assert not server.is_running()
    assert os.environ.get("JACK_DEFAULT_SERVER") == before


def test_ports_lists_midi_ports_with_hardware_marked(studio: Studio) -> None:
    out = cli("ports")
    assert out.returncode == 0, out.stderr
    src, dst = out.stdout.split("MIDI destinations")
    assert f"a2j  a2j:{KEYSTATION}" in src and "midicopilot:out" in src and "mpc:out" in src
    assert f"a2j  a2j:{JUNO_IN}" in dst and "midicopilot:in_keys" in dst
    assert "fluidsynth:midi_00" in dst and "synth-by-alias:playback_1" in dst
    assert "system:playback_1" not in out.stdout  # audio ports are not MIDI ports

    with jackpatch.open_client() as c:
        found = {p.name: p for p in jackpatch.list_midi_ports(c)}
    assert found[f"a2j:{KEYSTATION}"].is_source and found[f"a2j:{KEYSTATION}"].is_physical
    assert not found["fluidsynth:midi_00"].is_source and not found["mpc:out"].is_physical


def test_no_server_is_one_line_and_quick(tmp_path: Path) -> None:
    env = {**os.environ, "JACK_DEFAULT_SERVER": "mcp-no-such-server"}
    for args in (["ports"], ["patch", "demo"]):
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "midicopilot.host.cli", *args],
                             capture_output=True, text=True, timeout=30, env=env)
        assert out.returncode == 1
        assert out.stdout == ""
        assert out.stderr.splitlines() == [
            "Error: no JACK server running (server 'mcp-no-such-server'): start jackd or "
            "PipeWire-JACK first, or choose one with --server / JACK_DEFAULT_SERVER"]
        assert time.monotonic() - t0 < 20  # no hang (generous: the CLI's own start-up)


def test_patch_connects_by_regex_and_warns_on_unmatched(
        studio: Studio, tmp_path: Path) -> None:
    preset = tmp_path / "song.toml"
    preset.write_text(textwrap.dedent(PRESET))
    out = cli("patch", str(preset))
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.splitlines()) == sorted([
        f"connected a2j:{KEYSTATION} -> midicopilot:in_keys",
        "connected mpc:out -> midicopilot:in_pads",
        "connected midicopilot:out -> fluidsynth:midi_00",
        f"connected midicopilot:out -> a2j:{JUNO_IN}",
        "connected midicopilot:out -> Midi-Bridge:port-7",
    ])
    assert out.stderr.splitlines() == [
        "warning: inputs[1] (pads): '^nothing-here:' matched no MIDI port"]

    c = studio.clients["midicopilot"]
    assert connections(c, "midicopilot:in_keys") == {f"a2j:{KEYSTATION}"}
    assert connections(c, "midicopilot:in_pads") == {"mpc:out"}
    assert connections(c, "midicopilot:out") == {
        "fluidsynth:midi_00", f"a2j:{JUNO_IN}", "Midi-Bridge:port-7"}
    # The Juno's own capture port matched no pattern of the inputs: left alone.
    assert connections(c, f"a2j:{JUNO_OUT}") == set()

    again = cli("patch", str(preset))
    assert again.returncode == 0
    assert not [ln for ln in again.stdout.splitlines() if ln.startswith("connected")]
    assert len([ln for ln in again.stdout.splitlines() if ln.startswith("already")]) == 5


def test_shipped_demo_preset_patches_a2jmidid_names(studio: Studio) -> None:
    out = cli("patch", "demo")
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.splitlines()) == sorted([
        f"connected a2j:{KEYSTATION} -> midicopilot:in_keys",
        f"connected a2j:{JUNO_OUT} -> midicopilot:in_keys",
        "connected midicopilot:out -> fluidsynth:midi_00"])
    assert len(out.stderr.splitlines()) == 3  # PipeWire's bridge, qsynth, FLUID Synth: absent
    assert "'^qsynth:midi' matched no MIDI port" in out.stderr
    assert connections(studio.clients["a2j"], f"a2j:{THROUGH}") == set()


def test_patched_connection_carries_midi(studio: Studio, tmp_path: Path) -> None:
    """A note played on the (stand-in) Keystation reaches the engine's input after patching,
    and one the engine plays reaches the synth."""
    preset = tmp_path / "song.toml"
    preset.write_text(textwrap.dedent(PRESET))
    with jackpatch.open_client() as c:
        report = jackpatch.patch(c, load_preset(preset))
    assert (f"a2j:{KEYSTATION}", "midicopilot:in_keys") in report.made
    studio.to_send["a2j"].append(bytes([0x91, 60, 100]))
    studio.to_send["midicopilot"].append(bytes([0x90, 67, 80]))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (studio.received["midicopilot"]
                                               and studio.received["fluidsynth"]):
        time.sleep(0.01)
    assert studio.received["midicopilot"] == [("in_keys", bytes([0x91, 60, 100]))]
    assert studio.received["fluidsynth"] == [("midi_00", bytes([0x90, 67, 80]))]


def test_patch_without_engine_is_one_line(jack_server: JackServer, tmp_path: Path) -> None:  # noqa: F811
    preset = tmp_path / "song.toml"
    preset.write_text(textwrap.dedent(PRESET))
    out = cli("patch", str(preset))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"Error: no 'midicopilot' JACK client on server '{jack_server.name}': "
        "start the engine first"]


def test_patch_refuses_alsa_preset(jack_server: JackServer, tmp_path: Path) -> None:  # noqa: F811
    preset = tmp_path / "song.toml"
    preset.write_text('bundle = "b"\nbackend = "alsa"\n')
    out = cli("patch", str(preset))
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1 and "backend: 'alsa'" in out.stderr
