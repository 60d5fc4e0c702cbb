"""Set lists: several presets played by one engine run, switched live (docs/LIVE.md "Set lists").

    setlist = load_set_list("gig.toml")           # or set_from_presets(["song1", "song2"])
    problems = check_set(setlist)                  # one line each (bundles, style words, mixing)
    player = SetPlayer(setlist, server=None)
    code = player.run()                            # engine up, patched, switched until Ctrl-C

A set list file:

    [control]                       # optional: MIDI sources whose program changes switch songs
    connect = ["MPK.*capture"]

    [[song]]
    preset = "chorale-alto"         # a preset name or file (relative to this file's folder)
    name = "opener"                 # optional; default: the preset's name
    program = 0                     # optional: MIDI program change 0–127 that selects it
    key = "a"                       # optional: the terminal key that selects it

One engine plays the whole set: its ports are the union of the songs' inputs, its backend and
tempo source are the set's. A switch re-reads the song's preset (it may have been edited since),
checks it, and sends the engine's `switch` command (engine/src/live/control.rs); the engine
answers with a `switched` or `error` status line, and on `switched` the host makes the new
preset's connections (it never disconnects anything). A failed switch is one line and the set
goes on with the song that was playing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import os
import queue
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midicopilot.host import jackpatch
from midicopilot.host.engine import _num, engine_args, find_engine
from midicopilot.host.live import LiveError, LiveRun
from midicopilot.host.presets import (
    Input,
    Preset,
    PresetError,
    check_preset,
    load_preset,
    resolve_preset,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

HOST_CLIENT = "midicopilot-host"
CONTROL_PORT = "control"
DEFAULT_KEYS = "1234567890"
RESERVED_KEYS = "np"          # n: next song, p: previous song
SWITCH_TIMEOUT = 300.0        # a bundle load on a slow machine


class SetListError(Exception):
    """A set list that cannot be used; `str()` is one line."""


@dataclass(frozen=True)
class Song:
    name: str
    spec: str                 # the preset as written (name or path)
    preset: Preset
    program: int | None = None
    key: str | None = None


@dataclass(frozen=True)
class SetList:
    songs: tuple[Song, ...]
    control_connect: tuple[str, ...] = ()
    path: Path | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.songs]

    def index(self, name: str) -> int | None:
        for i, s in enumerate(self.songs):
            if s.name == name:
                return i
        return None

    def keys(self) -> dict[str, int]:
        """Terminal key → song index: the songs' `key`s if any song sets one, else 1–9, 0."""
        if any(s.key for s in self.songs):
            return {s.key: i for i, s in enumerate(self.songs) if s.key}
        return {k: i for i, k in enumerate(DEFAULT_KEYS[:len(self.songs)])}

    def programs(self) -> dict[int, int]:
        """Program number → song index: the songs' `program`s if any song sets one, else
        program 0 is the first song, 1 the second, …"""
        if any(s.program is not None for s in self.songs):
            return {s.program: i for i, s in enumerate(self.songs) if s.program is not None}
        return {i: i for i in range(len(self.songs))}

    def control_patterns(self) -> list[str]:
        """The set's `[control] connect` and every song preset's, without repeats."""
        out: list[str] = []
        for pat in (*self.control_connect, *(p for s in self.songs
                                              for p in s.preset.control.connect)):
            if pat not in out:
                out.append(pat)
        return out


# -- reading ----------------------------------------------------------------------------------
_SONG_KEYS = ("preset", "name", "program", "key")
_TOP_KEYS = ("song", "control")


def _unknown(where: str, key: str, valid: Sequence[str]) -> str:
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    hint = f"did you mean '{near[0]}'?" if near else f"valid here: {', '.join(valid)}"
    return f"{where}{key}: unknown key ({hint})"


def _load_song_preset(spec: str, base: Path | None, where: str) -> Preset:
    """A song's preset: a path (relative to the set list's folder) or a preset name."""
    candidates = []
    p = Path(os.path.expanduser(spec))
    if base is not None and not p.is_absolute():
        candidates.append(base / p)
    candidates.append(p)
    for c in candidates:
        if c.is_file():
            return load_preset(c)
    try:
        return load_preset(resolve_preset(spec))
    except PresetError as e:
        raise SetListError(f"{where}: {e}") from None


def _check_unique(songs: list[Song], prefix: str, label: Callable[[int], str]) -> None:
    seen: dict[str, int] = {}
    for i, s in enumerate(songs):
        if s.name in seen:
            raise SetListError(f"{prefix}{label(i)}: the song name '{s.name}' is used twice "
                               f"(also {label(seen[s.name])}); give one of them a `name`")
        seen[s.name] = i


def load_set_list(path: str | Path) -> SetList:
    """Read and validate a set list file; SetListError (one line) if it is not usable."""
    display = str(path)
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SetListError(f"{display}: no such file") from None
    except IsADirectoryError:
        raise SetListError(f"{display}: is a folder, not a set list file") from None
    except UnicodeDecodeError:
        raise SetListError(f"{display}: not UTF-8 text") from None
    except OSError as e:
        raise SetListError(f"{display}: cannot read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SetListError(f"{display}: TOML syntax error: {e}") from None
    for key in data:
        if key not in _TOP_KEYS:
            raise SetListError(_unknown(f"{display}: ", key, _TOP_KEYS))
    control: tuple[str, ...] = ()
    if "control" in data:
        raw = data["control"]
        if not isinstance(raw, dict):
            raise SetListError(f"{display}: control: expected a table ([control])")
        for key in raw:
            if key != "connect":
                raise SetListError(_unknown(f"{display}: control.", key, ["connect"]))
        control = _patterns(raw.get("connect", []), f"{display}: control.connect")
    raw_songs = data.get("song")
    if not isinstance(raw_songs, list) or not raw_songs:
        raise SetListError(f"{display}: song: no songs (add [[song]] tables with a `preset`)")
    songs: list[Song] = []
    for i, raw in enumerate(raw_songs):
        where = f"{display}: song[{i}]"
        if not isinstance(raw, dict):
            raise SetListError(f"{where}: expected a table ([[song]])")
        for key in raw:
            if key not in _SONG_KEYS:
                raise SetListError(_unknown(f"{where}.", key, _SONG_KEYS))
        spec = raw.get("preset")
        if not isinstance(spec, str) or not spec.strip():
            raise SetListError(f"{where}.preset: missing (a preset name or file)")
        name = raw.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise SetListError(f"{where}.name: expected a non-empty string")
        program = raw.get("program")
        if program is not None and (isinstance(program, bool) or not isinstance(program, int)
                                    or not 0 <= program <= 127):
            raise SetListError(f"{where}.program: {program!r} is not a MIDI program 0–127")
        key = raw.get("key")
        if key is not None:
            if not isinstance(key, str) or len(key) != 1 or not key.isprintable() or key == " ":
                raise SetListError(f"{where}.key: {key!r} is not one printable character")
            if key in RESERVED_KEYS:
                raise SetListError(f"{where}.key: '{key}' is taken (n: next song, p: previous)")
        preset = _load_song_preset(spec, p.parent, f"{where}.preset")
        songs.append(Song(name or preset.name, spec, preset, program, key))
    _check_unique(songs, f"{display}: ", lambda i: f"song[{i}]")
    for attr, what in (("program", "program"), ("key", "key")):
        seen: dict[object, int] = {}
        for i, s in enumerate(songs):
            v = getattr(s, attr)
            if v is None:
                continue
            if v in seen:
                raise SetListError(f"{display}: song[{i}].{attr}: {what} {v!r} also selects "
                                   f"song[{seen[v]}] ({songs[seen[v]].name})")
            seen[v] = i
    return SetList(tuple(songs), control, p.absolute())


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    import re

    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise SetListError(f"{where}: expected a regular expression or a list of them")
    for x in items:
        try:
            re.compile(x)
        except re.error as e:
            raise SetListError(f"{where}: bad regular expression '{x}': {e}") from None
    return tuple(items)


def set_from_presets(specs: Sequence[str]) -> SetList:
    """A set of the presets named on the command line, in order."""
    if not specs:
        raise SetListError("play: no preset given (PRESET... or --set-list FILE)")
    songs: list[Song] = []
    for spec in specs:
        try:
            preset = load_preset(resolve_preset(spec))
        except PresetError as e:
            raise SetListError(str(e)) from None
        songs.append(Song(preset.name, spec, preset))
    _check_unique(songs, "play: ", lambda i: f"preset {i + 1} ({specs[i]})")
    return SetList(tuple(songs))


def with_backend(setlist: SetList, backend: str | None) -> SetList:
    """Every song played on `backend` (the `--backend` option), or as the presets say."""
    if backend is None:
        return setlist
    songs = tuple(dataclasses.replace(s, preset=dataclasses.replace(s.preset, backend=backend))
                  for s in setlist.songs)
    return dataclasses.replace(setlist, songs=songs)


# -- checks -------------------------------------------------------------------------------------
def engine_inputs(setlist: SetList) -> tuple[Input, ...]:
    """The engine's inputs for the whole set: every song's, by name, first one first."""
    out: dict[str, Input] = {}
    for s in setlist.songs:
        for inp in s.preset.inputs:
            out.setdefault(inp.name, inp)
    return tuple(out.values())


def consistency_problems(setlist: SetList) -> list[str]:
    """What one engine run cannot do: songs on different backends or tempo sources, or one
    input name with two channel modes (the engine's ports are made once for the set)."""
    problems = []
    first = setlist.songs[0]
    modes: dict[str, tuple[str, int | None]] = {}
    for s in setlist.songs:
        p = s.preset
        if p.backend != first.preset.backend:
            problems.append(f"{p.path}: backend: '{p.backend}' differs from "
                            f"'{first.preset.backend}' ({first.name}): one engine plays the "
                            "whole set")
        if p.tempo.source != first.preset.tempo.source:
            problems.append(f"{p.path}: tempo.source: '{p.tempo.source}' differs from "
                            f"'{first.preset.tempo.source}' ({first.name}): one engine plays the "
                            "whole set")
        for inp in p.inputs:
            if inp.name in modes and modes[inp.name][1] != inp.channel:
                other, ch = modes[inp.name]
                problems.append(f"{p.path}: inputs ({inp.name}).channel: "
                                f"{'pass' if inp.channel is None else inp.channel} differs from "
                                f"{'pass' if ch is None else ch} ({other}): the engine's ports "
                                "are made once for the set")
            modes.setdefault(inp.name, (s.name, inp.channel))
    return problems


def check_set(setlist: SetList) -> list[str]:
    """Every problem of the set, one line each: each song's preset (bundle, style words) and
    what one engine run cannot mix."""
    problems: list[str] = []
    for s in setlist.songs:
        problems += check_preset(s.preset)
    return problems + consistency_problems(setlist)


def reload_song(song: Song, backend: str | None = None) -> Preset:
    """The song's preset as it is on disk now, checked (PresetError: one line)."""
    preset = load_preset(song.preset.path)
    if backend is not None:
        preset = dataclasses.replace(preset, backend=backend)
    problems = check_preset(preset)
    if problems:
        raise PresetError(problems[0])
    return preset


# -- the engine ---------------------------------------------------------------------------------
SEQ_DEVICE = Path("/dev/snd/seq")


def alsa_problem(device: Path = SEQ_DEVICE) -> str | None:
    """Why the alsa backend cannot run here (one line), or None. The engine says the same."""
    if not device.exists():
        return (f"no ALSA sequencer ({device} is missing): load it with `modprobe snd-seq` (a "
                "virtual MIDI port: `modprobe snd-virmidi`), or use the jack backend")
    return None


def switch_command(name: str, preset: Preset) -> dict[str, Any]:
    """The engine's `switch` command for a preset (docs/LIVE.md "Control channel")."""
    s, c = preset.sampling, preset.context
    return {"cmd": "switch", "name": name, "bundle": str(preset.bundle.resolve()),
            "genre": preset.style.genre, "part": preset.style.part, "bpm": preset.tempo.bpm,
            "temperature": s.temperature, "top_p": s.top_p, "seed": s.seed,
            "context": c.size, "lookahead_ticks": c.lookahead_ticks,
            "release_horizon_ms": c.release_horizon_ms, "max_note_ticks": c.max_note_ticks,
            "max_polyphony": c.max_polyphony, "weights": preset.weights}


def alsa_args(preset: Preset, inputs: Sequence[Input]) -> list[str]:
    """`midicopilot-engine alsa` flags for a preset: the session flags, then one `--input`
    (pass) or `--input-channel CH=…` per input pattern and one `--output` per output pattern."""
    args = engine_args(preset) + ["--backend", "alsa", "--tempo-source", preset.tempo.source,
                                  "--release-horizon-ms", _num(preset.context.release_horizon_ms)]
    for inp in inputs:
        for pat in inp.connect:
            args += (["--input", pat] if inp.channel is None
                     else ["--input-channel", f"{inp.channel}={pat}"])
    for pat in preset.output.connect:
        args += ["--output", pat]
    return args


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
            argv = [str(exe), "alsa", *alsa_args(p, p.inputs)]
            if self.report is not None:
                argv += ["--report", str(self.report)]
            if self.run_seconds is not None:
                argv += ["--run-seconds", repr(float(self.run_seconds))]
            return argv
        return super().argv()

    def start(self) -> None:
        import subprocess

        if self.report is not None:
            self.report.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=self.env(),
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
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
            code = self.proc.poll()
            if code is not None:
                self._join_reader()
                raise LiveError(f"the engine exited with {code} before it was ready: "
                                f"{self.last_error()}")
            if time.monotonic() > deadline:
                raise LiveError(f"the engine was not ready within {timeout:.0f} s")
        if self.preset.backend == "jack":
            super().wait_ready(max(1.0, deadline - time.monotonic()))

    def refresh_targets(self, client: object | None = None) -> None:
        if self.preset.backend == "jack":
            super().refresh_targets(client)

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


# -- switching ----------------------------------------------------------------------------------
@dataclass
class SwitchResult:
    ok: bool
    song: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "song": self.song, "message": self.message}


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
    """One set: the engine, its switches from keys, program changes and the control socket."""

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
        self._listener: socket.socket | None = None
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
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
            self._listener = None
        if self._control_client is not None:
            with contextlib.suppress(Exception):
                self._control_client.deactivate()
                self._control_client.close()
            self._control_client = None

    def _start_threads(self) -> None:
        for target in (self._switch_worker, self._serve_socket):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
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
        while True:  # drop stale events (an earlier timed-out switch)
            try:
                self.run.events.get_nowait()
            except queue.Empty:
                break
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

        t = threading.Thread(target=dispatch, daemon=True)
        t.start()
        self._threads.append(t)

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

        t = threading.Thread(target=read_keys, daemon=True)
        t.start()
        self._threads.append(t)

    # -- the control socket --------------------------------------------------------------------
    def _open_socket(self) -> None:
        path = self.socket_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise SetListError(f"{path.parent}: cannot create the socket folder: "
                               f"{e.strerror or e}") from None
        if path.exists() or path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                with contextlib.suppress(OSError):
                    path.unlink()  # stale: its `play` is gone
            else:
                raise SetListError(f"another `midicopilot play` listens on {path}: `midicopilot "
                                   "switch` reaches that one (give this one --socket)")
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(path))
        except OSError as e:
            listener.close()
            raise SetListError(f"{path}: cannot listen: {e.strerror or e}") from None
        listener.listen(8)
        listener.settimeout(0.5)
        self._listener = listener

    def _serve_socket(self) -> None:
        while not self._stop.is_set() and self._listener is not None:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                line = conn.makefile("rb").readline(65536)
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError):
                reply = SwitchResult(False, None, "bad request (expected one JSON line)")
                with contextlib.suppress(OSError):
                    conn.sendall((json.dumps(reply.as_json()) + "\n").encode())
                return
            cmd = req.get("cmd")
            if cmd == "status":
                reply = SwitchResult(True, self.setlist.songs[self.current].name,
                                     f"playing {self.setlist.songs[self.current].name}; set: "
                                     f"{', '.join(self.setlist.names)}")
            elif cmd in ("switch", "next", "prev"):
                target = str(req.get("name", "")) if cmd == "switch" else cmd
                conn.settimeout(None)
                reply = (self.request(target, "switch command", wait=True)
                         or SwitchResult(False, None, "no answer"))
            else:
                reply = SwitchResult(False, None, f"unknown cmd {cmd!r}")
            with contextlib.suppress(OSError):
                conn.sendall((json.dumps(reply.as_json()) + "\n").encode())


def default_socket_path() -> Path:
    """Where `play` listens and `switch` connects: the user's runtime folder."""
    import platformdirs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            base = Path(platformdirs.user_runtime_dir("midicopilot"))
        except OSError:
            import tempfile

            base = Path(tempfile.gettempdir()) / f"midicopilot-{os.getuid()}"
    return base / "play.sock"


def send_to_player(command: dict[str, Any], socket_path: Path | None = None,
                   timeout: float = SWITCH_TIMEOUT + 10) -> SwitchResult:
    """Send one request to a running `midicopilot play` and return its answer."""
    path = socket_path or default_socket_path()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return SwitchResult(False, None, f"no `midicopilot play` is running (no socket at "
                                             f"{path})")
        except OSError as e:
            return SwitchResult(False, None, f"{path}: {e.strerror or e}")
        s.sendall((json.dumps(command) + "\n").encode())
        line = s.makefile("rb").readline(65536)
    except TimeoutError:
        return SwitchResult(False, None, f"no answer from `midicopilot play` within "
                                         f"{timeout:.0f} s")
    except OSError as e:
        return SwitchResult(False, None, f"{path}: {e.strerror or e}")
    finally:
        s.close()
    try:
        reply = json.loads(line)
        return SwitchResult(bool(reply["ok"]), reply.get("song"), str(reply["message"]))
    except (ValueError, KeyError, TypeError):
        return SwitchResult(False, None, "`midicopilot play` sent a bad answer")
