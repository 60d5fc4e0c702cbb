"""The README's main job (`make demo`): a real piece from the music21 package through the event
language. Later stages (the live JACK demo) build on this module."""
from __future__ import annotations

import sys

from midicopilot.train import events
from midicopilot.train.music21_midi import bach_chorales


def main() -> int:
    piece = bach_chorales(limit=1)[0]
    text = events.encode_file(piece, meta=[events.meta_token("genre", "chorale")])
    stats = events.text_stats(text)
    print(f"{piece.name}: {stats.notes} notes, {stats.words} words "
          f"({stats.time_words} time, {stats.instant_words} instant), "
          f"{stats.words_per_note:.3f} words per note")
    print(text[:400] + (" …" if len(text) > 400 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
