"""Presets: the schema and its one-line errors, the shipped presets, the folders, the bundle checks
against a real (random-weights) bundle, and the engine command line a preset makes."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from midicopilot.host import engine
from midicopilot.host.presets import (
    PresetError,
    check_preset,
    engine_args,
    find_presets,
    load_preset,
    project_presets_dir,
    resolve_preset,
)

ROOT = Path(__file__).resolve().parent.parent
GOOD = """
name = "song"
bundle = "bundle"
backend = "jack"

[style]
genre = "CHORALE"
part = "SOPRANO"

[tempo]
source = "preset"
bpm = 100.0

[sampling]
temperature = 0.9
top_p = 0.95
seed = 7

[context]
size = 512
lookahead_ticks = 24
release_horizon_ms = 40.0
max_note_ticks = 192
max_polyphony = 4

[[inputs]]
name = "keys"
channel = "pass"
connect = ["a2j:.*Keystation.*capture"]

[[inputs]]
name = "pads"
channel = 9
connect = "MPC"

[output]
connect = ["fluidsynth:midi.*", "a2j:.*Juno.*playback"]
"""


def write(tmp: Path, text: str, name: str = "song.toml") -> Path:
    p = tmp / name
    p.write_text(textwrap.dedent(text))
    return p


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "midicopilot.host.cli", *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle folder (random weights) as the engine's tests make it: its midicopilot.json
    knows [GENRE_CHORALE] [GENRE_BLUES] [PART_SOPRANO] [PART_BASS]."""
    sys.path.insert(0, str(ROOT / "tests"))
    from engine_fixtures import make_random_bundle

    return make_random_bundle(tmp_path_factory.mktemp("b") / "bundle", vocab_size=300,
                              hidden_size=32, layers=1, heads=2, kv_heads=1)


# -- the schema -------------------------------------------------------------------------------
def test_full_preset_loads_typed(tmp_path: Path) -> None:
    p = load_preset(write(tmp_path, GOOD))
    assert p.name == "song"
    assert p.bundle == tmp_path / "bundle"  # relative to the preset file
    assert p.style.tokens == ["[GENRE_CHORALE]", "[PART_SOPRANO]"]
    assert (p.tempo.source, p.tempo.bpm) == ("preset", 100.0)
    assert (p.sampling.temperature, p.sampling.top_p, p.sampling.seed) == (0.9, 0.95, 7)
    assert (p.context.size, p.context.lookahead_ticks, p.context.max_polyphony) == (512, 24, 4)
    assert [(i.name, i.channel, i.connect) for i in p.inputs] == [
        ("keys", None, ("a2j:.*Keystation.*capture",)), ("pads", 9, ("MPC",))]
    assert p.input_ports == ["in_keys", "in_pads"]
    assert p.output.connect == ("fluidsynth:midi.*", "a2j:.*Juno.*playback")


def test_minimal_preset_gets_defaults_and_name_from_stem(tmp_path: Path) -> None:
    p = load_preset(write(tmp_path, 'bundle = "/srv/b"\n', "my-song.toml"))
    assert p.name == "my-song"
    assert p.bundle == Path("/srv/b")
    assert p.backend == "jack" and p.tempo.bpm == 120.0 and p.sampling.seed is None
    assert p.style.tokens == [] and p.input_ports == ["in"]


def test_bundle_path_expands_home_and_variables(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MCP_BUNDLES", "/data/bundles")
    assert load_preset(write(tmp_path, 'bundle = "$MCP_BUNDLES/x"\n')).bundle == \
        Path("/data/bundles/x")
    assert load_preset(write(tmp_path, 'bundle = "~/b"\n')).bundle == Path.home() / "b"


@pytest.mark.parametrize(("edit", "key", "problem"), [
    (("temperature = 0.9", "temprature = 0.9"), "sampling.temprature",
     "unknown key (did you mean 'temperature'?)"),
    (("[context]", "[contxt]"), "contxt", "unknown key (did you mean 'context'?)"),
    (('backend = "jack"', 'backend = "jak"'), "backend", "(did you mean 'jack'?)"),
    (('backend = "jack"', 'bpm = 90'), "bpm", "unknown key (did you mean 'tempo.bpm'?)"),
    (("bpm = 100.0", "bpm = 10"), "tempo.bpm", "out of range"),
    (("bpm = 100.0", 'bpm = "fast"'), "tempo.bpm", "expected a number, got a string"),
    (('source = "preset"', 'source = "midiclock"'), "tempo.source", "did you mean 'midi_clock'"),
    (("top_p = 0.95", "top_p = 0"), "sampling.top_p", "out of range (0, 1]"),
    (("seed = 7", "seed = -1"), "sampling.seed", "out of range"),
    (("size = 512", "size = 512.5"), "context.size", "expected an integer, got a number"),
    (("max_polyphony = 4", "max_polyphony = true"), "context.max_polyphony",
     "expected an integer, got a boolean"),
    (('genre = "CHORALE"', 'genre = "rock & roll"'), "style.genre", "cannot name a [GENRE_…]"),
    (("channel = 9", "channel = 0"), "inputs[1].channel", "0 is the model's"),
    (('channel = "pass"', 'chanel = "pass"'), "inputs[0].chanel", "did you mean 'channel'?"),
    (('name = "pads"', 'name = "keys"'), "inputs[1].name", "'keys' is used twice"),
    (('connect = "MPC"', 'connect = "MPC("'), "inputs[1].connect", "bad regular expression"),
    (('bundle = "bundle"', 'bundle = "$MCP_SURELY_UNSET_VAR/b"'), "bundle",
     "$MCP_SURELY_UNSET_VAR is not set"),
    (('bundle = "bundle"', ''), "bundle", "missing"),
])
def test_bad_value_is_one_line_naming_file_and_key(tmp_path: Path, edit: tuple[str, str],
                                                   key: str, problem: str) -> None:
    assert edit[0] in GOOD
    path = write(tmp_path, GOOD.replace(edit[0], edit[1], 1))
    with pytest.raises(PresetError) as err:
        load_preset(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {key}: "), msg
    assert problem in msg


def test_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("bpm = 100.0", "bpm = = 100"))
    with pytest.raises(PresetError, match=r"TOML syntax error: .* \(at line 12, column 7\)") as err:
        load_preset(path)
    assert "\n" not in str(err.value)


def test_check_cli_misspelt_key_exact_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "presets").mkdir()
    write(tmp_path / "presets", GOOD.replace("temperature = 0.9", "temprature = 0.9"))
    out = cli("presets", "check", "presets/song.toml", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == ("presets/song.toml: sampling.temprature: unknown key "
                          "(did you mean 'temperature'?)\n")
    assert "Traceback" not in out.stdout + out.stderr


def test_check_cli_missing_file_one_line(tmp_path: Path) -> None:
    out = cli("presets", "check", str(tmp_path / "nope.toml"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"{tmp_path / 'nope.toml'}: no such file"]


# -- bundle checks ----------------------------------------------------------------------------
def test_missing_bundle_parses_but_check_reports_it(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    preset = load_preset(path)  # the schema is fine: a bundle may be built later
    problems = check_preset(preset)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: bundle: folder {tmp_path / 'bundle'} does not exist")
    out = cli("presets", "check", str(path))
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_style_tokens_checked_against_real_bundle(tmp_path: Path, bundle: Path) -> None:
    ok = write(tmp_path, GOOD.replace('bundle = "bundle"', f'bundle = "{bundle}"'), "ok.toml")
    assert check_preset(load_preset(ok)) == []
    out = cli("presets", "check", str(ok))
    assert out.returncode == 0, out.stderr
    assert "ok (song: [GENRE_CHORALE] [PART_SOPRANO]" in out.stdout

    alto = write(tmp_path, GOOD.replace('bundle = "bundle"', f'bundle = "{bundle}"')
                 .replace('part = "SOPRANO"', 'part = "ALTO"'), "alto.toml")
    problems = check_preset(load_preset(alto))
    assert problems == [f"{alto}: style.part: [PART_ALTO] is not a metadata token of the bundle "
                        "(it knows [PART_SOPRANO], [PART_BASS])"]
    out = cli("presets", "check", str(alto))
    assert out.returncode == 2 and out.stderr == problems[0] + "\n"


def test_folder_without_midicopilot_json_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "bundle").mkdir()
    problems = check_preset(load_preset(write(tmp_path, GOOD)))
    assert len(problems) == 1 and "not a model bundle (no midicopilot.json)" in problems[0]


# -- shipped presets and folders --------------------------------------------------------------
def test_shipped_presets_load_and_cover_the_chorale_parts() -> None:
    folder = project_presets_dir()
    assert folder == ROOT / "presets"
    loaded = {p.stem: load_preset(p) for p in sorted(folder.glob("*.toml"))}
    assert {"demo", "chorale-alto", "chorale-tenor", "chorale-bass"} <= set(loaded)
    demo = loaded["demo"]
    assert demo.bundle.resolve() == ROOT / "bundles" / "demo"
    assert (demo.bundle / "midicopilot.json").exists()  # shipped
    assert (demo.style.genre, demo.style.part, demo.tempo.bpm) == ("CHORALE", "SOPRANO", 100.0)
    parts = {p.style.part for p in loaded.values() if p.style.genre == "CHORALE"}
    assert {"SOPRANO", "ALTO", "TENOR", "BASS"} <= parts
    for p in loaded.values():
        assert p.bundle == demo.bundle


def test_list_shows_both_folders_and_user_shadows_project(tmp_path: Path, bundle: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    user = tmp_path / "cfg" / "midicopilot" / "presets"
    user.mkdir(parents=True)
    (user / "gig.toml").write_text(f'bundle = "{bundle}"\n[style]\ngenre = "BLUES"\n'
                                   '[tempo]\nsource = "transport"\nbpm = 90\n')
    (user / "demo.toml").write_text(f'bundle = "{bundle}"\n[style]\npart = "BASS"\n')
    (user / "broken.toml").write_text("[sampling]\ntemprature = 1\n")
    out = cli("presets", "list", env=env)
    assert out.returncode == 0, out.stderr
    rows = {ln.split()[0]: ln for ln in out.stdout.splitlines() if not ln.startswith("#")}
    assert "✓" in rows["gig"] and "BLUES" in rows["gig"] and "transport" in rows["gig"]
    assert "chorale-bass" in rows and str(ROOT / "presets" / "chorale-bass.toml") in \
        rows["chorale-bass"]
    assert "broken" in rows and "(invalid)" in rows["broken"]
    assert "broken.toml: sampling.temprature: unknown key" in out.stderr
    demo_rows = [ln for ln in out.stdout.splitlines() if ln.startswith("demo ")]
    assert len(demo_rows) == 2 and "shadowed" in demo_rows[1] and "✓" in demo_rows[0]
    assert f"# user presets: {user}" in out.stdout


def test_resolve_by_name_prefers_user_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert resolve_preset("chorale-tenor") == ROOT / "presets" / "chorale-tenor.toml"
    user = tmp_path / "cfg" / "midicopilot" / "presets"
    user.mkdir(parents=True)
    (user / "mine.toml").write_text('name = "chorale-tenor"\nbundle = "/x"\n')
    assert resolve_preset("chorale-tenor") == user / "mine.toml"
    assert {e.source for e in find_presets()} == {"user", "project"}
    with pytest.raises(PresetError, match="no preset of that name"):
        resolve_preset("no-such-song")


# -- the engine command line ------------------------------------------------------------------
def test_engine_args_from_preset(tmp_path: Path) -> None:
    p = load_preset(write(tmp_path, GOOD))
    args = engine_args(p)
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs == {"--bundle": str(tmp_path / "bundle"), "--bpm": "100", "--temperature": "0.9",
                     "--top-p": "0.95", "--context": "512", "--lookahead-ticks": "24",
                     "--max-note-ticks": "192", "--max-polyphony": "4", "--seed": "7",
                     "--genre": "CHORALE", "--part": "SOPRANO"}
    live = engine_args(p, live=True)
    assert live[:len(args)] == args
    assert live[len(args):] == ["--backend", "jack", "--tempo-source", "preset",
                                "--release-horizon-ms", "40", "--input", "keys=pass",
                                "--input", "pads=9"]
    argv = engine.render_argv(Path("/e"), p, Path("in.mid"), Path("out.mid"), seed=3,
                              clock="virtual")
    assert argv[:2] == ["/e", "render"] and argv.count("--seed") == 1
    assert argv[argv.index("--seed") + 1] == "3"
    assert argv[-5:] == ["in.mid", "-o", "out.mid", "--clock", "virtual"]
    # render plays IN at its own tempo unless asked: the preset's BPM is the live tempo
    assert "--bpm" not in argv
    argv = engine.render_argv(Path("/e"), p, Path("in.mid"), Path("out.mid"), bpm=72.5)
    assert argv.count("--bpm") == 1 and argv[argv.index("--bpm") + 1] == "72.5"


def test_find_engine_order(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MIDICOPILOT_ENGINE", str(tmp_path / "missing"))
    with pytest.raises(engine.EngineNotFound, match="MIDICOPILOT_ENGINE=.*no such file"):
        engine.find_engine()
    monkeypatch.delenv("MIDICOPILOT_ENGINE")
    target = tmp_path / "target"
    (target / "release").mkdir(parents=True)
    exe = target / "release" / "midicopilot-engine"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("CARGO_TARGET_DIR", str(target))
    assert engine.find_engine() == exe
    monkeypatch.setenv("MIDICOPILOT_ENGINE", str(exe))
    assert engine.find_engine() == exe


def test_render_refuses_missing_bundle_and_missing_engine(tmp_path: Path, bundle: Path) -> None:
    from midicopilot.train.music21_midi import package_midi_files

    src = str(package_midi_files()[0])
    missing = write(tmp_path, 'bundle = "nowhere"\n', "missing.toml")
    out = cli("render", str(missing), src, "-o", str(tmp_path / "o.mid"))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"Error: {missing}: bundle: folder {tmp_path / 'nowhere'} does not exist (export a bundle "
        "there, or build the demo bundle)"]

    ok = write(tmp_path, f'bundle = "{bundle}"\n', "ok.toml")
    env = {**os.environ, "MIDICOPILOT_ENGINE": str(tmp_path / "no-engine")}
    out = cli("render", str(ok), src, "-o", str(tmp_path / "o.mid"), env=env)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [f"Error: MIDICOPILOT_ENGINE={tmp_path / 'no-engine'}: "
                                       "no such file"]
    assert not (tmp_path / "o.mid").exists()
