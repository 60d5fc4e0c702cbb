"""A musician on JACK: plays MIDI into the engine at exact frames and records what comes back.

Used by the live demo (`midicopilot.host.demo`) and the live tests (tests/jack_harness.py):

    piece = load_piece(path, bpm=100, leave_out="Soprano")  # the other parts on channels 1…
    with Musician(server=name) as m:               # JACK client "midicopilot-musician"
        m.connect_to_engine()                      # musician:out -> midicopilot:in…, out -> in
        rec = m.play(piece.messages, tail=2.0)     # blocks until played (+ tail seconds)
    rec.played / rec.heard                         # [(frame, bytes)] with absolute JACK frames

The process callback writes each scheduled message at its exact frame offset (the schedule is
fixed before activation, so the callback only walks an index) and stamps every message it
receives with `last_frame_time + offset`. JACK-Client's callback runs Python on JACK's thread:
fine for a test harness, not for a studio (that is what the Rust engine is for).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENGINE_CLIENT = "midicopilot"
MUSICIAN_CLIENT = "midicopilot-musician"


class MusicianError(Exception):
    """One line: what went wrong talking to JACK."""


@dataclass(frozen=True)
class Piece:
    """Note messages of a MIDI file, with times in seconds at a chosen tempo."""
    name: str
    bpm: float
    messages: list[tuple[float, bytes]]  # (seconds from the start, raw MIDI), time-sorted
    notes: int                           # note-ons
    seconds: float

    def until(self, seconds: float) -> Piece:
        """The first `seconds` of the piece; notes still sounding then are closed then."""
        kept: list[tuple[float, bytes]] = []
        sounding: dict[tuple[int, int], bool] = {}
        for t, msg in self.messages:
            if t > seconds:
                break
            kept.append((t, msg))
            key = (msg[0] & 0x0F, msg[1])
            sounding[key] = _is_note_on(msg)
        for (ch, pitch), on in sorted(sounding.items()):
            if on:
                kept.append((seconds, bytes([0x80 | ch, pitch, 64])))
        notes = sum(1 for _, m in kept if _is_note_on(m))
        return Piece(self.name, self.bpm, kept, notes, min(seconds, self.seconds))


def _is_note_on(msg: bytes) -> bool:
    return len(msg) == 3 and msg[0] & 0xF0 == 0x90 and msg[2] > 0


def _is_note_off(msg: bytes) -> bool:
    return len(msg) == 3 and (msg[0] & 0xF0 == 0x80 or (msg[0] & 0xF0 == 0x90 and msg[2] == 0))


def load_piece(path: str | Path, bpm: float, *, leave_out: str | None = None) -> Piece:
    """A MIDI file's notes as raw messages timed at `bpm` (the engine's tempo, so the musician
    and the model share one grid), ignoring the file's own tempo.

    Each part, a (track, channel) with notes, is one player: as the corpus does it
    (train/corpus.py), the parts take channels 1, 2, … in file order (drums stay on 9), never
    channel 0, the model's. `leave_out` names the part the model plays (a track name, matched
    case-insensitively, e.g. "Soprano"); its notes are not played. Without it, parts the file
    has on channel 0 are left out. At one instant note-offs come first, as in the language.
    """
    import mido

    mid = mido.MidiFile(str(path))
    tpb = mid.ticks_per_beat
    if tpb <= 0:
        raise MusicianError(f"{path}: SMPTE time division is not supported")
    raw: list[tuple[int, tuple[int, int], mido.Message]] = []
    names: dict[tuple[int, int], str] = {}
    for ti, track in enumerate(mid.tracks):
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type in ("note_on", "note_off"):
                part = (ti, msg.channel)
                names.setdefault(part, (track.name or "").strip())
                raw.append((tick, part, msg))
    parts = list(names)
    if leave_out is not None:
        dropped = {p for p in parts if names[p].lower() == leave_out.lower()}
        if not dropped:
            known = ", ".join(sorted({n for n in names.values() if n})) or "none named"
            raise MusicianError(f"{path}: no part named '{leave_out}' (parts: {known})")
    else:
        dropped = {p for p in parts if p[1] == 0}
    channel: dict[tuple[int, int], int] = {}
    free = [c for c in range(1, 16) if c != 9]
    for i, part in enumerate(p for p in parts if p not in dropped):
        channel[part] = 9 if part[1] == 9 else free[i % len(free)]
    events: list[tuple[int, int, bytes]] = []
    for tick, part, msg in raw:
        if part in dropped:
            continue
        data = bytes(msg.copy(channel=channel[part]).bytes())
        events.append((tick, 0 if _is_note_off(data) else 1, data))
    events.sort(key=lambda e: (e[0], e[1], e[2][0] & 0x0F, e[2][1]))
    sec_per_tick = 60.0 / bpm / tpb
    messages = [(tick * sec_per_tick, data) for tick, _, data in events]
    notes = sum(1 for _, m in messages if _is_note_on(m))
    seconds = messages[-1][0] if messages else 0.0
    return Piece(Path(path).stem, bpm, messages, notes, seconds)


@dataclass
class Recording:
    """What a `play` did: the messages played and heard, with absolute JACK frames."""
    rate: int
    start_frame: int
    played: list[tuple[int, bytes]] = field(default_factory=list)
    heard: list[tuple[int, bytes]] = field(default_factory=list)
    cycles: int = 0

    def seconds(self, frame: int) -> float:
        return (frame - self.start_frame) / self.rate


class Musician:
    """A JACK client with one MIDI output (`out`, into the engine) and one input (`in`, from the
    engine's `out`). Use as a context manager."""

    def __init__(self, name: str = MUSICIAN_CLIENT, server: str | None = None) -> None:
        import jack

        jack.set_error_function(lambda _m: None)
        jack.set_info_function(lambda _m: None)
        try:
            self.client = jack.Client(name, no_start_server=True, servername=server or None)
        except jack.JackOpenError:
            raise MusicianError(f"no JACK server running (server '{server or 'default'}')"
                                ) from None
        self.out = self.client.midi_outports.register("out")
        self.inp = self.client.midi_inports.register("in")
        self._schedule: list[tuple[int, bytes]] = []
        self._next = 0
        self._lock = threading.Lock()
        self._armed = False
        self.recording: Recording | None = None
        self._heard: list[tuple[int, bytes]] = []
        self._played: list[tuple[int, bytes]] = []
        self._cycles = 0
        self.client.set_process_callback(self._process)
        self.client.activate()

    # -- the process callback (JACK's thread) ------------------------------------------------
    def _process(self, frames: int) -> None:
        start = self.client.last_frame_time
        end = start + frames
        self._cycles += 1
        self.out.clear_buffer()
        if self._armed:
            sched = self._schedule
            i = self._next
            last = 0
            while i < len(sched) and sched[i][0] < end:
                frame, data = sched[i]
                offset = max(frame - start, last)
                try:
                    self.out.write_midi_event(offset, data)
                except Exception:  # buffer full: try again next cycle  # noqa: BLE001
                    break
                self._played.append((start + offset, data))
                last = offset
                i += 1
            self._next = i
        for offset, data in self.inp.incoming_midi_events():
            self._heard.append((start + offset, bytes(data)))

    # -- control (any thread) -----------------------------------------------------------------
    @property
    def rate(self) -> int:
        return int(self.client.samplerate)

    def connect_to_engine(self, engine: str = ENGINE_CLIENT, input_port: str | None = None
                          ) -> None:
        """musician:out -> <engine>:<input_port> (default: the engine's first input) and
        <engine>:out -> musician:in."""
        deadline = time.monotonic() + 30
        while True:
            ins = [p.name for p in self.client.get_ports(f"^{engine}:in", is_midi=True,
                                                          is_input=True)]
            outs = [p.name for p in self.client.get_ports(f"^{engine}:out$", is_midi=True)]
            if ins and outs:
                break
            if time.monotonic() > deadline:
                raise MusicianError(f"the engine's ports ({engine}:in…, {engine}:out) did not "
                                    "appear within 30 s")
            time.sleep(0.05)
        target = f"{engine}:{input_port}" if input_port else sorted(ins)[0]
        self.client.connect(self.out, target)
        self.client.connect(outs[0], self.inp)

    def play(self, messages: Sequence[tuple[float, bytes]], *, lead_in: float = 0.5,
             tail: float = 2.0, stop: threading.Event | None = None) -> Recording:
        """Play `messages` ((seconds, raw MIDI), sorted) starting `lead_in` seconds from now;
        return once the last one is played and `tail` more seconds have passed (or `stop` is
        set: the notes still sounding then are released first)."""
        rate = self.rate
        start = self.client.frame_time + int(lead_in * rate)
        schedule = [(start + int(round(t * rate)), bytes(m)) for t, m in messages]
        self.start_recording(start)
        with self._lock:
            self._schedule, self._next, self._played = schedule, 0, []
            self._armed = True
        end_frame = (schedule[-1][0] if schedule else start) + int(tail * rate)
        while self.client.frame_time < end_frame:
            if stop is not None and stop.is_set():
                self._release_all(schedule)
                break
            time.sleep(0.01)
        self._armed = False
        return self.stop_recording()

    def _release_all(self, schedule: list[tuple[int, bytes]]) -> None:
        """Stop playing mid-piece: note-offs for every note this musician left sounding."""
        self._armed = False
        sounding: set[tuple[int, int]] = set()
        for _, data in self._played:
            key = (data[0] & 0x0F, data[1])
            if _is_note_on(data):
                sounding.add(key)
            elif _is_note_off(data):
                sounding.discard(key)
        now = self.client.frame_time + int(0.02 * self.rate)
        offs = [(now, bytes([0x80 | ch, p, 64])) for ch, p in sorted(sounding)]
        with self._lock:
            self._schedule, self._next = offs, 0
            self._armed = True
        time.sleep(0.1)
        self._armed = False

    def start_recording(self, start_frame: int | None = None) -> None:
        self._heard = []
        self._cycles = 0
        self.recording = Recording(self.rate, start_frame if start_frame is not None
                                   else self.client.frame_time)

    def stop_recording(self) -> Recording:
        rec = self.recording or Recording(self.rate, self.client.frame_time)
        rec.played = list(self._played)
        rec.heard = list(self._heard)
        rec.cycles = self._cycles
        return rec

    def heard_so_far(self) -> list[tuple[int, bytes]]:
        return list(self._heard)

    def close(self) -> None:
        try:
            self.client.deactivate()
        except Exception:  # noqa: BLE001 - the server may be gone already
            pass
        self.client.close()

    def __enter__(self) -> Musician:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- analysis -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoteCheck:
    """Pairing of the note messages of a stream."""
    ons: int
    offs: int
    unmatched_offs: int
    hanging: list[tuple[int, int]]   # (channel, pitch) still sounding at the end
    restruck: int                    # note-ons of a note already sounding
    channels: set[int]


def check_notes(messages: Iterable[tuple[int, bytes]]) -> NoteCheck:
    """Walk a recorded stream and pair note-ons with note-offs per (channel, pitch)."""
    sounding: set[tuple[int, int]] = set()
    ons = offs = unmatched = restruck = 0
    channels: set[int] = set()
    for _, data in messages:
        if len(data) < 3 or data[0] & 0xF0 not in (0x80, 0x90):
            continue
        key = (data[0] & 0x0F, data[1])
        channels.add(key[0])
        if _is_note_on(data):
            ons += 1
            if key in sounding:
                restruck += 1
            sounding.add(key)
        else:
            offs += 1
            if key not in sounding:
                unmatched += 1
            sounding.discard(key)
    return NoteCheck(ons, offs, unmatched, sorted(sounding), restruck, channels)


def write_midi(path: str | Path, rec: Recording, bpm: float, *, tpq: int = 480) -> Path:
    """What was played (channels 1–15) and heard (the model's channel 0) as one MIDI file,
    at `bpm`, with times from the recorded frames."""
    import mido

    path = Path(path)
    frames_per_tick = rec.rate * 60.0 / bpm / tpq
    merged = sorted([*rec.played, *rec.heard], key=lambda e: e[0])
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    last = 0
    for frame, data in merged:
        if len(data) < 3 or data[0] & 0xF0 not in (0x80, 0x90):
            continue
        tick = max(0, int(round((frame - rec.start_frame) / frames_per_tick)))
        msg = mido.Message.from_bytes(list(data))
        track.append(msg.copy(time=max(0, tick - last)))
        last = max(last, tick)
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid = mido.MidiFile(ticks_per_beat=tpq)
    mid.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(str(path))
    return path
