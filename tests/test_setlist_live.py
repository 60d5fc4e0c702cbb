"""Set lists live: `midicopilot play --set-list` on a real dummy JACK server (tests/jackserver.py),
the engine with small random bundles (tests/engine_fixtures.py), and a JACK-Client musician
(tests/jack_harness.py) playing a real Bach chorale from music21 into it while the songs are
switched by `midicopilot switch`, by MIDI program changes on the host's control input and by
keys on a terminal.
"""
from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from setlist_support import BPM, one_error_line, run_cli, write_preset


# -- live: a set on a real JACK server ----------------------------------------------------------
@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from engine_fixtures import make_random_bundle

    d = tmp_path_factory.mktemp("setlist")
    a = make_random_bundle(d / "a", vocab_size=512, hidden_size=64, layers=2, heads=4,
                           kv_heads=2, seed=3)
    b = make_random_bundle(d / "b", vocab_size=512, hidden_size=64, layers=2, heads=4,
                           kv_heads=2, seed=5)
    # passes the host's check (every file is there), fails to load in the engine
    broken = d / "broken"
    shutil.copytree(a, broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 64)
    return {"a": a, "b": b, "broken": broken}


@pytest.fixture(scope="module")
def chorale() -> Path:
    from midicopilot.train.music21_midi import bach_chorales

    return bach_chorales(limit=1)[0]


def _env(tmp_path: Path, server: object, engine_bin: Path) -> dict[str, str]:
    run = tmp_path / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    return {**server.env, "MIDICOPILOT_ENGINE": str(engine_bin),  # type: ignore[attr-defined]
            "XDG_RUNTIME_DIR": str(run)}


def _start_play(args: list[str], env: dict[str, str], tmp_path: Path, *,
                stdin: int | None = subprocess.DEVNULL) -> tuple[subprocess.Popen[str], Path, Path]:
    out, err = tmp_path / "play.out", tmp_path / "play.err"
    proc = subprocess.Popen([sys.executable, "-m", "midicopilot.host.cli", "play", *args],
                            env=env, stdout=open(out, "w"), stderr=open(err, "w"),  # noqa: SIM115
                            stdin=stdin, text=True, start_new_session=True)
    return proc, out, err


def _wait_for(predicate, what: str, timeout: float = 60.0, proc=None, err: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"`play` exited with {proc.returncode} while waiting for {what}:"
                                 f" {err.read_text() if err else ''}")
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout} s: {err.read_text() if err else ''}")


def _notes(heard: list[tuple[int, bytes]]) -> list[tuple[int, int | None, int]]:
    """Channel-0 notes as (on frame, off frame or None, pitch)."""
    open_: dict[int, int] = {}
    out = []
    for frame, m in heard:
        if len(m) < 3 or m[0] & 0x0F != 0:
            continue
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            open_[m[1]] = frame
        elif m[0] & 0xF0 in (0x80, 0x90) and m[1] in open_:
            out.append((open_.pop(m[1]), frame, m[1]))
    out += [(f, None, p) for p, f in open_.items()]
    return out


def _orphan_offs(heard: list[tuple[int, bytes]]) -> list[int]:
    """Frames of channel-0 note-offs whose note-on was not heard."""
    sounding: set[int] = set()
    out = []
    for frame, m in heard:
        if len(m) < 3 or m[0] & 0x0F != 0 or m[0] & 0xF0 not in (0x80, 0x90):
            continue
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            sounding.add(m[1])
        elif m[1] in sounding:
            sounding.discard(m[1])
        else:
            out.append(frame)
    return out


@pytest.mark.jack
def test_switching_a_set_under_load_leaves_no_hanging_note(
        engine_bin: Path, bundles: dict[str, Path], chorale: Path, tmp_path: Path) -> None:
    from jack_harness import Musician, check_notes, load_piece
    from jackserver import JackServer

    presets = tmp_path / "presets"
    presets.mkdir()
    # The model is heard by a client of its own: were the musician to both play into the engine
    # and hear it, the JACK graph would be a loop and JACK would delay one of its connections by
    # a period, so heard frames would not be the engine's frames.
    ear = "midicopilot-listener"
    # seeded: a random model that listens leaves most instants to the band, and unseeded it
    # sometimes played nothing in the whole set (1 run of 20)
    seeded = "\n[sampling]\nseed = 1\n"
    write_preset(presets, "song1", bundles["a"], listener=ear, extra=seeded)
    write_preset(presets, "song2", bundles["a"], genre="BLUES", part="BASS", bpm=100, listener=ear,
                 extra=seeded)
    write_preset(presets, "song3", bundles["b"], part="BASS", listener=ear, extra=seeded)
    write_preset(presets, "broken", bundles["broken"], listener=ear)
    doomed = tmp_path / "doomed-bundle"
    shutil.copytree(bundles["a"], doomed)
    write_preset(presets, "gone", doomed, listener=ear)
    sl = tmp_path / "set.toml"
    sl.write_text("""
[control]
connect = ["^midicopilot-musician:out$"]
""" + "".join(f'\n[[song]]\npreset = "presets/{n}.toml"\nprogram = {10 + i}\n'
              for i, n in enumerate(["song1", "song2", "song3", "broken", "gone"])))
    report = tmp_path / "report.json"
    piece = load_piece(chorale, BPM, leave_out="Soprano").until(11.0)
    # a program change in the piece: 12 selects song3 (another bundle), 5 s in
    messages = sorted([*piece.messages, (5.0, bytes([0xC1, 12]))], key=lambda m: m[0])
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    with JackServer(period=1024) as server, Musician(server=server.name) as musician, \
            Musician(ear, server=server.name) as listener:
        env = _env(tmp_path, server, engine_bin)
        play, out_path, err_path = _start_play(["--set-list", str(sl), "--report", str(report)],
                                               env, tmp_path)
        try:
            _wait_for(lambda: musician.client.get_all_connections(musician.out)
                      and listener.client.get_all_connections(listener.inp)
                      and "midicopilot-host:control" in out_path.read_text(),
                      "the musician patched", proc=play, err=err_path)

            def switch(name: str, at: float, t0: float, until: float | None) -> None:
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                # A random model rests often enough that switches at fixed times sometimes find
                # no note of it sounding (measured: all three did in 1 run of 12), and then the
                # switch ends nothing: up to `until`, wait for one of its notes to sound.
                while until is not None and time.monotonic() < t0 + until and not any(
                        off is None for _, off, _ in _notes(listener.heard_so_far())):
                    time.sleep(0.005)
                if name == "gone":
                    shutil.rmtree(doomed)  # its bundle disappears mid-set
                results[name] = run_cli("switch", name, env=env, timeout=60)

            t0 = time.monotonic() + 0.5  # play()'s lead-in
            # song2 before the piece's program change (5 s), song1 after the failing two
            plan = [("song2", 2.5, 4.5), ("broken", 7.0, None), ("gone", 8.0, None),
                    ("song1", 8.8, 10.5)]
            threads = [threading.Thread(target=lambda n=n, a=a, u=u: switch(n, a, t0, u))
                       for n, a, u in plan]
            for t in threads:
                t.start()
            rec = musician.play(messages, lead_in=0.5, tail=1.5)
            for t in threads:
                t.join(timeout=60)
            # the JACK connections are all still there after four switches
            engine_in = [p.name for p in musician.client.get_all_connections(musician.out)]
            engine_out = [p.name for p in listener.client.get_all_connections(listener.inp)]
            assert "midicopilot:in_keys" in engine_in and "midicopilot-host:control" in engine_in
            assert engine_out == ["midicopilot:out"]
            play.send_signal(signal.SIGINT)
            play.wait(timeout=60)
        finally:
            if play.poll() is None:
                play.kill()
        time.sleep(0.2)
        heard = listener.heard_so_far()  # everything since the listener opened
    err = err_path.read_text()
    assert play.returncode == 0, err
    assert "Traceback" not in err and "panicked" not in err

    # each switch said what happened, in one line
    assert results["song2"].returncode == 0, results["song2"].stderr
    assert results["song2"].stdout.startswith("switched to song2 ([GENRE_BLUES] [PART_BASS], "
                                              "100 BPM, same bundle"), results["song2"].stdout
    assert results["song1"].returncode == 0, results["song1"].stderr
    assert "bundle loaded" in results["song1"].stdout  # back from song3's bundle
    broken = one_error_line(results["broken"])
    assert broken.startswith("Error: broken: ") and "still playing song3" in broken
    assert "model bundle" in broken or "safetensors" in broken, broken
    gone = one_error_line(results["gone"])
    assert f"bundle: folder {doomed} does not exist" in gone and "still playing song3" in gone
    assert "switched to song3 ([GENRE_CHORALE] [PART_BASS], 120 BPM, bundle loaded" in err
    assert "[program 12]" in err

    # the engine reports each switch it made, and the failure it had
    r = json.loads(report.read_text())
    control = r["decoder"]["control"]
    switches = control["switches"]
    assert [s["name"] for s in switches] == ["song2", "song3", "song1"], control
    assert [s["bundle_loaded"] for s in switches] == [False, True, True]
    assert [s["header"] for s in switches] == [["[GENRE_BLUES]", "[PART_BASS]"],
                                               ["[GENRE_CHORALE]", "[PART_BASS]"],
                                               ["[GENRE_CHORALE]", "[PART_SOPRANO]"]]
    assert [s["bpm"] for s in switches] == [100.0, 120.0, 120.0]
    assert len(control["errors"]) == 1 and control["errors"][0].startswith("broken: ")
    assert r["stop_reason"] == "signal" and r["seconds"] > 10  # one engine, the whole set
    # every note the musician played arrived (JACK loses messages only in an xrun of the
    # loaded test box), and the program change was filtered out of the model's input
    counts = {k: r[k] for k in ("received", "events_in", "filtered", "merged", "unmatched_offs",
                                "xruns")}
    assert r["received"] == len(messages) or r["xruns"] > 0, counts
    assert r["events_in"] + r["filtered"] + r["merged"] + r["unmatched_offs"] == r["received"]
    assert r["events_in"] == 2 * piece.notes or r["xruns"] > 0, counts

    # no hanging note on channel 0: every note-on has its note-off ...
    played = check_notes(rec.played)
    assert played.ons == piece.notes and not played.hanging
    out = check_notes(heard)
    assert out.channels <= {0} and out.ons > 0
    assert out.hanging == [] and out.restruck == 0
    # (the engine played before `play` had patched the listener: a note-off whose note-on was
    # not heard can only come from then)
    orphans = _orphan_offs(heard)
    assert all(f < switches[0]["requested_frame"] for f in orphans), orphans
    assert out.ons == out.offs - len(orphans)
    assert len(heard) <= r["events_out"]
    # ... and no note of the old song sounds across a switch: the old song's note-offs all go
    # out at or before the new song's first tick
    notes = _notes(heard)
    # (the switches did find model notes sounding: three voices of a random model hardly rest)
    assert sum(s["stop_offs"] for s in switches) > 0, switches
    for s in switches:
        across = [(on, off, p) for on, off, p in notes if on < s["frame"] < (off or 0)]
        assert across == [], (s["name"], s["frame"], across)


@pytest.mark.jack
def test_keys_on_a_terminal_switch_songs(engine_bin: Path, bundles: dict[str, Path],
                                         tmp_path: Path) -> None:
    from jack_harness import Musician, check_notes
    from jackserver import JackServer

    s1 = write_preset(tmp_path, "one", bundles["a"])
    s2 = write_preset(tmp_path, "two", bundles["a"], part="BASS", bpm=90)
    report = tmp_path / "report.json"
    master, slave = pty.openpty()
    with JackServer() as server, Musician(server=server.name) as musician:
        env = _env(tmp_path, server, engine_bin)
        play, out_path, err_path = _start_play([str(s1), str(s2), "--report", str(report)], env,
                                               tmp_path, stdin=slave)
        os.close(slave)
        try:
            _wait_for(lambda: "set: one (key 1" in err_path.read_text(),
                      "the set's keys", proc=play, err=err_path)
            musician.start_recording()
            for key, want in (("2", "switched to two"), ("p", "switched to one"),
                              ("n", "switched to two")):
                n = err_path.read_text().count(want)
                os.write(master, key.encode())
                _wait_for(lambda w=want, n=n: err_path.read_text().count(w) > n,
                          f"'{want}' after key {key}", proc=play, err=err_path)
                time.sleep(0.5)
            play.send_signal(signal.SIGINT)
            play.wait(timeout=60)
        finally:
            if play.poll() is None:
                play.kill()
            os.close(master)
        heard = musician.heard_so_far()
    err = err_path.read_text()
    assert play.returncode == 0, err
    assert "[key 2]" in err and "[key p]" in err and "[key n]" in err
    r = json.loads(report.read_text())
    assert [s["name"] for s in r["decoder"]["control"]["switches"]] == ["two", "one", "two"]
    assert check_notes(heard).hanging == []
