"""Do the training windows show the model the band around its own notes? (docs/QUALITY.md)

For every channel-0 note-on in a run's training windows (the windows exactly as the trainer cut
them, decoded back to event text), this counts:

- whether a band note (channels 1–15, drums excepted) sounds during the note's beat inside the
  window: the model can see what it plays against;
- how many beats of the window come before it: how much of the music it hears first.

    python -m midicopilot.train.window_stats RUN [--windows N]

A window starts and ends at word boundaries in the middle of a piece, so its text is read
leniently: a note-off whose note-on is before the window is a note sounding from the window's
start.
"""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ITEM = re.compile(r"([0-9a-f])([+-])(\d{3})([a-z]?)")
DRUMS = 9


@dataclass
class Coverage:
    onsets: int = 0
    band_in_beat: int = 0
    beats_before: float = 0.0
    windows: int = 0

    def to_dict(self) -> dict:
        return {"windows": self.windows, "model_onsets": self.onsets,
                "band_in_beat": self.band_in_beat / self.onsets if self.onsets else None,
                "mean_beats_before": self.beats_before / self.onsets if self.onsets else None}


def window_coverage(body: str, tpq: int, cov: Coverage) -> None:
    """Add one window's body text (time and instant words) to `cov`."""
    tick = 0
    band: list[tuple[int, int]] = []   # (start, end) of band notes
    open_band: dict[tuple[int, int], int] = {}
    onsets: list[int] = []
    for word in body.split():
        if word.startswith("P_"):
            tick += int(word[2:])
            continue
        if word.startswith("["):
            continue
        for ch_hex, kind, _pitch, _ in ITEM.findall(word):
            ch = int(ch_hex, 16)
            key = (ch, int(_pitch))
            if ch == 0:
                if kind == "+":
                    onsets.append(tick)
            elif ch != DRUMS:
                if kind == "+":
                    open_band[key] = tick
                else:
                    band.append((open_band.pop(key, 0), tick))
    band += [(start, tick + 1) for start in open_band.values()]
    cov.windows += 1
    for t in onsets:
        beat = t // tpq
        lo, hi = beat * tpq, (beat + 1) * tpq
        cov.onsets += 1
        cov.band_in_beat += any(s < hi and e > lo for s, e in band)
        cov.beats_before += t / tpq


def run_coverage(run: Path, windows: int = 2000, seed: int = 0) -> Coverage:
    from midicopilot.train import tokenizer as tok_mod
    from midicopilot.train.windows import load_windows

    tok = tok_mod.load_tokenizer(run / tok_mod.TOKENIZER_FILE)
    pad = tok.token_to_id(tok_mod.PAD_TOKEN)
    info = json.loads((run / "run.json").read_text())
    tpq = int(info["corpus_manifest"]["params"]["ticks_per_quarter"])
    data = load_windows(run, "train")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(data), size=min(windows, len(data)), replace=False)
    cov = Coverage()
    for i in sorted(picks):
        ids = [int(x) for x in data.ids[i][int(data.header[i]):] if int(x) != pad]
        window_coverage(tok.decode(ids, skip_special_tokens=True), tpq, cov)
    return cov


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run folder (train --phase …)")
    ap.add_argument("--windows", type=int, default=2000, help="windows to sample")
    a = ap.parse_args()
    print(json.dumps(run_coverage(a.run, a.windows).to_dict(), indent=1))


if __name__ == "__main__":
    main()
