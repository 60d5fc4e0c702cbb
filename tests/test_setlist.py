"""Set lists and switching songs mid-set (host/setlist.py, host/player.py,
engine/src/live/{control,switch}.rs).

The first tests read set lists and check their problems (no JACK). The live ones run the real
thing: `midicopilot play --set-list` on a real dummy JACK server (tests/jackserver.py), the engine
with small random bundles (tests/engine_fixtures.py), and a JACK-Client musician
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

from midicopilot.host import setlist as S
from midicopilot.host.engine import switch_command

BPM = 120.0


def _preset(folder: Path, name: str, bundle: Path | str, *, genre: str = "CHORALE",
            part: str = "SOPRANO", bpm: float = BPM, extra: str = "",
            listener: str = "midicopilot-musician") -> Path:
    """A preset whose connections are the musician's ports (so `play` patches it itself): the
    musician plays into the engine, `listener` hears it."""
    path = folder / f"{name}.toml"
    path.write_text(f"""
name = "{name}"
bundle = "{bundle}"

[style]
genre = "{genre}"
part = "{part}"

[tempo]
bpm = {bpm}

[context]
size = 256
max_polyphony = 3

[[inputs]]
name = "keys"
channel = "pass"
connect = ["^midicopilot-musician:out$"]

[output]
connect = ["^{listener}:in$"]
{extra}""")
    return path


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
         stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "midicopilot.host.cli", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=stdin)


def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


# -- reading set lists (no JACK) -----------------------------------------------------------------
@pytest.fixture
def fake_bundle(tmp_path: Path) -> Path:
    """A folder that passes the host's bundle check (the engine never loads it here)."""
    b = tmp_path / "bundle"
    b.mkdir()
    for f in ("model.safetensors", "config.json", "tokenizer.json"):
        (b / f).write_text("x")
    (b / "midicopilot.json").write_text(json.dumps(
        {"meta_tokens": ["[GENRE_CHORALE]", "[GENRE_BLUES]", "[PART_SOPRANO]", "[PART_BASS]"]}))
    return b


def test_a_set_list_reads_songs_programs_keys_and_control(tmp_path: Path,
                                                          fake_bundle: Path) -> None:
    (tmp_path / "p").mkdir()
    _preset(tmp_path / "p", "alto", fake_bundle, extra='\n[control]\nconnect = ["^Pads"]\n')
    _preset(tmp_path / "p", "bass", fake_bundle, part="BASS")
    sl = tmp_path / "gig.toml"
    sl.write_text("""
[control]
connect = ["MPK.*capture", "^Pads"]

[[song]]
preset = "p/alto.toml"          # relative to the set list's folder

[[song]]
preset = "p/bass.toml"
name = "closer"
program = 7
key = "c"

[[song]]
preset = "p/alto.toml"
name = "alto-again"
""")
    s = S.load_set_list(sl)
    assert s.names == ["alto", "closer", "alto-again"]
    assert s.songs[1].preset.style.part == "BASS" and s.songs[1].program == 7
    # explicit programs and keys replace the positional defaults
    assert s.programs() == {7: 1}
    assert s.keys() == {"c": 1}
    assert s.control_patterns() == ["MPK.*capture", "^Pads"]
    assert S.check_set(s) == []
    # a set of presets from the command line: keys 1, 2, … and programs 0, 1, …
    plain = S.set_from_presets([str(tmp_path / "p" / "alto.toml"),
                                str(tmp_path / "p" / "bass.toml")])
    assert plain.keys() == {"1": 0, "2": 1} and plain.programs() == {0: 0, 1: 1}


@pytest.mark.parametrize(("text", "want"), [
    ('[[song]]\npreset = "A"\n[[song]]\npreset = "A"\n',
     "song[1]: the song name 'alto' is used twice (also song[0])"),
    ('[[song]]\npreset = "A"\nprogram = 3\n[[song]]\npreset = "B"\nprogram = 3\n',
     "song[1].program: program 3 also selects song[0] (alto)"),
    ('[[song]]\npreset = "A"\nkey = "n"\n', "song[0].key: 'n' is taken"),
    ('[[song]]\npreset = "A"\nkey = "ab"\n', "song[0].key: 'ab' is not one printable character"),
    ('[[song]]\npreset = "A"\nprogram = 128\n', "song[0].program: 128 is not a MIDI program"),
    ('[[song]]\npreset = "A"\nprogramm = 1\n', "song[0].programm: unknown key (did you mean "
                                               "'program'?)"),
    ('[[songs]]\npreset = "A"\n', "songs: unknown key (did you mean 'song'?)"),
    ('[control]\nconnect = ["MPK("]\n[[song]]\npreset = "A"\n',
     "control.connect: bad regular expression 'MPK('"),
    ('title = "x"\n', "title: unknown key"),
    ('[control]\n', "song: no songs"),
    ('[[song]]\nname = "x"\n', "song[0].preset: missing"),
    ('[[song]]\npreset = "nosuch/x.toml"\n', "song[0].preset: nosuch/x.toml: no such file"),
    ('[[song]\n', "TOML syntax error"),
])
def test_bad_set_lists_are_one_line_and_exit_2(tmp_path: Path, fake_bundle: Path, text: str,
                                               want: str) -> None:
    a = _preset(tmp_path, "alto", fake_bundle)
    b = _preset(tmp_path, "bass", fake_bundle, part="BASS")
    sl = tmp_path / "gig.toml"
    sl.write_text(text.replace('"A"', f'"{a}"').replace('"B"', f'"{b}"'))
    with pytest.raises(S.SetListError) as e:
        S.load_set_list(sl)
    assert want in str(e.value) and "\n" not in str(e.value)
    out = _cli("play", "--set-list", str(sl))
    assert out.returncode == 2
    line = _one_error_line(out)
    assert want in line, line


def test_duplicate_presets_on_the_command_line(tmp_path: Path, fake_bundle: Path) -> None:
    a = _preset(tmp_path, "alto", fake_bundle)
    out = _cli("play", str(a), str(a))
    assert out.returncode == 2
    assert "play: preset 2 (" in _one_error_line(out)
    assert "the song name 'alto' is used twice" in out.stderr


def test_missing_bundle_and_mixed_sets_are_refused_before_anything_starts(
        tmp_path: Path, fake_bundle: Path) -> None:
    ok = _preset(tmp_path, "ok", fake_bundle)
    gone = _preset(tmp_path, "gone", tmp_path / "no-such-bundle")
    out = _cli("play", str(ok), str(gone))
    assert out.returncode == 2
    line = _one_error_line(out)
    assert line == (f"Error: {gone}: bundle: folder {tmp_path / 'no-such-bundle'} does not "
                    "exist (export a bundle there, or build the demo bundle)")
    alsa = _preset(tmp_path, "alsa", fake_bundle)
    alsa.write_text('backend = "alsa"\n' + alsa.read_text())
    bad_style = _preset(tmp_path, "jazz", fake_bundle, genre="JAZZ")
    problems = S.check_set(S.set_from_presets([str(ok), str(alsa), str(bad_style)]))
    assert any("backend: 'alsa' differs from 'jack' (ok): one engine plays the whole set" in p
               for p in problems), problems
    assert any("style.genre: [GENRE_JAZZ] is not a metadata token" in p for p in problems)
    # one input name with two channel modes cannot share the engine's port
    other = _preset(tmp_path, "other", fake_bundle)
    other.write_text(other.read_text().replace('channel = "pass"', "channel = 3"))
    problems = S.check_set(S.set_from_presets([str(ok), str(other)]))
    assert problems == [f"{other}: inputs (keys).channel: 3 differs from pass (ok): the engine's "
                        "ports are made once for the set"]


def test_switch_without_a_running_play_is_one_line(tmp_path: Path) -> None:
    sock = tmp_path / "none.sock"
    out = _cli("switch", "song2", "--socket", str(sock))
    assert out.returncode == 1
    assert _one_error_line(out) == (f"Error: no `midicopilot play` is running (no socket at "
                                    f"{sock})")
    out = _cli("switch", "--socket", str(sock))
    assert out.returncode == 2 and "give a song NAME" in out.stderr


def test_the_switch_command_carries_every_session_setting(tmp_path: Path,
                                                          fake_bundle: Path) -> None:
    preset = S.load_preset(_preset(tmp_path, "a", fake_bundle, bpm=96))
    cmd = switch_command("a", preset)
    assert cmd["cmd"] == "switch" and cmd["name"] == "a"
    assert cmd["bundle"] == str(fake_bundle.resolve()) and cmd["bpm"] == 96.0
    # every field the engine's parser knows (engine/src/live/control.rs SwitchRequest)
    assert set(cmd) == {"cmd", "name", "bundle", "genre", "part", "bpm", "temperature", "top_p",
                        "seed", "context", "lookahead_ticks", "release_horizon_ms",
                        "max_note_ticks", "max_polyphony", "weights"}
    assert cmd["seed"] is None  # the preset sets none: the engine's default


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
    _preset(presets, "song1", bundles["a"], listener=ear)
    _preset(presets, "song2", bundles["a"], genre="BLUES", part="BASS", bpm=100, listener=ear)
    _preset(presets, "song3", bundles["b"], part="BASS", listener=ear)
    _preset(presets, "broken", bundles["broken"], listener=ear)
    doomed = tmp_path / "doomed-bundle"
    shutil.copytree(bundles["a"], doomed)
    _preset(presets, "gone", doomed, listener=ear)
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

            def switch(name: str, at: float, t0: float) -> None:
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                if name == "gone":
                    shutil.rmtree(doomed)  # its bundle disappears mid-set
                results[name] = _cli("switch", name, env=env, timeout=60)

            t0 = time.monotonic() + 0.5  # play()'s lead-in
            plan = [("song2", 2.5), ("broken", 7.0), ("gone", 8.0), ("song1", 8.8)]
            threads = [threading.Thread(target=lambda n=n, a=a: switch(n, a, t0))
                       for n, a in plan]
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
    broken = _one_error_line(results["broken"])
    assert broken.startswith("Error: broken: ") and "still playing song3" in broken
    assert "model bundle" in broken or "safetensors" in broken, broken
    gone = _one_error_line(results["gone"])
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

    s1 = _preset(tmp_path, "one", bundles["a"])
    s2 = _preset(tmp_path, "two", bundles["a"], part="BASS", bpm=90)
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


def test_play_help_and_switch_are_registered() -> None:
    out = _cli("--help")
    assert out.returncode == 0 and "switch" in out.stdout and "play" in out.stdout
    out = _cli("play", "--help")
    assert "--set-list" in out.stdout and "--backend" in out.stdout
