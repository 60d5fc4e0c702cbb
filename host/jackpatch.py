"""JACK patching with JACK-Client: list the MIDI ports that can be patched and make a preset's
connections by regular expression (a2jmidid and PipeWire port names change between boots, so
presets match them by pattern rather than by exact name).

The engine's JACK client is `midicopilot` with one input port per preset input
(`midicopilot:in_<name>`, or `midicopilot:in` when the preset names none) and `midicopilot:out`.
`patch()` connects every MIDI source matching an input's patterns to that input's port, and
`midicopilot:out` to every MIDI destination matching the output's patterns.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from midicopilot.host.presets import Preset

if TYPE_CHECKING:
    import jack

ENGINE_CLIENT = "midicopilot"
PATCH_CLIENT = "midicopilot-patch"
NETJACK_PORT_RE = re.compile(r":midi_(to|from)_slave_\d+$")


class JackUnavailable(Exception):
    """No JACK server to talk to; `str()` is one line."""


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """libjack prints its own lines ("Cannot connect to server socket ...") on file descriptor 2
    whatever the error callback; hide them while opening a client, we print one line instead."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def server_label(server: str | None) -> str:
    return server or os.environ.get("JACK_DEFAULT_SERVER") or "default"


@contextmanager
def open_client(name: str = PATCH_CLIENT, server: str | None = None) -> Iterator[jack.Client]:
    """A JACK client of a running server (never starts one); JackUnavailable if there is none."""
    import jack

    jack.set_error_function(lambda _msg: None)
    jack.set_info_function(lambda _msg: None)
    try:
        with _quiet_stderr():
            client = jack.Client(name, no_start_server=True, servername=server or None)
    except jack.JackOpenError:
        raise JackUnavailable(
            f"no JACK server running (server '{server_label(server)}'): start jackd or "
            "PipeWire-JACK first, or choose one with --server / JACK_DEFAULT_SERVER") from None
    try:
        yield client
    finally:
        client.close()


@dataclass(frozen=True)
class MidiPort:
    name: str
    is_source: bool      # a JACK output port: it plays into whatever it is connected to
    is_physical: bool    # hardware (the backend's system: ports, a2jmidid, PipeWire's bridge)
    aliases: tuple[str, ...] = ()
    connections: tuple[str, ...] = ()

    @property
    def client(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def tag(self) -> str:
        """`a2j` (a2jmidid's bridge), `net` (a netJACK2 slave's ports on the master: the remote
        machine's MIDI), `hw` (other physical ports), else empty."""
        if self.client == "a2j":
            return "a2j"
        if NETJACK_PORT_RE.search(self.name):
            return "net"
        return "hw" if self.is_physical else ""

    def matches(self, pattern: re.Pattern[str]) -> bool:
        """A pattern matches anywhere in the port's name or one of its aliases."""
        return any(pattern.search(n) for n in (self.name, *self.aliases))


def list_midi_ports(client: jack.Client, with_connections: bool = False) -> list[MidiPort]:
    """Every MIDI port of the server, sources first, each group sorted by name."""
    out = []
    for p in client.get_ports(is_midi=True):
        conns: tuple[str, ...] = ()
        if with_connections:
            conns = tuple(sorted(c.name for c in client.get_all_connections(p)))
        out.append(MidiPort(p.name, p.is_output, p.is_physical, tuple(p.aliases), conns))
    return sorted(out, key=lambda m: (not m.is_source, m.name))


@dataclass
class PatchReport:
    made: list[tuple[str, str]] = field(default_factory=list)
    already: list[tuple[str, str]] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (where, pattern)
    missing: list[str] = field(default_factory=list)                # engine ports not found
    failed: list[tuple[str, str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per connection made and per problem."""
        out = [f"connected {s} -> {d}" for s, d in self.made]
        out += [f"already connected {s} -> {d}" for s, d in self.already]
        out += [f"warning: {where}: '{pat}' matched no MIDI port" for where, pat in self.unmatched]
        out += [f"warning: engine port {p} not found" for p in self.missing]
        out += [f"error: cannot connect {s} -> {d}: {why}" for s, d, why in self.failed]
        return out


def plan(preset: Preset, ports: list[MidiPort], engine: str = ENGINE_CLIENT
         ) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]:
    """The connections a preset asks for among `ports`: (pairs, unmatched patterns, missing
    engine ports). Ports of the engine client itself are never matched by a pattern."""
    names = {p.name for p in ports}
    others = [p for p in ports if p.client != engine]
    pairs: list[tuple[str, str]] = []
    unmatched: list[tuple[str, str]] = []
    missing: list[str] = []
    inputs = list(preset.inputs)
    for i, inp in enumerate(inputs):
        dest = f"{engine}:{inp.port}"
        if dest not in names:
            missing.append(dest)
            continue
        for pat in inp.connect:
            found = [p.name for p in others if p.is_source and p.matches(re.compile(pat))]
            if not found:
                unmatched.append((f"inputs[{i}] ({inp.name})", pat))
            pairs += [(src, dest) for src in found if (src, dest) not in pairs]
    out_port = f"{engine}:out"
    if preset.output.connect:
        if out_port not in names:
            missing.append(out_port)
        else:
            for pat in preset.output.connect:
                found = [p.name for p in others if not p.is_source
                         and p.matches(re.compile(pat))]
                if not found:
                    unmatched.append(("output", pat))
                pairs += [(out_port, dst) for dst in found if (out_port, dst) not in pairs]
    return pairs, unmatched, missing


def engine_present(ports: list[MidiPort], engine: str = ENGINE_CLIENT) -> bool:
    return any(p.client == engine for p in ports)


def patch(client: jack.Client, preset: Preset, engine: str = ENGINE_CLIENT) -> PatchReport:
    """Make the preset's connections on the client's server (nothing is ever disconnected)."""
    import jack

    ports = list_midi_ports(client, with_connections=True)
    pairs, unmatched, missing = plan(preset, ports, engine)
    existing = {(p.name, c) for p in ports if p.is_source for c in p.connections}
    report = PatchReport(unmatched=unmatched, missing=missing)
    for src, dst in pairs:
        if (src, dst) in existing:
            report.already.append((src, dst))
            continue
        try:
            client.connect(src, dst)
        except jack.JackError as e:
            report.failed.append((src, dst, str(e)))
        else:
            report.made.append((src, dst))
    return report
