"""Playing a set: one engine run (host/live.py ControlledRun) and the threads that switch it.

    player = SetPlayer(setlist, server=None)
    code = player.run_set()                        # engine up, patched, switched until Ctrl-C

Switches come from the terminal's keys, program changes on the host's JACK MIDI input
`midicopilot-host:control`, and `midicopilot switch` over the play socket (host/playsocket.py);
one worker thread does them one at a time (requests that pile up while a bundle loads
collapse to the newest). A switch re-reads the song's preset (it
may have been edited since), checks it, and sends the engine's `switch` request
(engine/src/live/control.rs); the engine answers with a `switched` or `error` status line, and on
`switched` the host makes the new preset's connections (it never disconnects anything). A failed
switch is one line and the set goes on with the song that was playing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midicopilot.host import jackpatch
from midicopilot.host.engine import switch_command
from midicopilot.host.live import ControlledRun, LiveError
from midicopilot.host.playsocket import (
    SWITCH_CMDS,
    SWITCH_TIMEOUT,
    PlayServer,
    SwitchResult,
    default_socket_path,
)
from midicopilot.host.presets import Preset, PresetError
from midicopilot.host.setlist import (
    SetList,
    SetListError,
    consistency_problems,
    engine_inputs,
    reload_song,
)

HOST_CLIENT = "midicopilot-host"
CONTROL_PORT = "control"


@dataclass
class _Request:
    target: str                # a song name, "next" or "prev"
    source: str                # "key", "program", "socket"
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: SwitchResult | None = None

    def finish(self, result: SwitchResult) -> SwitchResult:
        self.result = result
        self.done.set()
        return result


class SetPlayer:
    """One set: the engine, its switches from keys, program changes and the play socket."""

    def __init__(self, setlist: SetList, *, server: str | None = None,
                 report: Path | None = None, run_seconds: float | None = None,
                 patch: bool = True, socket_path: Path | None = None, keys: bool = True,
                 engine: Path | None = None, echo: Callable[[str], None] | None = None,
                 out: Callable[[str], None] | None = None) -> None:
        self.setlist = setlist
        self.server = server
        self.do_patch = patch
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        self.out = out or (lambda line: print(line, flush=True))
        self.backend = setlist.songs[0].preset.backend
        self.socket_path = socket_path or default_socket_path()
        self.keys_enabled = keys
        self.current = 0
        self.run = ControlledRun(setlist.songs[0].preset, inputs=engine_inputs(setlist),
                                 server=server, report=report, run_seconds=run_seconds,
                                 engine=engine, echo=self.echo)
        self._requests: queue.Queue[_Request | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: PlayServer | None = None
        self._control_client: Any = None
        self._tty_restore: Callable[[], None] | None = None
        self.switches: list[str] = []

    # -- the set's life ---------------------------------------------------------------------
    def run_set(self) -> int:
        """Start, patch, listen for switches, supervise until the engine ends (Ctrl-C stops)."""
        run = self.run
        try:
            try:
                self._open_socket()
            except SetListError as e:  # the set plays on; only `midicopilot switch` is lost
                self.echo(f"warning: {e}")
            run.start()
            run.wait_ready()
            if self.backend == "jack" and self.do_patch:
                self._patch(self.setlist.songs[0].preset)
            self._start_threads()
            first = self.setlist.songs[0]
            where = (f"on JACK as '{jackpatch.ENGINE_CLIENT}'" if self.backend == "jack"
                     else "on ALSA")
            self.echo(f"{first.name}: playing {where} (Ctrl-C stops)")
            if len(self.setlist.songs) > 1:
                self.echo(f"set: {self.describe()}")
            code = run.supervise()
        except (LiveError, jackpatch.JackUnavailable, SetListError) as e:
            if run.proc is not None and run.proc.poll() is None:
                run.stop()
            self.close()
            raise SetListError(str(e)) from None
        except KeyboardInterrupt:
            code = run.stop() if run.proc is not None else 130
        self.close()
        return code

    def describe(self) -> str:
        keys = {i: k for k, i in self.setlist.keys().items()}
        progs = {i: p for p, i in self.setlist.programs().items()}
        parts = []
        for i, s in enumerate(self.setlist.songs):
            how = [f"key {keys[i]}"] if i in keys and self._tty_restore else []
            if self._control_client is not None and i in progs:
                how.append(f"program {progs[i]}")
            parts.append(f"{s.name}" + (f" ({', '.join(how)})" if how else ""))
        extra = "; n/p next/previous" if self._tty_restore else ""
        return ", ".join(parts) + extra + f"; `midicopilot switch NAME` ({self.socket_path})"

    def close(self) -> None:
        self._stop.set()
        self._requests.put(None)
        if self._tty_restore is not None:
            self._tty_restore()
            self._tty_restore = None
        if self._server is not None:
            self._server.close()
        if self._control_client is not None:
            with contextlib.suppress(Exception):
                self._control_client.deactivate()
                self._control_client.close()
            self._control_client = None

    def _spawn(self, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, daemon=True)
        t.start()
        self._threads.append(t)

    def _start_threads(self) -> None:
        self._spawn(self._switch_worker)
        self._spawn(self._serve_socket)
        several = len(self.setlist.songs) > 1
        if self.backend == "jack" and (several or self.setlist.control_patterns()):
            self._open_control_input()
        if self.keys_enabled and several and self._tty():
            self._start_keys()

    # -- switching ---------------------------------------------------------------------------
    def request(self, target: str, source: str, wait: bool = False,
                timeout: float = SWITCH_TIMEOUT) -> SwitchResult | None:
        """Queue a switch (song name, "next" or "prev"); with `wait`, its result."""
        req = _Request(target, source)
        self._requests.put(req)
        if not wait:
            return None
        if not req.done.wait(timeout):
            return SwitchResult(False, None, f"no answer within {timeout:.0f} s")
        return req.result

    def _switch_worker(self) -> None:
        while not self._stop.is_set():
            req = self._requests.get()
            if req is None:
                return
            # Requests that piled up while a bundle loaded: only the newest one plays.
            while True:
                try:
                    newer = self._requests.get_nowait()
                except queue.Empty:
                    break
                if newer is None:
                    req.finish(SwitchResult(False, None, "the set is ending"))
                    return
                req.finish(SwitchResult(False, None, f"skipped: superseded by {newer.target}"))
                req = newer
            try:
                req.finish(self._switch(req))
            except Exception as e:  # noqa: BLE001 - one line, the set goes on
                req.finish(self._failed(None, f"switch: {e}"))

    def _target_index(self, target: str) -> int | None:
        n = len(self.setlist.songs)
        if target == "next":
            return (self.current + 1) % n
        if target == "prev":
            return (self.current - 1) % n
        return self.setlist.index(target)

    def _failed(self, name: str | None, message: str) -> SwitchResult:
        self.echo(f"midicopilot: {message}")
        return SwitchResult(False, name, message)

    def _switch(self, req: _Request) -> SwitchResult:
        i = self._target_index(req.target)
        if i is None:
            return self._failed(None, f"no song '{req.target}' in the set (songs: "
                                      f"{', '.join(self.setlist.names)})")
        song = self.setlist.songs[i]
        try:
            preset = reload_song(song, self.backend)
        except PresetError as e:
            return self._failed(song.name, f"{e} — still playing "
                                           f"{self.setlist.songs[self.current].name}")
        problems = consistency_problems(dataclasses.replace(
            self.setlist, songs=(dataclasses.replace(song, preset=preset),)
            + tuple(s for s in self.setlist.songs if s is not song)))
        if problems:
            return self._failed(song.name, problems[0])
        self.run.drain_events()  # stale ones: an earlier switch that timed out
        self.run.send(switch_command(song.name, preset))
        deadline = time.monotonic() + SWITCH_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return self._failed(song.name, f"{song.name}: the engine did not answer within "
                                               f"{SWITCH_TIMEOUT:.0f} s")
            try:
                ev = self.run.events.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            kind = ev.get("event")
            if kind == "exit":
                return self._failed(song.name, "the engine is not running")
            if ev.get("name") != song.name and kind != "error":
                continue
            if kind == "loading":
                self.echo(f"midicopilot: loading {ev.get('bundle')} for {song.name} "
                          f"(still playing {self.setlist.songs[self.current].name})")
            elif kind == "error":
                return self._failed(song.name, f"{song.name}: {ev.get('message')} — still "
                                               f"playing {self.setlist.songs[self.current].name}")
            elif kind == "skipped":
                return self._failed(song.name, f"{song.name}: skipped ({ev.get('reason')})")
            elif kind == "switched":
                self.current = i
                self.switches.append(song.name)
                how = "bundle loaded" if ev.get("bundle_loaded") else "same bundle"
                header = " ".join(ev.get("header") or []) or "no style words"
                msg = (f"switched to {song.name} ({header}, {ev.get('bpm'):g} BPM, {how}, "
                       f"{ev.get('wait_ms')} ms, {ev.get('stop_offs')} note-offs) [{req.source}]")
                self.echo(f"midicopilot: {msg}")
                if self.backend == "jack" and self.do_patch:
                    try:
                        self._patch(preset)
                    except jackpatch.JackUnavailable as e:
                        self.echo(f"midicopilot: {e}")
                return SwitchResult(True, song.name, msg)

    # -- JACK: connections and the control input ---------------------------------------------
    def _patch(self, preset: Preset) -> None:
        with jackpatch.open_client(server=self.server) as client:
            report = jackpatch.patch(client, preset)
            self.run.refresh_targets(client)
        for line in report.lines():
            if line.startswith("already connected"):
                continue
            if line.startswith(("warning", "error")):
                self.echo(line)
            else:
                self.out(line)

    def _open_control_input(self) -> None:
        """The host's own JACK client `midicopilot-host` with a MIDI input `control`: program
        changes on it select songs."""
        import jack

        jack.set_error_function(lambda _msg: None)
        jack.set_info_function(lambda _msg: None)
        try:
            client = jack.Client(HOST_CLIENT, no_start_server=True, servername=self.server)
        except jack.JackOpenError:
            self.echo("midicopilot: warning: cannot open the control input (JACK client "
                      f"{HOST_CLIENT}); program changes will not switch songs")
            return
        port = client.midi_inports.register(CONTROL_PORT)
        programs: queue.SimpleQueue[int] = queue.SimpleQueue()

        @client.set_process_callback
        def _process(_frames: int) -> None:
            for _offset, buf in port.incoming_midi_events():
                data = bytes(buf)  # a cffi buffer: indexing it gives bytes, not ints
                if len(data) >= 2 and data[0] & 0xF0 == 0xC0:
                    programs.put(data[1])

        client.activate()
        self._control_client = client
        full = f"{client.name}:{CONTROL_PORT}"
        for src in self._control_sources(client):
            try:
                client.connect(src, full)
                self.out(f"connected {src} -> {full}")
            except jack.JackError as e:
                self.echo(f"error: cannot connect {src} -> {full}: {e}")
        mapping = self.setlist.programs()

        def dispatch() -> None:
            while not self._stop.is_set():
                try:
                    program = programs.get(timeout=0.2)
                except queue.Empty:
                    continue
                i = mapping.get(program)
                if i is None:
                    self.echo(f"midicopilot: program {program}: no song of the set has it")
                    continue
                self.request(self.setlist.songs[i].name, f"program {program}")

        self._spawn(dispatch)

    def _control_sources(self, client: Any) -> list[str]:
        import re

        patterns = self.setlist.control_patterns()
        ports = jackpatch.list_midi_ports(client)
        found: list[str] = []
        for pat in patterns:
            rx = re.compile(pat)
            hits = [p.name for p in ports if p.is_source and p.client != HOST_CLIENT
                    and p.matches(rx)]
            if not hits:
                self.echo(f"warning: control: '{pat}' matched no MIDI port")
            found += [h for h in hits if h not in found]
        return found

    # -- terminal keys -------------------------------------------------------------------------
    @staticmethod
    def _tty() -> bool:
        try:
            return sys.stdin.isatty()
        except (AttributeError, ValueError):
            return False

    def _start_keys(self) -> None:
        import termios
        import tty

        fd = sys.stdin.fileno()
        try:
            saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        except termios.error:
            return

        def restore() -> None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)

        self._tty_restore = restore
        keys = self.setlist.keys()

        def read_keys() -> None:
            while not self._stop.is_set():
                try:
                    ch = os.read(fd, 1).decode(errors="replace")
                except OSError:
                    return
                if not ch:
                    return
                if ch == "n":
                    self.request("next", "key n")
                elif ch == "p":
                    self.request("prev", "key p")
                elif ch in keys:
                    self.request(self.setlist.songs[keys[ch]].name, f"key {ch}")

        self._spawn(read_keys)

    # -- the play socket -----------------------------------------------------------------------
    def _open_socket(self) -> None:
        self._server = PlayServer(self.socket_path)

    def _serve_socket(self) -> None:
        if self._server is not None:
            self._server.serve(self._answer, self._stop)

    def _answer(self, req: dict[str, Any]) -> SwitchResult:
        cmd = req.get("cmd")
        if cmd == "status":
            playing = self.setlist.songs[self.current].name
            return SwitchResult(True, playing,
                                f"playing {playing}; set: {', '.join(self.setlist.names)}")
        if cmd in SWITCH_CMDS:
            target = str(req.get("name", "")) if cmd == "switch" else cmd
            return (self.request(target, "switch command", wait=True)
                    or SwitchResult(False, None, "no answer"))
        return SwitchResult(False, None, f"unknown cmd {cmd!r}")
