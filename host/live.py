"""The live engine as a subprocess: start it with a preset, wait until it is ready, patch it,
supervise it, stop it cleanly.

    run = LiveRun(preset, server=None, report=Path("out/report.json"))
    run.start()              # `midicopilot-engine jack <the preset's flags>` in its own session
    run.wait_ready()         # its ports are on the server
    run.patch()              # the preset's connections (host/jackpatch.py, by regex)
    code = run.supervise()   # until it exits, Ctrl-C/SIGTERM (→ engine SIGTERM → wait), or
                             # `seconds`; a crash is one line and all-notes-off on channel 0

The engine runs in its own process group, so a terminal's Ctrl-C reaches only the host, which
stops the engine with SIGTERM: the engine then writes a note-off for every sounding note before
it deactivates, and prints its report line. If the engine dies any other way, the host sends
all-notes-off (CC 123, sustain off and a note-off per pitch, channel 0) to every destination the
engine's output was connected to, from a client of its own.

ControlledRun is the engine a set plays on (host/player.py): on JACK or ALSA, reading switch
requests on its stdin and writing JSON status lines on its stdout (engine/src/live/control.rs).
"""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from midicopilot.host import jackpatch
from midicopilot.host.engine import alsa_args, engine_args, find_engine
from midicopilot.host.presets import Input, Preset

PANIC_CLIENT = "midicopilot-panic"


class LiveError(Exception):
    """One line: why the live run could not start or went wrong."""


def play_argv(engine: Path, preset: Preset, *, report: Path | None = None,
              run_seconds: float | None = None, client_name: str | None = None) -> list[str]:
    """The engine's command line for a preset: `jack` with engine_args(preset, live=True)."""
    argv = [str(engine), "jack", *engine_args(preset, live=True)]
    if client_name:
        argv += ["--client-name", client_name]
    return argv + run_flags(report, run_seconds)


def run_flags(report: Path | None, run_seconds: float | None) -> list[str]:
    """The flags of a live run that are not the preset's: --report, --run-seconds."""
    out: list[str] = []
    if report is not None:
        out += ["--report", str(report)]
    if run_seconds is not None:
        out += ["--run-seconds", repr(float(run_seconds))]
    return out


def all_notes_off_messages(channel: int = 0) -> list[bytes]:
    """Sustain off, all notes off (CC 123), and a note-off for every pitch, on `channel`."""
    status_cc, status_off = 0xB0 | channel, 0x80 | channel
    return ([bytes([status_cc, 64, 0]), bytes([status_cc, 123, 0])]
            + [bytes([status_off, p, 0]) for p in range(128)])


def send_all_notes_off(destinations: list[str], server: str | None = None,
                       timeout: float = 2.0) -> int:
    """Connect a client of our own to `destinations` and send all-notes-off on channel 0.
    Returns how many destinations were reached."""
    import jack

    if not destinations:
        return 0
    messages = all_notes_off_messages(0)
    sent = threading.Event()
    with jackpatch.open_client(PANIC_CLIENT, server=server) as client:
        port = client.midi_outports.register("out")
        state = {"armed": False}

        @client.set_process_callback
        def _process(frames: int) -> None:
            port.clear_buffer()
            if state["armed"] and not sent.is_set():
                for i, m in enumerate(messages):
                    port.write_midi_event(min(i // 8, frames - 1), m)
                sent.set()

        client.activate()
        reached = 0
        for dst in destinations:
            try:
                client.connect(port, dst)
                reached += 1
            except jack.JackError:
                pass
        state["armed"] = True
        sent.wait(timeout)
        time.sleep(0.05)  # let the cycle that carries them complete
        client.deactivate()
    return reached


class LiveRun:
    """One supervised engine run (see the module docs)."""

    def __init__(self, preset: Preset, *, server: str | None = None,
                 report: Path | None = None, run_seconds: float | None = None,
                 engine: Path | None = None, echo: Callable[[str], None] | None = None) -> None:
        self.preset = preset
        self.server = server
        self.report = report
        self.run_seconds = run_seconds
        self.engine = engine
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_lines: list[str] = []
        self._reader: threading.Thread | None = None
        self.output_targets: list[str] = []
        self._stopping = False

    # -- start ----------------------------------------------------------------------------------
    def argv(self) -> list[str]:
        exe = self.engine or find_engine()
        return play_argv(exe, self.preset, report=self.report, run_seconds=self.run_seconds)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.server:
            env["JACK_DEFAULT_SERVER"] = self.server
        env["JACK_NO_START_SERVER"] = "1"
        return env

    def start(self) -> None:
        if self.preset.backend != "jack":
            raise LiveError(f"{self.preset.path}: backend: '{self.preset.backend}' — `play` runs "
                            "the jack backend; this engine has no alsa backend yet")
        self._spawn(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def _spawn(self, *, stdin: int, stdout: int) -> None:
        """The engine in a session of its own, its stderr echoed line by line."""
        if self.report is not None:
            self.report.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.argv(), stdin=stdin, stdout=stdout,
                                     stderr=subprocess.PIPE, env=self.env(),
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.stderr_lines.append(line)
            self.echo(line)

    def last_error(self) -> str:
        lines = [ln for ln in self.stderr_lines if ln.strip()]
        return lines[-1] if lines else "no message"

    def _not_exited(self) -> None:
        """LiveError if the engine has exited (while it should be getting ready)."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            self._join_reader()
            raise LiveError(f"the engine exited with {code} before it was ready: "
                            f"{self.last_error()}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the engine's ports are on the server (the model is loaded by then)."""
        assert self.proc is not None
        wanted = {f"{jackpatch.ENGINE_CLIENT}:{p}" for p in self.preset.input_ports}
        wanted.add(f"{jackpatch.ENGINE_CLIENT}:out")
        deadline = time.monotonic() + timeout
        while True:
            self._not_exited()
            try:
                with jackpatch.open_client(server=self.server) as client:
                    names = {p.name for p in jackpatch.list_midi_ports(client)}
            except jackpatch.JackUnavailable:
                names = set()
            if wanted <= names:
                return
            if time.monotonic() > deadline:
                raise LiveError(f"the engine's ports did not appear within {timeout:.0f} s")
            time.sleep(0.1)

    def patch(self) -> jackpatch.PatchReport:
        """The preset's connections; remembers where the engine's output goes (for a panic)."""
        with jackpatch.open_client(server=self.server) as client:
            report = jackpatch.patch(client, self.preset)
            self.refresh_targets(client)
        return report

    def refresh_targets(self, client: object | None = None) -> None:
        out = f"{jackpatch.ENGINE_CLIENT}:out"

        def read(c: object) -> None:
            for p in jackpatch.list_midi_ports(c, with_connections=True):  # type: ignore[arg-type]
                if p.name == out:
                    self.output_targets = list(p.connections)

        if client is not None:
            read(client)
            return
        try:
            with jackpatch.open_client(server=self.server) as c:
                read(c)
        except jackpatch.JackUnavailable:
            pass

    # -- run and stop ---------------------------------------------------------------------------
    def supervise(self, poll: float = 0.2, refresh_every: float = 2.0) -> int:
        """Wait for the engine to end; Ctrl-C or SIGTERM to the host stops it cleanly.
        Returns the engine's exit code (0: a clean stop)."""
        assert self.proc is not None
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_interrupt)
        last_refresh = time.monotonic()
        try:
            while self.proc.poll() is None:
                time.sleep(poll)
                if time.monotonic() - last_refresh > refresh_every:
                    self.refresh_targets()
                    last_refresh = time.monotonic()
        except KeyboardInterrupt:
            return self.stop()
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
        return self._ended()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the engine and wait for it (its note-offs and report come first)."""
        assert self.proc is not None
        self._stopping = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self._ended()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)

    def _ended(self) -> int:
        """The engine has exited: a crash is one line and all-notes-off."""
        assert self.proc is not None
        self._join_reader()
        code = self.proc.returncode
        if code == 0:
            return 0
        why = f"signal {-code}" if code < 0 else f"exit code {code}"
        self.echo(f"midicopilot: the engine stopped with {why}: {self.last_error()}")
        try:
            n = send_all_notes_off(self.output_targets, server=self.server)
        except jackpatch.JackUnavailable:
            n = 0
        if n:
            self.echo(f"midicopilot: sent all-notes-off on channel 0 to {n} destination(s): "
                      f"{', '.join(self.output_targets)}")
        return code if code > 0 else 1


class ControlledRun(LiveRun):
    """A LiveRun whose engine reads switch commands on stdin and reports on stdout."""

    def __init__(self, preset: Preset, *, inputs: tuple[Input, ...], **kw: Any) -> None:
        super().__init__(dataclasses.replace(preset, inputs=inputs), **kw)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ready = threading.Event()
        self._stdin_lock = threading.Lock()
        self._out_reader: threading.Thread | None = None

    def argv(self) -> list[str]:
        exe = self.engine or find_engine()
        p = self.preset
        if p.backend == "alsa":
            return [str(exe), "alsa", *alsa_args(p, p.inputs),
                    *run_flags(self.report, self.run_seconds)]
        return super().argv()

    def start(self) -> None:
        self._spawn(stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._out_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._out_reader.start()

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("event") == "ready":
                self.ready.set()
            self.events.put(event)
        self.events.put({"event": "exit"})

    def wait_ready(self, timeout: float = 120.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            self._not_exited()
            if time.monotonic() > deadline:
                raise LiveError(f"the engine was not ready within {timeout:.0f} s")
        if self.preset.backend == "jack":
            super().wait_ready(max(1.0, deadline - time.monotonic()))

    def refresh_targets(self, client: object | None = None) -> None:
        if self.preset.backend == "jack":
            super().refresh_targets(client)

    def drain_events(self) -> None:
        """Drop the status lines nobody has read yet."""
        while True:
            try:
                self.events.get_nowait()
            except queue.Empty:
                return

    def send(self, command: dict[str, Any]) -> None:
        """One control line to the engine; LiveError if it is gone."""
        assert self.proc is not None and self.proc.stdin is not None
        line = (json.dumps(command) + "\n").encode()
        with self._stdin_lock:
            try:
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                raise LiveError("the engine is not running") from None


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
