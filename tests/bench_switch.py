"""How long a song switch takes in the live engine (docs/BENCHMARKS.md "Switching songs").

    python tests/bench_switch.py BUNDLE OTHER_BUNDLE --part SOPRANO,BASS [--engine PATH]

Starts `midicopilot-engine jack` on a private dummy JACK server (tests/jackserver.py) with
BUNDLE, then sends `switch` commands on its control channel every two seconds: three with the
same bundle (another part word: a new context on the shared model) and four alternating with
OTHER_BUNDLE (a copy of BUNDLE in another folder loads from disk, page cache warm). Prints the
engine's `wait_ms` (request → swap) for each. The old song keeps playing meanwhile.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jackserver import JackServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("other")
    ap.add_argument("--part", default="SOPRANO,BASS", help="two part words of the bundles")
    ap.add_argument("--engine", default=str(Path(os.environ.get(
        "CARGO_TARGET_DIR", Path(__file__).resolve().parent.parent / "engine" / "target"))
        / "release" / "midicopilot-engine"))
    args = ap.parse_args()
    p1, p2 = args.part.split(",")
    plan = [(args.bundle, p2), (args.bundle, p1), (args.bundle, p2), (args.other, p1),
            (args.bundle, p1), (args.other, p2), (args.bundle, p2)]
    with JackServer() as server:
        eng = subprocess.Popen([args.engine, "jack", "--bundle", args.bundle, "--bpm", "120"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=server.env, text=True)
        assert eng.stdin is not None and eng.stdout is not None
        events: queue.Queue[dict] = queue.Queue()
        out = eng.stdout
        threading.Thread(target=lambda: [events.put(json.loads(line)) for line in out],
                         daemon=True).start()
        events.get(timeout=600)  # ready
        same, load = [], []
        for i, (bundle, part) in enumerate(plan):
            time.sleep(2)
            eng.stdin.write(json.dumps({"cmd": "switch", "name": f"s{i}", "bundle": bundle,
                                        "part": part}) + "\n")
            eng.stdin.flush()
            while True:
                ev = events.get(timeout=600)
                if ev.get("event") in ("switched", "error"):
                    break
            if ev["event"] == "error":
                sys.exit(f"switch {i}: {ev['message']}")
            (load if ev["bundle_loaded"] else same).append(ev["wait_ms"])
            print(f"switch {i}: {'load' if ev['bundle_loaded'] else 'same'} bundle, "
                  f"{ev['wait_ms']} ms, {ev['stop_offs']} note-offs", flush=True)
        eng.stdin.write('{"cmd":"stop"}\n')
        eng.stdin.flush()
        eng.wait(timeout=60)
    print(f"same bundle: {min(same):.0f}–{max(same):.0f} ms; another bundle: "
          f"{min(load):.0f}–{max(load):.0f} ms")


if __name__ == "__main__":
    main()
