"""What the set-list tests share: a preset on the musician's ports, the host CLI as a subprocess."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BPM = 120.0


def write_preset(folder: Path, name: str, bundle: Path | str, *, genre: str = "CHORALE",
            part: str = "SOPRANO", bpm: float = BPM, extra: str = "",
            listener: str = "midicopilot-musician") -> Path:
    """A preset whose connections are the musician's ports (so `play` patches it itself): the
    musician plays into the engine, `listener` hears it."""
    path = folder / f"{name}.toml"
    path.write_text(f"""
name = "{name}"
bundle = "{bundle}"

[style]
genre = "{genre}"
part = "{part}"

[tempo]
bpm = {bpm}

[context]
size = 256
max_polyphony = 3

[[inputs]]
name = "keys"
channel = "pass"
connect = ["^midicopilot-musician:out$"]

[output]
connect = ["^{listener}:in$"]
{extra}""")
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
         stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "midicopilot.host.cli", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=stdin)

def one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]
