"""The README's main job (`make demo`): the copilot playing live on JACK.

1. uses the demo bundle that ships in bundles/demo (a small OLMo2 trained on music21's Bach
   chorales by train/demo.py; docs/QUALITY.md has its figures), where presets/demo.toml looks;
   should it be missing, it is rebuilt (that needs the training extra and about 45 minutes);
2. uses the running JACK server, or starts a dummy one (`jackd --no-realtime -d dummy`, its own
   name) and stops it at the end;
3. starts `midicopilot play presets/demo.toml` (the engine on JACK, patched and supervised);
4. plays a real Bach chorale from the music21 package into it through JACK as the musician
   (host/musician.py): alto, tenor, bass and the horn on channels 1–4; the soprano, the
   preset's part, is left to the model, which answers on channel 0;
5. stops it as Ctrl-C would (the host SIGTERMs the engine: note-offs, then its report), and
   writes what was heard as MIDI, a piano roll, and the run's report into ./out/.

    python -m midicopilot.host.demo [--seconds 30] [--out out] [--bundle DIR] [--server NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from midicopilot.host import jackpatch
from midicopilot.host.presets import load_preset, project_presets_dir

PRESET = project_presets_dir() / "demo.toml"
DEMO_SERVER = "midicopilot-demo"


def say(line: str) -> None:
    print(line, flush=True)


class DemoError(Exception):
    """One line: why the demo stopped."""


def server_running(name: str | None) -> bool:
    try:
        with jackpatch.open_client(server=name):
            return True
    except jackpatch.JackUnavailable:
        return False


class DummyJack:
    """`jackd -n NAME --no-realtime -d dummy` for the demo, when no server is running."""

    def __init__(self, name: str = DEMO_SERVER, log: Path | None = None) -> None:
        self.name = name
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        if shutil.which("jackd") is None:
            raise DemoError("jackd is not installed (Debian: apt-get install jackd2)")
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DemoError(f"jackd exited with {self.proc.returncode} (log: {self.log})")
            # The server by environment, not `-s`: jack2's tools copy `-s` one byte short.
            probe = subprocess.run(["jack_wait", "-c"], capture_output=True, timeout=10,
                                   env={**os.environ, "JACK_DEFAULT_SERVER": self.name})
            if probe.stdout.strip() == b"running":
                return
            time.sleep(0.1)
        self.stop()
        raise DemoError(f"jackd did not start within {timeout:.0f} s (log: {self.log})")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def ensure_bundle(bundle: Path | None) -> Path:
    if bundle is not None:
        return bundle
    target = load_preset(PRESET).bundle
    if (target / "midicopilot.json").exists():
        return target
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise DemoError(f"the demo bundle {target} is missing, and rebuilding it needs the "
                        "training extra (pip install -e '.[train]'; or restore it with git)")
    from midicopilot.train.demo import build_demo_bundle

    say(f"demo bundle: {target} is missing: rebuilding it (about 45 minutes on 2 cores)")
    return build_demo_bundle(target, log=lambda m: say(f"  {m}"))


def run(seconds: float, out: Path, bundle: Path | None, server: str | None) -> int:
    from midicopilot.host.musician import Musician, check_notes, load_piece, write_midi
    from midicopilot.host.pianoroll import draw_pianoroll
    from midicopilot.train.music21_midi import bach_chorales

    out.mkdir(parents=True, exist_ok=True)
    bundle = ensure_bundle(bundle)
    preset = load_preset(PRESET)
    preset_path = PRESET
    if bundle != preset.bundle:  # a bundle given on the command line: a copy of the preset
        preset_path = out / "demo-preset.toml"
        text = re.sub(r'(?m)^bundle = .*$', f'bundle = "{bundle.resolve()}"',
                      PRESET.read_text())
        preset_path.write_text(text)
        preset = load_preset(preset_path)
    bpm = preset.tempo.bpm

    server = server or os.environ.get("JACK_DEFAULT_SERVER") or None
    dummy = None
    if not server_running(server):
        server = DEMO_SERVER
        dummy = DummyJack(server, log=out / "jackd.log")
        say(f"no JACK server running: starting a dummy one ('{server}', 48 kHz, 256 frames)")
        dummy.start()
    label = server or "default"
    env = {**os.environ, "JACK_NO_START_SERVER": "1"}
    if server:
        env["JACK_DEFAULT_SERVER"] = server

    report_path = out / "demo-report.json"
    report_path.unlink(missing_ok=True)
    piece_file = bach_chorales(limit=1)[0]
    piece = load_piece(piece_file, bpm, leave_out=preset.style.part or "Soprano")
    piece = piece.until(min(seconds, piece.seconds))
    play = None
    try:
        argv = [sys.executable, "-m", "midicopilot.host.cli", "play", str(preset_path),
                "--report", str(report_path)]
        if server:
            argv += ["--server", server]
        say(f"$ midicopilot play {preset_path} --report {report_path}  (JACK server '{label}')")
        play = subprocess.Popen(argv, env=env, start_new_session=True)
        with Musician(server=server) as musician:
            musician.connect_to_engine(input_port=preset.inputs[0].port if preset.inputs
                                       else None)
            say(f"the musician plays {piece.name} (music21), {piece.notes} notes on channels "
                f"1–4 at {bpm:g} BPM for {piece.seconds:.0f} s; the model sings the "
                f"{(preset.style.part or 'soprano').lower()} on channel 0 …")
            rec = musician.play(piece.messages, tail=2.0)
            if play.poll() is not None:
                raise DemoError(f"`midicopilot play` ended early with {play.returncode}")
            play.send_signal(signal.SIGINT)  # what Ctrl-C does
            code = play.wait(timeout=60)
            time.sleep(0.2)
            rec = musician.stop_recording()
        play = None
        if code != 0:
            raise DemoError(f"`midicopilot play` exited with {code}")
    finally:
        if play is not None and play.poll() is None:
            play.send_signal(signal.SIGINT)
            try:
                play.wait(timeout=30)
            except subprocess.TimeoutExpired:
                play.kill()
        if dummy is not None:
            dummy.stop()

    midi_path = write_midi(out / "demo-live.mid", rec, bpm)
    png_path = out / "demo-live.png"
    info = draw_pianoroll(midi_path, png_path,
                          title=f"{piece.name}: musician (channels 1–4) + model (channel 0), "
                                f"live on JACK")
    model = check_notes(rec.heard)
    report = json.loads(report_path.read_text())
    cb = report["callback"]
    say("")
    say(f"heard from the model: {model.ons} notes on channel(s) "
        f"{sorted(model.channels) or '-'}, {len(model.hanging)} left sounding")
    say(f"engine: {report['events_in']} events in, {report['events_out']} out, "
        f"{report['late']} late, {report['dropped']['total']} dropped, {report['tokens']} "
        f"tokens, {report['prefix_cuts']} prefix cuts, {report['flushes']} flushes")
    say(f"callback: p99 {cb['p99_us']:.1f} µs, max {cb['max_us']:.1f} µs over {cb['cycles']} "
        f"cycles, {cb['allocations']} allocations")
    say(f"wrote {midi_path}")
    say(f"wrote {png_path} ({sum(n for c, n in info.notes.items() if c)} human notes, "
        f"{info.notes.get(0, 0)} model notes)")
    say(f"wrote {report_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="midicopilot's live demo on JACK")
    ap.add_argument("--seconds", type=float, default=30.0, help="how much of the piece to play")
    ap.add_argument("--out", type=Path, default=Path("out"), help="where to write (./out)")
    ap.add_argument("--bundle", type=Path, help="use this bundle instead of the demo bundle")
    ap.add_argument("--server", help="JACK server name (default: the running one, else a "
                                     "dummy server started for the demo)")
    a = ap.parse_args(argv)
    try:
        return run(a.seconds, a.out, a.bundle, a.server)
    except (DemoError, jackpatch.JackUnavailable) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
