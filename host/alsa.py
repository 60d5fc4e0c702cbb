"""ALSA on this machine: whether the engine's alsa backend can run here (docs/RIGS.md)."""
from __future__ import annotations

from pathlib import Path

SEQ_DEVICE = Path("/dev/snd/seq")


def alsa_problem(device: Path = SEQ_DEVICE) -> str | None:
    """Why the alsa backend cannot run here (one line), or None. The engine says the same."""
    if not device.exists():
        return (f"no ALSA sequencer ({device} is missing): load it with `modprobe snd-seq` (a "
                "virtual MIDI port: `modprobe snd-virmidi`), or use the jack backend")
    return None
