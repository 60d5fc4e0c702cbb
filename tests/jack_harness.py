"""The live tests' harness: the engine as a subprocess on a real JACK server, and a musician
(host/musician.py, JACK-Client) that plays into it and records what comes out with frame times.

    with JackServer() as server, LiveEngine(engine_bin, bundle, server) as eng:
        with Musician(server=server.name) as m:
            m.connect_to_engine()
            rec = m.play(messages)
        code, stderr = eng.stop()           # SIGTERM, wait, exit code and stderr
        report = eng.report()               # the engine's --report JSON
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from jackserver import JackServer

from midicopilot.host.musician import (  # noqa: F401 - re-exported for the tests
    Musician,
    NoteCheck,
    Piece,
    Recording,
    check_notes,
    load_piece,
    write_midi,
)


class LiveEngine:
    """`midicopilot-engine jack` on a test server; stderr kept in a file."""

    def __init__(self, engine_bin: Path, bundle: Path, server: JackServer, *,
                 args: Sequence[str] = (), inputs: Sequence[str] = ("keys=pass",),
                 bpm: float = 120.0, seed: int = 1) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="live-engine-"))
        self.report_path = self.dir / "report.json"
        self.stderr_path = self.dir / "stderr.txt"
        self.server = server
        self.argv = [str(engine_bin), "jack", "--bundle", str(bundle), "--bpm", str(bpm),
                     "--seed", str(seed), "--report", str(self.report_path), *args]
        for i in inputs:
            self.argv += ["--input", i]
        self.inputs = [i.split("=")[0] for i in inputs]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> LiveEngine:
        self._err = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self._err,
                                     stdin=subprocess.DEVNULL, env=self.server.env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the engine's ports are up (the model is loaded by then)."""
        port = f"midicopilot:in_{self.inputs[0]}" if self.inputs else "midicopilot:in"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"engine exited with {self.proc.returncode}: "
                                     f"{self.stderr()}")
            if port in self.server.ports() and "midicopilot:out" in self.server.ports():
                return
            time.sleep(0.1)
        raise AssertionError(f"engine port {port} not up after {timeout} s: {self.stderr()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str]:
        """Send `sig`, wait; (exit code, stderr)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"engine did not stop within {timeout} s of signal {sig}: "
                                 f"{self.stderr()}") from None
        self._err.close()
        return code, self.stderr()

    def wait(self, timeout: float) -> tuple[int, str]:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self._err.close()
        return code, self.stderr()

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def report(self) -> dict:
        return json.loads(self.report_path.read_text())

    def __enter__(self) -> LiveEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def flood(seconds: float, per_second: int, *, channels: Sequence[int] = (1, 2, 3, 9),
          with_cc: bool = True) -> list[tuple[float, bytes]]:
    """A MIDI flood: `per_second` note messages a second (note-on/note-off pairs cycling over
    pitches and channels, some re-striking sounding notes and some releasing silent ones), plus
    one control change per four notes when `with_cc`. Every note is closed at the end."""
    out: list[tuple[float, bytes]] = []
    n = int(seconds * per_second)
    dt = 1.0 / per_second
    sounding: list[tuple[int, int]] = []
    for i in range(n):
        t = i * dt
        ch = channels[i % len(channels)]
        pitch = 36 + (i * 7) % 60
        if i % 2 == 0:
            out.append((t, bytes([0x90 | ch, pitch, 1 + i % 127])))
            sounding.append((ch, pitch))
        else:
            # release the oldest, or a note that is not sounding every 16th time
            if i % 32 == 1 or not sounding:
                out.append((t, bytes([0x80 | ch, (pitch + 1) % 128, 0])))
            else:
                c, p = sounding.pop(0)
                out.append((t, bytes([0x80 | c, p, 0])))
        if with_cc and i % 4 == 0:
            out.append((t, bytes([0xB0 | ch, 1, i % 128])))
    end = seconds
    for c, p in sounding:
        out.append((end, bytes([0x80 | c, p, 0])))
    return out


def clock_messages(seconds: float, bpm: float, *, start: bool = True) -> list[tuple[float, bytes]]:
    """MIDI clock at `bpm` (24 a quarter) for `seconds`, after a Start message."""
    out = [(0.0, b"\xfa")] if start else []
    per = 60.0 / bpm / 24.0
    n = int(seconds / per)
    out += [(i * per, b"\xf8") for i in range(n)]
    return out


def unique_missing_server() -> str:
    return f"mcp-missing-{os.getpid()}-{time.monotonic_ns()}"
