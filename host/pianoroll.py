"""A piano-roll picture of a MIDI file: the humans' channels in cool colours, the model's channel 0
in one warm colour drawn on top, time in beats (quarter notes), pitch on the vertical axis, and a
legend outside the plot. matplotlib with the Agg backend (no display needed)."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

MODEL_CHANNEL = 0
MODEL_COLOR = "#e8400c"  # the model's channel 0: warm orange-red
# The humans' channels 1–15, cool colours (none is close to MODEL_COLOR).
HUMAN_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#393b79", "#637939", "#7f7f7f",
                "#5254a3", "#6b6ecf", "#3182bd", "#31a354", "#756bb1", "#636363", "#9ecae1",
                "#74c476")
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


class PianoRollError(Exception):
    """A MIDI file that cannot be drawn; `str()` is one line."""


@dataclass(frozen=True)
class Note:
    channel: int
    pitch: int
    start: float  # beats
    end: float    # beats
    velocity: int


@dataclass(frozen=True)
class RollInfo:
    """What was drawn: notes per channel, and the plot area in the PNG's pixel coordinates
    (x0, y0, x1, y1 with y down from the top), so a test can look inside the plot only."""
    notes: dict[int, int]
    plot_box: tuple[int, int, int, int]
    size: tuple[int, int]
    beats: float


def human_color(channel: int) -> str:
    return HUMAN_COLORS[(channel - 1) % len(HUMAN_COLORS)]


def channel_color(channel: int, model_channel: int = MODEL_CHANNEL) -> str:
    return MODEL_COLOR if channel == model_channel else human_color(channel)


def read_notes(path: str | Path) -> tuple[list[Note], float]:
    """Notes of a MIDI file (all tracks merged) with times in beats, and the file's end in beats.
    A note-off closes the earliest open note of its channel and pitch; notes still open at the
    end close at the last event."""
    import mido

    try:
        mid = mido.MidiFile(str(path))
    except FileNotFoundError:
        raise PianoRollError(f"{path}: no such file") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise PianoRollError(f"{path}: not a readable MIDI file ({e})") from None
    if mid.type == 2:
        raise PianoRollError(f"{path}: MIDI type 2 (independent sequences) is not supported")
    tpb = mid.ticks_per_beat
    if not isinstance(tpb, int) or tpb <= 0:
        raise PianoRollError(f"{path}: SMPTE time division is not supported")
    open_notes: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    notes: list[Note] = []
    tick = 0
    for msg in mido.merge_tracks(mid.tracks):
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes[(msg.channel, msg.note)].append((tick, msg.velocity))
        elif msg.type in ("note_off", "note_on"):
            started = open_notes.get((msg.channel, msg.note))
            if started:
                start, vel = started.pop(0)
                notes.append(Note(msg.channel, msg.note, start / tpb, tick / tpb, vel))
    for (ch, pitch), started in open_notes.items():
        for start, vel in started:
            notes.append(Note(ch, pitch, start / tpb, max(tick, start + 1) / tpb, vel))
    notes.sort(key=lambda n: (n.start, n.channel, n.pitch))
    return notes, tick / tpb


def _pitch_name(p: int) -> str:
    return f"{NOTE_NAMES[p % 12]}{p // 12 - 1}"


def draw_pianoroll(midi_path: str | Path, png_path: str | Path, *, title: str | None = None,
                   model_channel: int = MODEL_CHANNEL, width: float = 14.0, height: float = 6.0,
                   dpi: int = 100) -> RollInfo:
    """Draw `midi_path` as a piano roll into `png_path` and say what was drawn."""
    notes, end = read_notes(midi_path)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(width, height), dpi=dpi)
    # Room on the right for the legend, outside the plot area.
    fig.subplots_adjust(left=0.06, right=0.84, top=0.92, bottom=0.1)
    ax = fig.add_subplot()
    counts = Counter(n.channel for n in notes)
    # Humans first, the model last so it is drawn on top.
    order = sorted(counts, key=lambda ch: (ch == model_channel, ch))
    handles = []
    for ch in order:
        boxes = [[(n.start, n.pitch - 0.4), (n.end, n.pitch - 0.4), (n.end, n.pitch + 0.4),
                  (n.start, n.pitch + 0.4)] for n in notes if n.channel == ch]
        color = channel_color(ch, model_channel)
        ax.add_collection(PolyCollection(boxes, facecolors=color, edgecolors=color,
                                         linewidths=0.0, antialiaseds=False,
                                         zorder=3 if ch == model_channel else 2))
        who = "model" if ch == model_channel else "human"
        # Channels 0-based as in docs/FORMAT.md; a musician's "MIDI channel" is one more.
        handles.append(Patch(color=color, label=f"ch {ch} ({who}, {counts[ch]} notes)"))
    if notes:
        lo = min(n.pitch for n in notes) - 2
        hi = max(n.pitch for n in notes) + 2
    else:
        lo, hi = 58, 72
    span = max(end, max((n.end for n in notes), default=0.0), 1.0)
    ax.set_xlim(0, span)
    ax.set_ylim(lo, hi)
    ax.set_yticks([p for p in range(lo, hi + 1) if p % 12 == 0] or [lo])
    ax.set_yticklabels([_pitch_name(int(t)) for t in ax.get_yticks()])
    ax.set_xlabel("time (beats)")
    ax.set_ylabel("pitch")
    ax.grid(True, axis="both", color="#dddddd", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title)
    if handles:
        if order[-1] == model_channel:  # the model first in the legend, then the humans
            handles.insert(0, handles.pop())
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0, fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center")
    fig.savefig(str(png_path), dpi=dpi)
    w, h = int(round(width * dpi)), int(round(height * dpi))
    box = ax.get_window_extent()
    plot_box = (int(box.x0) + 1, h - int(box.y1) + 1, int(box.x1) - 1, h - int(box.y0) - 1)
    return RollInfo(notes=dict(counts), plot_box=plot_box, size=(w, h), beats=span)
