"""The live engine on a real JACK server (`jackd --no-realtime -d dummy`, its own server name).

A JACK-Client musician (tests/jack_harness.py → host/musician.py) plays a real Bach chorale from
the music21 package into `midicopilot-engine jack` (its soprano left out: that is the model's
part) and records what comes back with frame times. The model is a small random bundle made by
tests/engine_fixtures.py: its music is noise, but every rule checked here holds for any weights.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jack_harness import (
    LiveEngine,
    Musician,
    check_notes,
    clock_messages,
    flood,
    load_piece,
    unique_missing_server,
)
from jackserver import JackServer

pytestmark = pytest.mark.jack

BPM = 120.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine_fixtures import make_random_bundle

    return make_random_bundle(tmp_path_factory.mktemp("live") / "bundle", vocab_size=512,
                              hidden_size=64, layers=2, heads=4, kv_heads=2, seed=3)


@pytest.fixture(scope="module")
def chorale() -> Path:
    from midicopilot.train.music21_midi import bach_chorales

    return bach_chorales(limit=1)[0]


def test_missing_server_is_one_line_and_a_nonzero_exit(engine_bin: Path, bundle: Path) -> None:
    t0 = time.monotonic()
    out = subprocess.run([str(engine_bin), "jack", "--bundle", str(bundle)],
                         capture_output=True, text=True, timeout=20,
                         env={**JackServer().env, "JACK_DEFAULT_SERVER": unique_missing_server()})
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "no JACK server running" in lines[0] and "Traceback" not in out.stderr
    assert time.monotonic() - t0 < 10


def test_plays_channel_0_in_time_and_stops_clean(engine_bin: Path, bundle: Path,
                                                  chorale: Path) -> None:
    piece = load_piece(chorale, BPM, leave_out="Soprano").until(8.0)
    assert piece.notes > 40 and {m[0] & 0x0F for _, m in piece.messages} == {1, 2, 3, 4}
    with JackServer() as server, \
            LiveEngine(engine_bin, bundle, server, inputs=["keys=pass"], bpm=BPM,
                       args=["--max-polyphony", "3", "--release-horizon-ms", "40"]) as eng, \
            Musician(server=server.name) as musician:
        musician.connect_to_engine(input_port="in_keys")
        rec = musician.play(piece.messages, tail=0.5)
        # stop while the model is (most likely) still playing
        code, stderr = eng.stop(signal.SIGTERM)
        time.sleep(0.3)
        heard = musician.heard_so_far()
    assert code == 0, stderr
    report = eng.report()
    played = check_notes(rec.played)
    out = check_notes(heard)

    # the musician played the piece, as notes of channels 1–15
    assert played.ons == piece.notes and not played.hanging
    # what the musician played arrived, all of it — unless the JACK server itself dropped cycles
    # (xruns of a loaded 2-core box under --no-realtime: a skipped cycle's port buffers never
    # reach the engine); then most of it, and the report says so
    sent = played.ons + played.offs
    figures = {k: report[k] for k in ("received", "events_in", "filtered", "merged",
                                      "unmatched_offs", "dropped", "xruns")}
    if report["xruns"] == 0:
        assert report["events_in"] == sent, figures
    else:
        assert 0.9 * sent <= report["events_in"] <= sent, figures
    assert report["dropped"]["total"] == 0
    # the model answered, on channel 0 only, and nothing is left sounding after SIGTERM
    assert out.ons > 0, report
    assert out.channels == {0}
    assert out.hanging == [] and out.unmatched_offs == 0 and out.restruck == 0
    assert out.ons == out.offs
    assert report["events_out"] == len(heard)
    assert report["stop_reason"] == "signal"
    if report["stop_offs"]:  # the notes sounding at SIGTERM were closed in one cycle, together
        last = heard[-1][0]
        final = [m for f, m in heard if f == last]
        assert len(final) >= report["stop_offs"] and all(m[0] == 0x80 for m in final)
    # in time: released ahead of their due frames (a stray hiccup of a shared 2-core CI box
    # allowed: 1 in 25; a late horizon or a slow decoder makes most events late)
    assert report["decoder"]["released"] > 0
    assert report["late"] <= max(2, report["decoder"]["released"] // 25), report
    # the callback never allocated (the guard is live: its self-test saw an allocation)
    assert report["callback"]["alloc_guard"] is True
    assert report["callback"]["allocations"] == 0
    assert report["callback"]["cycles"] > 0 and report["callback"]["max_us"] > 0
    assert "events in" in stderr and stderr.strip().count("\n") == 0, stderr


@pytest.fixture(scope="module")
def demo_bundle() -> Path:
    """The demo bundle itself, where presets/demo.toml names it: shipped in bundles/demo."""
    from midicopilot.host import presets

    target = presets.load_preset(presets.resolve_preset("demo")).bundle
    assert (target / "midicopilot.json").exists(), f"{target}: the shipped demo bundle is missing"
    return target


def test_demo_bundle_releases_ahead_of_due(engine_bin: Path, demo_bundle: Path,
                                           chorale: Path) -> None:
    """presets/demo.toml as `midicopilot play` runs it, on the trained demo bundle: released
    events are ahead of their due frames (a stray hiccup of a shared CI box allowed, 1 in 25)."""
    from midicopilot.host import engine as host_engine
    from midicopilot.host import presets

    demo_preset = presets.load_preset(presets.resolve_preset("demo"))
    assert demo_preset.bundle == demo_bundle
    argv = host_engine.engine_args(demo_preset, live=True)
    # the harness passes --bundle, --bpm, --seed and the inputs itself
    own = {"--bundle", "--bpm", "--seed", "--input"}
    pairs = zip(argv[::2], argv[1::2], strict=True)
    args = [x for flag, value in pairs if flag not in own for x in (flag, value)]
    bpm = demo_preset.tempo.bpm
    # 30 s: the model enters after the band, as it was trained to (docs/QUALITY.md), measured
    # 5–17 s in, its first note at most held to max_note_ticks (~5 s); in 20 s a late entry left
    # only 5 events, in 1 run of 3 (with the binary before the CPU kernels too, 1 in 6)
    piece = load_piece(chorale, bpm, leave_out="Soprano").until(30.0)
    with JackServer() as server, \
            LiveEngine(engine_bin, demo_bundle, server, inputs=["keys=pass"], bpm=bpm,
                       args=args) as eng, \
            Musician(server=server.name) as musician:
        musician.connect_to_engine(input_port="in_keys")
        musician.play(piece.messages, tail=0.5)
        code, stderr = eng.stop()
    assert code == 0, stderr
    report = eng.report()
    released = report["decoder"]["released"]
    # the last 13 s at the preset's tempo are ~20 beats; one chorale voice sings ~0.9 notes a
    # beat (note-ons and -offs are both released): a model that sings at all clears this.
    assert released > 8, report
    assert report["late"] <= max(2, released // 25), report
    assert report["dropped"]["total"] == 0, report


def test_midi_clock_sets_the_tempo(engine_bin: Path, bundle: Path) -> None:
    clock_bpm = 150.0
    messages = clock_messages(6.0, clock_bpm)
    with JackServer() as server, \
            LiveEngine(engine_bin, bundle, server, inputs=["clock=pass"], bpm=90.0,
                       args=["--tempo-source", "midi_clock"]) as eng, \
            Musician(server=server.name) as musician:
        musician.connect_to_engine(input_port="in_clock")
        musician.play(messages, tail=0.2)
        code, stderr = eng.stop()
    assert code == 0, stderr
    r = eng.report()
    tempo = r["decoder"]["tempo"]
    assert r["clock_in"] == r["received"]
    assert r["received"] == len(messages) or r["xruns"] > 0, r  # JACK loses only on an xrun
    assert tempo["clocks"] + tempo["starts"] == r["clock_in"] and tempo["starts"] <= 1
    assert tempo["source"] == "midi_clock" and tempo["bpm_start"] == 90.0
    assert abs(tempo["bpm_end"] - clock_bpm) < 0.02 * clock_bpm, tempo
    assert r["events_in"] == 0  # clock is tempo information, never notes in the context


def test_transport_sets_the_tempo(engine_bin: Path, bundle: Path) -> None:
    """A timebase master (a DAW's role) rolls the transport at 84 BPM in 3/4."""
    master = r"""
import sys, time, jack
bpm = 84.0
client = jack.Client("fake-daw", no_start_server=True)
@client.set_timebase_callback
def timebase(state, blocksize, pos, new_pos):
    pos.valid = jack._lib.JackPositionBBT
    pos.beats_per_bar, pos.beat_type, pos.ticks_per_beat = 3.0, 4.0, 1920.0
    pos.beats_per_minute = bpm
    beats = pos.frame / pos.frame_rate * bpm / 60.0
    pos.bar = int(beats // 3) + 1
    pos.beat = int(beats % 3) + 1
    pos.tick = int((beats % 1.0) * 1920)
    pos.bar_start_tick = 0.0
client.activate()
client.transport_start()
print("rolling", flush=True)
time.sleep(float(sys.argv[1]))
client.transport_stop()
client.deactivate()
client.close()
"""
    with JackServer() as server, \
            LiveEngine(engine_bin, bundle, server, inputs=["keys=pass"], bpm=120.0,
                       args=["--tempo-source", "transport"]) as eng:
        daw = subprocess.run([sys.executable, "-c", master, "5"], env=server.env,
                             capture_output=True, text=True, timeout=60)
        assert daw.returncode == 0, daw.stderr
        code, stderr = eng.stop()
    assert code == 0, stderr
    tempo = eng.report()["decoder"]["tempo"]
    assert tempo["transport_readings"] > 100, tempo
    assert abs(tempo["bpm_end"] - 84.0) < 0.05 * 84.0, tempo
    assert tempo["locks"] >= 1


def test_server_shutdown_is_one_line_and_nonzero(engine_bin: Path, bundle: Path) -> None:
    server = JackServer().start()
    try:
        eng = LiveEngine(engine_bin, bundle, server).start()
        time.sleep(0.5)
    finally:
        server.stop()
    code, stderr = eng.wait(timeout=20)
    assert code != 0
    lines = [ln for ln in stderr.strip().splitlines() if ln]
    assert lines[-1].startswith("midicopilot-engine: the JACK server shut down"), stderr
    assert "panicked" not in stderr and "Traceback" not in stderr
    report = json.loads(eng.report_path.read_text())
    assert report["stop_reason"] == "server_shutdown"


# -- `midicopilot play`: the host launches, patches and supervises the engine ---------------------
def _play_preset(tmp_path: Path, bundle: Path) -> Path:
    """A preset whose connections are the musician's ports (so `play` patches it itself)."""
    preset = tmp_path / "live-test.toml"
    preset.write_text(f"""
name = "live-test"
bundle = "{bundle}"

[style]
genre = "CHORALE"
part = "SOPRANO"

[tempo]
bpm = {BPM}

[sampling]
# a random model that listens leaves most instants to the band: unseeded, it played nothing
# in these 8 s in 4 runs of 11 (seeded: none of 7), and the hanging-note check had nothing to see
seed = 1

[context]
size = 256
max_polyphony = 2

[[inputs]]
name = "keys"
channel = "pass"
connect = ["^midicopilot-musician:out$"]

[output]
connect = ["^midicopilot-musician:in$"]
""")
    return preset


def _start_play(preset: Path, server: JackServer, engine_bin: Path, report: Path
                ) -> subprocess.Popen[str]:
    env = {**server.env, "MIDICOPILOT_ENGINE": str(engine_bin)}
    return subprocess.Popen([sys.executable, "-m", "midicopilot.host.cli", "play", str(preset),
                             "--report", str(report)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_connected(musician: Musician, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (musician.client.get_all_connections(musician.out)
                and musician.client.get_all_connections(musician.inp)):
            return
        time.sleep(0.1)
    raise AssertionError("`midicopilot play` did not patch the musician")


def test_play_patches_supervises_and_stops_on_ctrl_c(engine_bin: Path, bundle: Path,
                                                     chorale: Path, tmp_path: Path) -> None:
    # 8 s, as the test above: a listening model may leave the band the first bars
    piece = load_piece(chorale, BPM, leave_out="Soprano").until(8.0)
    report = tmp_path / "report.json"
    with JackServer() as server, Musician(server=server.name) as musician:
        play = _start_play(_play_preset(tmp_path, bundle), server, engine_bin, report)
        try:
            _wait_connected(musician)
            musician.play(piece.messages, lead_in=0.2, tail=0.5)
            play.send_signal(signal.SIGINT)  # Ctrl-C
            out, err = play.communicate(timeout=60)
        finally:
            if play.poll() is None:
                play.kill()
        time.sleep(0.2)
        heard = musician.heard_so_far()
    assert play.returncode == 0, err
    assert "connected midicopilot-musician:out -> midicopilot:in_keys" in out
    assert "connected midicopilot:out -> midicopilot-musician:in" in out
    assert "midicopilot-engine: jack:" in err and "stopped by signal" in err
    r = json.loads(report.read_text())
    assert r["stop_reason"] == "signal" and r["inputs"] == ["in_keys"]
    assert r["events_in"] == 2 * piece.notes
    # (the engine may play before `play` has connected its output, so the musician can miss
    # the first few; nothing it heard is left sounding)
    assert check_notes(heard).hanging == [] and r["events_out"] >= len(heard) > 0


def test_play_reports_a_crash_and_sends_all_notes_off(engine_bin: Path, bundle: Path,
                                                      tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    with JackServer() as server, Musician(server=server.name) as musician:
        play = _start_play(_play_preset(tmp_path, bundle), server, engine_bin, report)
        try:
            _wait_connected(musician)
            time.sleep(2.5)  # the host has noted where the engine's output goes
            children = Path(f"/proc/{play.pid}/task/{play.pid}/children").read_text().split()
            assert len(children) == 1
            engine_pid = int(children[0])
            musician.start_recording()
            os.kill(engine_pid, signal.SIGKILL)  # a crash: no note-offs from the engine
            out, err = play.communicate(timeout=60)
        finally:
            if play.poll() is None:
                play.kill()
        time.sleep(0.2)
        heard = musician.heard_so_far()
    assert play.returncode != 0
    crash = [ln for ln in err.splitlines() if "the engine stopped with signal 9" in ln]
    assert len(crash) == 1, err
    assert "Traceback" not in err
    assert bytes([0xB0, 123, 0]) in [m for _, m in heard]  # all notes off, channel 0
    offs = {m[1] for _, m in heard if m[0] == 0x80}
    assert offs == set(range(128))
    assert {m[0] & 0x0F for _, m in heard} == {0}


# Runs last in this file: in full-suite runs, engines started right after the flood sometimes
# never brought their ports up (cause not found yet; see the stop-8 closing note).
def test_flood_is_counted_not_fatal(engine_bin: Path, bundle: Path) -> None:
    messages = flood(seconds=4.0, per_second=5000)
    notes = [m for _, m in messages if m[0] & 0xF0 in (0x80, 0x90)]
    ccs = [m for _, m in messages if m[0] & 0xF0 == 0xB0]
    with JackServer() as server, \
            LiveEngine(engine_bin, bundle, server, inputs=["flood=pass"], bpm=BPM) as eng, \
            Musician(server=server.name) as musician:
        musician.connect_to_engine(input_port="in_flood")
        rec = musician.play(messages, tail=1.0)
        assert eng.alive(), eng.stderr()
        code, stderr = eng.stop(signal.SIGTERM)
        time.sleep(0.3)
        heard = musician.heard_so_far()
    assert code == 0, stderr
    assert len(rec.played) == len(messages)
    r = eng.report()
    # JACK itself delivers everything unless a cycle was lost (an xrun of the loaded test box)
    assert r["received"] == len(messages) or r["xruns"] > 0, r
    assert r["received"] >= 0.95 * len(messages)
    # every message received is accounted for: passed on, merged, unmatched, dropped or filtered
    accounted = (r["events_in"] + r["merged"] + r["unmatched_offs"] + r["filtered"]
                 + r["dropped"]["input_ring_full"] + r["clock_in"])
    assert accounted == r["received"], r
    assert r["filtered"] <= len(ccs) and r["events_in"] <= len(notes)
    assert r["filtered"] >= 0.95 * len(ccs)
    assert r["merged"] > 0 and r["unmatched_offs"] > 0  # the flood re-strikes and mis-releases
    # the callback kept running through it and never allocated
    seconds = r["seconds"]
    expected_cycles = seconds * r["sample_rate"] / r["buffer_frames"]
    assert r["callback"]["cycles"] > 0.5 * expected_cycles, r["callback"]
    assert r["callback"]["allocations"] == 0
    out = check_notes(heard)
    assert out.channels <= {0} and out.hanging == [] and out.unmatched_offs == 0
