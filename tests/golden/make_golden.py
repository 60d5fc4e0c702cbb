"""Writes the golden MIDI files under tests/golden/midi/ with mido.

The expected texts (`<name>.txt`) were worked out by hand from docs/FORMAT.md, not produced by
either encoder: both pytest and `cargo test` check their encoder against them. Re-run this script
only to regenerate the .mid files (`python tests/golden/make_golden.py`); it rewrites the .txt/.err
files from the table below, so a change to an expectation is a visible diff here.
"""
from __future__ import annotations

from pathlib import Path

import mido

HERE = Path(__file__).parent / "midi"
M, Meta = mido.Message, mido.MetaMessage


def track(*events: tuple[int, mido.Message]) -> mido.MidiTrack:
    """Events given at absolute ticks (in the order they are listed) → a track with deltas."""
    out, now = mido.MidiTrack(), 0
    for tick, msg in events:
        out.append(msg.copy(time=tick - now))
        now = tick
    out.append(Meta("end_of_track", time=0))
    return out


def midi(tpq: int, *tracks: mido.MidiTrack, kind: int = 1) -> mido.MidiFile:
    mid = mido.MidiFile(type=kind, ticks_per_beat=tpq)
    mid.tracks.extend(tracks)
    return mid


def on(ch, p, v=100):
    return M("note_on", channel=ch, note=p, velocity=v)


def off(ch, p, v=64):
    return M("note_off", channel=ch, note=p, velocity=v)


def cc(ch, c, v):
    return M("control_change", channel=ch, control=c, value=v)


CASES: dict[str, tuple[mido.MidiFile, str]] = {
    # 480 ticks a quarter → 24; v100 → bin 6 'g', v64 → bin 3 'd'.
    "basic": (midi(480, track((0, on(0, 60)), (480, off(0, 60)), (480, on(0, 64, 64)),
                              (720, off(0, 64)))),
              "0+060g P_24 0-0600+064d P_12 0-064"),
    # deltas 14, 5, 110, 200; v127 → 'h'.
    "time_words": (midi(24, track((0, on(1, 60, 127)), (14, off(1, 60)), (14, on(1, 62, 127)),
                                  (19, off(1, 62)), (19, on(1, 64, 127)), (129, off(1, 64)),
                                  (129, on(1, 65, 127)), (329, off(1, 65)))),
                   "1+060h P_12 P_2 1-0601+062h P_5 1-0621+064h P_96 P_12 P_2 1-0641+065h "
                   "P_96 P_96 P_8 1-065"),
    # file order shuffled; re-strike of ch0 p40 at 12 (on listed before the off); v80 → 'e'.
    "sort_order": (midi(24, track((0, on(2, 50, 80)), (0, on(0, 70, 80)), (0, on(0, 40, 80)),
                                  (0, on(1, 60, 80)), (12, on(0, 40, 80)), (12, off(2, 50)),
                                  (12, off(0, 40)), (12, off(1, 60)), (12, off(0, 70)),
                                  (24, off(0, 40)))),
                   "0+040e0+070e1+060e2+050e P_12 0-0400-0701-0602-0500+040e P_12 0-040"),
    # the pedal holds 60 and 64 until it goes up at 48.
    "pedal": (midi(24, track((0, cc(0, 64, 127)), (0, on(0, 60)), (12, off(0, 60)),
                             (12, on(0, 64)), (24, off(0, 64)), (48, cc(0, 64, 0)),
                             (48, on(0, 67)), (60, off(0, 67)))),
              "0+060g P_12 0+064g P_36 0-0600-0640+067g P_12 0-067"),
    # FIFO pairing then rule 9 (truncate at the re-strike); a same-start duplicate is dropped.
    "overlap_same_pitch": (midi(24, track((0, on(3, 72)), (0, on(3, 74)), (0, on(3, 74, 30)),
                                          (12, off(3, 74)), (24, on(3, 72, 50)),
                                          (36, off(3, 74)), (48, off(3, 72)), (96, off(3, 72)))),
                           "3+072g3+074g P_12 3-074 P_12 3-0723+072d P_72 3-072"),
    # 480 → 24 quantizing, half up; zero-length drum hits last one tick.
    "zero_length_and_quantize": (midi(480, track((0, on(9, 36)), (5, off(9, 36)), (10, on(9, 38)),
                                                 (20, off(9, 38)), (240, on(9, 42)),
                                                 (250, off(9, 42)))),
                                 "9+036g P_1 9-0369+038g P_1 9-038 P_10 9+042g P_1 9-042"),
    # everything but the note is dropped.
    "dropped_messages": (midi(96, track(
        (0, Meta("set_tempo", tempo=400000)),
        (0, Meta("time_signature", numerator=3, denominator=4)),
        (0, Meta("track_name", name="Everything")), (0, M("program_change", channel=5, program=4)),
        (10, cc(5, 7, 100)), (20, M("pitchwheel", channel=5, pitch=2000)),
        (30, M("aftertouch", channel=5, value=50)), (40, M("sysex", data=[1, 2, 3])),
        (50, M("polytouch", channel=5, note=60, value=3)), (96, on(5, 60, 64)),
        (100, Meta("text", text="hello")), (150, Meta("set_tempo", tempo=500000)),
        (192, off(5, 60)))),
        "P_24 5+060d P_24 5-060"),
    # ties between tracks follow track order: the pedal (track 0) goes up before track 1's
    # note-off at the same tick, so the note is not held to the end of the file.
    "multitrack_tie": (midi(24, track((0, cc(0, 64, 127)), (24, cc(0, 64, 0))),
                            track((0, on(0, 60)), (24, off(0, 60)), (48, on(0, 64)),
                                  (72, off(0, 64)))),
                       "0+060g P_24 0-060 P_24 0+064g P_24 0-064"),
    # a note never released ends at the last event (End of Track at 48); a stray off is ignored.
    "open_at_end": (midi(24, track((0, off(0, 50)), (0, on(0, 60)),
                                   (48, Meta("marker", text="x")))),
                    "0+060g P_48 0-060"),
    "no_notes": (midi(24, track((0, Meta("track_name", name="empty")), (10, cc(0, 7, 1)))), ""),
    # velocity bins at their edges: 1, 16 → a; 17 → b; 127 → h; 64 → d.
    "velocity_bins": (midi(24, track((0, on(0, 60, 1)), (0, on(0, 61, 16)), (0, on(0, 62, 17)),
                                     (0, on(0, 63, 127)), (0, on(0, 64, 64)), (24, off(0, 60)),
                                     (24, on(0, 61, 0)), (24, off(0, 62)), (24, off(0, 63)),
                                     (24, off(0, 64)))),
                      "0+060a0+061a0+062b0+063h0+064d P_24 0-0600-0610-0620-0630-064"),
    # a format-0 file whose first note is on beat 2.
    "format0_late_start": (midi(24, track((24, on(4, 127, 100)), (30, off(4, 127)),
                                          (30, on(4, 0, 100)), (31, off(4, 0))), kind=0),
                           "P_24 4+127g P_6 4-1274+000g P_1 4-000"),
}

def smf(division: int, *tracks: bytes) -> bytes:
    """A Standard MIDI File from raw track bodies, for events mido would not write itself."""
    head = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") \
        + len(tracks).to_bytes(2, "big") + division.to_bytes(2, "big")
    return head + b"".join(b"MTrk" + len(t).to_bytes(4, "big") + t for t in tracks)


RAW: dict[str, tuple[bytes, str]] = {
    # a meta event of a type mido does not know (0x08, program name) carries a delta time of 12
    # that must count (mido 1.3.3 drops it; events_midi.py puts it back).
    "unknown_meta": (smf(24, bytes([0x00, 0x90, 60, 100, 0x0C, 0xFF, 0x08, 0x03, 0x61, 0x62, 0x63,
                                    0x0C, 0x80, 60, 64, 0x00, 0xFF, 0x2F, 0x00])),
                     "0+060g P_24 0-060"),
    # running status (note-ons with velocity 0 as offs) carried across a meta event.
    "running_status": (smf(24, bytes([0x00, 0x91, 64, 80, 0x06, 0xFF, 0x01, 0x01, 0x78,
                                      0x06, 64, 0, 0x00, 0xFF, 0x2F, 0x00])),
                       "1+064e P_12 1-064"),
}

BROKEN: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "not_midi": (b"this is not a MIDI file at all\n", "not a standard midi file"),
    "smpte": (b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\xe7\x28"
              b"MTrk\x00\x00\x00\x04\x00\xff\x2f\x00", "smpte"),
    "short_header": (b"MThd\x00\x00\x00", "truncated"),
}


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    for name, (mid, text) in CASES.items():
        mid.save(HERE / f"{name}.mid")
        (HERE / f"{name}.txt").write_text(text + "\n")
    for name, (data, text) in RAW.items():
        (HERE / f"{name}.mid").write_bytes(data)
        (HERE / f"{name}.txt").write_text(text + "\n")
    for name, (data, keyword) in BROKEN.items():
        (HERE / f"{name}.mid").write_bytes(data)
        (HERE / f"{name}.err").write_text(keyword + "\n")
    # a real file cut in the middle of its track chunk
    whole = (HERE / "time_words.mid").read_bytes()
    (HERE / "truncated_track.mid").write_bytes(whole[: len(whole) - 9])
    (HERE / "truncated_track.err").write_text("corrupt\n")


if __name__ == "__main__":
    main()
