"""Differential test of the two event-language encoders on mutated real MIDI files.

Mutates small real files (music21's own and the exported corpus: flipped bits, random bytes,
inserted/deleted bytes, truncation, stray status bytes), encodes each with the Python side
(train/events.py, mido) in-process and with `midicopilot-engine encode`, and counts files that
both encode identically, both refuse, encode differently, or only one refuses.

    python engine/fuzz/mido_differential.py [--seed 1] [--count 1000] [--bin PATH] [--patch-mido]

--patch-mido works around mido 1.3.3 dropping the delta time of unknown meta events (see
docs/FUZZING.md) to show that this is the only difference left. Exit code 1 if any differ.
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_BIN = "/work/cache/target/debug/midicopilot-engine"


def patch_mido() -> None:
    """Keep the delta of unknown meta messages (mido's build_meta_message drops it)."""
    import mido.midifiles.midifiles as mm
    from mido.midifiles.meta import build_meta_message as original

    def fixed(meta_type, data, delta=0):
        msg = original(meta_type, data, delta)
        if msg.type == "unknown_meta":
            msg.time = delta
        return msg

    mm.build_meta_message = fixed


def mutate(data: bytearray, rng: random.Random) -> str:
    op = rng.choice(["flip", "flip", "byte", "trunc", "insert", "delete", "status"])
    for _ in range(rng.choice([1, 1, 2, 3])):
        i = rng.randrange(len(data))
        if op == "flip":
            data[i] ^= 1 << rng.randrange(8)
        elif op == "byte":
            data[i] = rng.randrange(256)
        elif op == "trunc":
            del data[i:]
            break
        elif op == "insert":
            data[i:i] = bytes([rng.randrange(256)])
        elif op == "delete":
            del data[i]
        else:
            data[i] = rng.choice([0xF8, 0xF1, 0xF2, 0xF6, 0xF0, 0xF7, 0xFF, 0xB0, 0x90, 0x80, 0xF4])
    return op


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--patch-mido", action="store_true")
    args = ap.parse_args()
    if args.patch_mido:
        patch_mido()
    from midicopilot.train import events
    from midicopilot.train.music21_midi import default_cache_dir, package_midi_files

    sources = [p for p in package_midi_files() + sorted(default_cache_dir().glob("*.mid"))
               if p.stat().st_size < 6000]
    rng = random.Random(args.seed)
    counts = {"identical": 0, "both refuse": 0, "differ": 0, "one refuses": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.count):
            src = rng.choice(sources)
            data = bytearray(src.read_bytes())
            op = mutate(data, rng)
            f = Path(tmp) / f"m{k}.mid"
            f.write_bytes(bytes(data))
            try:
                py, py_err = events.encode_file(f) + "\n", None
            except Exception as err:  # noqa: BLE001 - any refusal counts
                py, py_err = None, str(err)
            run = subprocess.run([args.bin, "encode", str(f)], capture_output=True)
            rs = run.stdout.decode() if run.returncode == 0 else None
            stderr = run.stderr.decode().strip()
            if run.returncode not in (0, 1) or len(stderr.splitlines()) > 1:
                print(f"BAD EXIT {run.returncode} {src.name} {op}: {stderr[:300]}")
            if py is None and rs is None:
                counts["both refuse"] += 1
            elif py == rs:
                counts["identical"] += 1
            elif py is None or rs is None:
                counts["one refuses"] += 1
                keep = Path(f"mutant-{args.seed}-{k}.mid")
                keep.write_bytes(bytes(data))
                print(f"ONE REFUSES {keep} ({src.name}, {op}) python: {py_err} | rust: {stderr}")
            else:
                counts["differ"] += 1
                keep = Path(f"mutant-{args.seed}-{k}.mid")
                keep.write_bytes(bytes(data))
                print(f"DIFFER {keep} ({src.name}, {op})")
    print(", ".join(f"{v} {k}" for k, v in counts.items()), f"of {args.count}")
    return 1 if counts["differ"] or counts["one refuses"] else 0


if __name__ == "__main__":
    sys.exit(main())
