"""A real JACK server for tests: `jackd` under its own server name, started and always stopped.

    # jackd -n <unique> --no-realtime -d dummy -r 48000 -p 256; JACK_DEFAULT_SERVER set meanwhile
    with JackServer() as server:
        client = jack.Client("probe", no_start_server=True)
    ...
    def test_x(jack_server):                  # the same as a pytest fixture (function scope)

General enough for every JACK test of the project: any driver (`driver="net"` with `driver_args`
for a netJACK2 slave), internal clients (`server.load("netmanager", "-p 19123")`), a log file with
jackd's output for failure messages, and `env` for subprocesses that must reach this server.

libjack (jack2) speaks to one server per process at a time: while a client of server A is open in
this process, a new client "of server B" silently lands on A. Tests with two servers at once (the
netJACK2 test) therefore run the clients of each server in their own subprocess (`server.env`).
Readiness is probed with `jack_wait -c` in a subprocess for the same reason, so the probe never
opens a client in the test process.

The jack2 tools (jack_lsp, jack_wait, jack_load) are told the server through JACK_DEFAULT_SERVER,
never `-s NAME`: they copy `-s` with `malloc(strlen(name))` + `strcpy`, one byte short, and with a
24-character name (the 11th server of a test process) jack_lsp dies of a corrupted heap.
"""
from __future__ import annotations

import atexit
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

_counter = itertools.count()
_running: set[JackServer] = set()


class JackServerError(RuntimeError):
    """jackd would not start (the message carries the tail of its log)."""


def unique_server_name(prefix: str = "mcp-test") -> str:
    """A server name no other test run on this machine uses at the same time."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


class JackServer:
    """One `jackd` process. Use as a context manager (or `start()` / `stop()`).

    `set_env=True` sets JACK_DEFAULT_SERVER in this process while the server runs (restored on
    stop), so `jack.Client(...)` and the `midicopilot` commands find it without a server name.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        driver: str = "dummy",
        driver_args: Sequence[str] | None = None,
        rate: int = 48000,
        period: int = 256,
        server_args: Sequence[str] = (),
        set_env: bool = True,
        start_timeout: float = 15.0,
    ) -> None:
        self.name = name or unique_server_name()
        self.driver = driver
        if driver_args is None:
            driver_args = ["-r", str(rate), "-p", str(period)] if driver == "dummy" else []
        self.driver_args = list(driver_args)
        self.server_args = list(server_args)
        self.set_env = set_env
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._logdir = Path(tempfile.mkdtemp(prefix="jackd-"))
        self.log_path = self._logdir / f"{self.name}.log"
        self._saved_env: str | None = None
        self._internals: list[str] = []
        self.reclaim_on_kill = True

    # -- life cycle -----------------------------------------------------------------------------
    @property
    def argv(self) -> list[str]:
        return ["jackd", "-n", self.name, "--no-realtime", *self.server_args,
                "-d", self.driver, *self.driver_args]

    @property
    def env(self) -> dict[str, str]:
        """The environment for a subprocess that must talk to this server."""
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}

    def start(self) -> JackServer:
        if shutil.which("jackd") is None:
            raise JackServerError("jackd is not installed (Debian: apt-get install jackd2)")
        if shutil.which("jack_wait") is None:
            raise JackServerError("jack_wait is not installed (it comes with jackd2)")
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the life of jackd
        self._log = log
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        _running.add(self)
        try:
            self.wait_ready(self.start_timeout)
        except BaseException:
            self.stop()
            raise
        if self.set_env:
            self._saved_env = os.environ.get("JACK_DEFAULT_SERVER")
            os.environ["JACK_DEFAULT_SERVER"] = self.name
        return self

    def is_running(self) -> bool:
        """True when a JACK client can reach this server right now."""
        try:
            out = subprocess.run(["jack_wait", "-c"], capture_output=True,
                                 timeout=10, env=self.env)
        except subprocess.TimeoutExpired:
            return False
        return out.stdout.strip() == b"running"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise JackServerError(f"jackd exited with {self.proc.returncode}: "
                                      f"{' '.join(self.argv)}\n{self.log_tail()}")
            if self.is_running():
                return
            time.sleep(0.05)
        raise JackServerError(f"jackd not ready after {timeout:.0f} s: {' '.join(self.argv)}\n"
                              f"{self.log_tail()}")

    def stop(self) -> None:
        """Stop jackd: unload the internal clients we loaded, SIGTERM, and SIGKILL only if it is
        still up after 15 s. Safe to call twice.

        Why the care: jack2 keeps a registry of at most 8 servers in shared memory and reclaims
        the entry of a killed server only when a server of the same name starts again, so every
        SIGKILL of a uniquely named server would leak an entry until "Too many servers already
        active". A server with netmanager loaded and a slave gone takes ~8 s to exit on SIGTERM;
        unloading netmanager first makes it exit in about a second. After a SIGKILL the name is
        reclaimed by starting and cleanly stopping a dummy server under it.
        """
        if self.set_env and os.environ.get("JACK_DEFAULT_SERVER") == self.name:
            if self._saved_env is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = self._saved_env
        proc, self.proc = self.proc, None
        killed = False
        if proc is not None and proc.poll() is None:
            for internal in reversed(self._internals):
                try:
                    subprocess.run(["jack_unload", internal], capture_output=True,
                                   timeout=15, env=self.env)
                except subprocess.TimeoutExpired:
                    pass
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
                killed = True
        self._internals.clear()
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        _running.discard(self)
        shutil.rmtree(self._logdir, ignore_errors=True)
        if killed and self.reclaim_on_kill:
            reclaim_server_name(self.name)

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers --------------------------------------------------------------------------------
    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        noise = "no message buffer overruns"
        return "\n".join([ln for ln in text.splitlines() if ln.strip() != noise][-lines:])

    def load(self, internal: str, init: str = "", timeout: float = 10.0) -> None:
        """Load an internal client (e.g. `netmanager`) into this server with `jack_load`."""
        argv = ["jack_load", internal]
        if init:
            argv += ["-i", init]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env)
        if out.returncode != 0 or "running" not in out.stdout:
            raise JackServerError(f"{' '.join(argv)} failed ({out.returncode}): "
                                  f"{(out.stdout + out.stderr).strip()}\n{self.log_tail()}")
        self._internals.append(internal)

    def ports(self) -> list[str]:
        """Port names, listed by `jack_lsp` in a subprocess (safe with several servers up)."""
        out = subprocess.run(["jack_lsp"], capture_output=True, text=True,
                             timeout=10, env=self.env)
        return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]

    def wait_for_port(self, name: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name in self.ports():
                return
            time.sleep(0.1)
        raise JackServerError(f"port {name} did not appear on server {self.name} within "
                              f"{timeout:.0f} s; it has {self.ports()}\n{self.log_tail()}")


def reclaim_server_name(name: str) -> None:
    """Free jack2's registry entry of a killed server: start a dummy server under the same name
    (jack2 then reclaims the dead entry) and stop it cleanly."""
    server = JackServer(name, set_env=False, start_timeout=10)
    server.reclaim_on_kill = False  # never recurse
    try:
        with server:
            pass
    except JackServerError:
        pass  # a live server of that name, or jackd refuses: nothing more we can do


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


@pytest.fixture
def jack_server() -> Iterator[JackServer]:
    """A fresh dummy-driver jackd for one test, with JACK_DEFAULT_SERVER pointing at it."""
    with JackServer() as server:
        yield server
