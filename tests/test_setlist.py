"""Set lists (host/setlist.py, host/player.py): reading them, their problems, the switch
command's settings, without JACK. The live set-list tests are in test_setlist_live.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from setlist_support import one_error_line, run_cli, write_preset

from midicopilot.host import setlist as S
from midicopilot.host.engine import switch_command


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
    write_preset(tmp_path / "p", "alto", fake_bundle, extra='\n[control]\nconnect = ["^Pads"]\n')
    write_preset(tmp_path / "p", "bass", fake_bundle, part="BASS")
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
    a = write_preset(tmp_path, "alto", fake_bundle)
    b = write_preset(tmp_path, "bass", fake_bundle, part="BASS")
    sl = tmp_path / "gig.toml"
    sl.write_text(text.replace('"A"', f'"{a}"').replace('"B"', f'"{b}"'))
    with pytest.raises(S.SetListError) as e:
        S.load_set_list(sl)
    assert want in str(e.value) and "\n" not in str(e.value)
    out = run_cli("play", "--set-list", str(sl))
    assert out.returncode == 2
    line = one_error_line(out)
    assert want in line, line


def test_duplicate_presets_on_the_command_line(tmp_path: Path, fake_bundle: Path) -> None:
    a = write_preset(tmp_path, "alto", fake_bundle)
    out = run_cli("play", str(a), str(a))
    assert out.returncode == 2
    assert "play: preset 2 (" in one_error_line(out)
    assert "the song name 'alto' is used twice" in out.stderr


def test_missing_bundle_and_mixed_sets_are_refused_before_anything_starts(
        tmp_path: Path, fake_bundle: Path) -> None:
    ok = write_preset(tmp_path, "ok", fake_bundle)
    gone = write_preset(tmp_path, "gone", tmp_path / "no-such-bundle")
    out = run_cli("play", str(ok), str(gone))
    assert out.returncode == 2
    line = one_error_line(out)
    assert line == (f"Error: {gone}: bundle: folder {tmp_path / 'no-such-bundle'} does not "
                    "exist (export a bundle there, or build the demo bundle)")
    alsa = write_preset(tmp_path, "alsa", fake_bundle)
    alsa.write_text('backend = "alsa"\n' + alsa.read_text())
    bad_style = write_preset(tmp_path, "jazz", fake_bundle, genre="JAZZ")
    problems = S.check_set(S.set_from_presets([str(ok), str(alsa), str(bad_style)]))
    assert any("backend: 'alsa' differs from 'jack' (ok): one engine plays the whole set" in p
               for p in problems), problems
    assert any("style.genre: [GENRE_JAZZ] is not a metadata token" in p for p in problems)
    # one input name with two channel modes cannot share the engine's port
    other = write_preset(tmp_path, "other", fake_bundle)
    other.write_text(other.read_text().replace('channel = "pass"', "channel = 3"))
    problems = S.check_set(S.set_from_presets([str(ok), str(other)]))
    assert problems == [f"{other}: inputs (keys).channel: 3 differs from pass (ok): the engine's "
                        "ports are made once for the set"]


def test_switch_without_a_running_play_is_one_line(tmp_path: Path) -> None:
    sock = tmp_path / "none.sock"
    out = run_cli("switch", "song2", "--socket", str(sock))
    assert out.returncode == 1
    assert one_error_line(out) == (f"Error: no `midicopilot play` is running (no socket at "
                                    f"{sock})")
    out = run_cli("switch", "--socket", str(sock))
    assert out.returncode == 2 and "give a song NAME" in out.stderr


def test_the_switch_command_carries_every_session_setting(tmp_path: Path,
                                                          fake_bundle: Path) -> None:
    preset = S.load_preset(write_preset(tmp_path, "a", fake_bundle, bpm=96))
    cmd = switch_command("a", preset)
    assert cmd["cmd"] == "switch" and cmd["name"] == "a"
    assert cmd["bundle"] == str(fake_bundle.resolve()) and cmd["bpm"] == 96.0
    # every field the engine's parser knows (engine/src/live/control.rs SwitchRequest)
    assert set(cmd) == {"cmd", "name", "bundle", "genre", "part", "bpm", "temperature", "top_p",
                        "seed", "context", "lookahead_ticks", "release_horizon_ms",
                        "max_note_ticks", "max_polyphony", "weights"}
    assert cmd["seed"] is None  # the preset sets none: the engine's default


def test_play_help_and_switch_are_registered() -> None:
    out = run_cli("--help")
    assert out.returncode == 0 and "switch" in out.stdout and "play" in out.stdout
    out = run_cli("play", "--help")
    assert "--set-list" in out.stdout and "--backend" in out.stdout
