"""A live benchmark, not a test (docs/BENCHMARKS.md "Live"): a Bach chorale played through a real
JACK server (dummy driver) into `midicopilot-engine jack`, the model singing the soprano, for a
given time; prints the engine's lateness and callback figures as one JSON object.

    python tests/bench_live.py BUNDLE [--seconds 60] [--weights q8] [--threads 2] [--bpm 100]
                               [--cpu-kernels engine|candle]

Pass the figures to docs, not to asserts: a loaded machine moves them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import engine_path  # noqa: E402
from jack_harness import LiveEngine, Musician, load_piece  # noqa: E402
from jackserver import JackServer  # noqa: E402

from midicopilot.train.music21_midi import bach_chorales  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--bpm", type=float, default=100.0)
    ap.add_argument("--weights", default="q8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-kernels", default="engine", choices=("engine", "candle"))
    ap.add_argument("--period", type=int, default=256, help="JACK frames per period")
    ap.add_argument("--engine", type=Path, default=None)
    ap.add_argument("--report", type=Path, default=None,
                    help="also write the engine's whole report (JSON) here")
    a = ap.parse_args()

    # bach_chorales() is ordered; several chorales back to back fill a long run
    piece_messages: list[tuple[float, bytes]] = []
    offset = 0.0
    for path in bach_chorales(limit=8):
        piece = load_piece(path, a.bpm, leave_out="Soprano")
        piece_messages += [(t + offset, m) for t, m in piece.messages]
        offset = piece_messages[-1][0] + 1.0
        if offset >= a.seconds:
            break
    messages = [(t, m) for t, m in piece_messages if t < a.seconds]

    engine = a.engine or engine_path()
    args = ["--weights", a.weights, "--threads", str(a.threads), "--cpu-kernels", a.cpu_kernels,
            "--max-polyphony", "1"]
    with JackServer(period=a.period) as server, \
            LiveEngine(engine, a.bundle, server, bpm=a.bpm, args=args) as eng, \
            Musician(server=server.name) as musician:
        musician.connect_to_engine(input_port="in_keys")
        musician.play(messages, tail=0.5)
        code, stderr = eng.stop()
    if code != 0:
        print(stderr, file=sys.stderr)
        return 1
    r = eng.report()
    if a.report:
        a.report.write_text(json.dumps(r, indent=1))
    period_us = 1e6 * r["buffer_frames"] / r["sample_rate"]
    out = {
        "bundle": str(a.bundle), "weights": a.weights, "threads": a.threads,
        "seconds": r["seconds"], "period_us": period_us,
        "events_in": r["events_in"], "released": r["decoder"]["released"], "late": r["late"],
        "late_max_ms": r["late_max_ms"], "xruns": r["xruns"], "tokens": r["tokens"],
        "flushes": r["flushes"], "flush_stalls": r["flush_stalls"],
        "callback_p99_us": r["callback"]["p99_us"], "callback_max_us": r["callback"]["max_us"],
        "callback_p99_of_period": r["callback"]["p99_us"] / period_us,
        "callback_allocations": r["callback"]["allocations"],
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
