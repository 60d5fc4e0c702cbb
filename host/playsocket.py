"""The Unix socket of a running `midicopilot play`: where it is, the server side (PlayServer)
and the client `midicopilot switch` uses (send_to_player). One JSON line each way: a request
({"cmd": "switch", "name": …}, or "next", "prev", "status") and its answer, a SwitchResult.
What a request does is host/player.py's.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midicopilot.host.setlist import SetListError

SWITCH_TIMEOUT = 300.0        # a bundle load on a slow machine
SWITCH_CMDS = ("switch", "next", "prev")


@dataclass
class SwitchResult:
    ok: bool
    song: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "song": self.song, "message": self.message}


def json_line(obj: dict[str, Any]) -> bytes:
    """One line of the socket's protocol."""
    return (json.dumps(obj) + "\n").encode()


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


class PlayServer:
    """The socket `play` listens on: each connection is one request line, answered on a thread
    of its own by `answer` (which may wait for a switch)."""

    def __init__(self, path: Path) -> None:
        """Listen at `path`. A stale socket file (its `play` is gone) is replaced; SetListError
        (one line) if another `play` listens there or the socket cannot be made."""
        self.path = path
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
        self._listener: socket.socket | None = listener

    def serve(self, answer: Callable[[dict[str, Any]], SwitchResult],
              stop: threading.Event) -> None:
        """Accept connections until `stop` is set or the socket is closed."""
        while not stop.is_set() and self._listener is not None:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn, answer), daemon=True).start()

    @staticmethod
    def _handle(conn: socket.socket, answer: Callable[[dict[str, Any]], SwitchResult]) -> None:
        with conn:
            conn.settimeout(10)
            try:
                line = conn.makefile("rb").readline(65536)
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError):
                reply = SwitchResult(False, None, "bad request (expected one JSON line)")
            else:
                if req.get("cmd") in SWITCH_CMDS:
                    conn.settimeout(None)  # the answer waits for the switch (a bundle may load)
                reply = answer(req)
            with contextlib.suppress(OSError):
                conn.sendall(json_line(reply.as_json()))

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._listener is None:
            return
        with contextlib.suppress(OSError):
            self._listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._listener = None


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
        s.sendall(json_line(command))
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
