"""Studio commands: `ports`, `patch PRESET`, `render PRESET IN.mid -o OUT.mid [--roll OUT.png]`,
and `roll IN.mid -o OUT.png`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from midicopilot.host.cmd_presets import PresetProblem, load

server_option = click.option(
    "--server", metavar="NAME", default=None,
    help="JACK server name (default: $JACK_DEFAULT_SERVER, else 'default').")


@click.command()
@server_option
@click.option("-c", "--connections", is_flag=True, help="Also show each port's connections.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ports(server: str | None, connections: bool, as_json: bool) -> None:
    """List the MIDI ports of the running JACK server that can be patched.

    Sources (JACK output ports: keyboards, sequencers, midicopilot:out) come first, then
    destinations (synths, midicopilot:in_*). `hw` marks hardware ports, `a2j` those bridged from
    ALSA by a2jmidid, `net` those of a netJACK2 slave (a Raspberry Pi's MIDI on the server).
    """
    from midicopilot.host import jackpatch

    try:
        with jackpatch.open_client(server=server) as client:
            found = jackpatch.list_midi_ports(client, with_connections=connections)
    except jackpatch.JackUnavailable as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps([{"name": p.name, "direction": "source" if p.is_source else
                                "destination", "physical": p.is_physical, "tag": p.tag,
                                "aliases": list(p.aliases), "connections": list(p.connections)}
                               for p in found], indent=2))
        return
    for title, is_source in (("MIDI sources (play into a destination)", True),
                             ("MIDI destinations (receive from a source)", False)):
        group = [p for p in found if p.is_source == is_source]
        click.echo(f"{title}:")
        if not group:
            click.echo("  (none)")
        for p in group:
            line = f"  {p.tag:<3}  {p.name}"
            if p.aliases:
                line += f"  (alias: {', '.join(p.aliases)})"
            click.echo(line)
            arrow = "->" if is_source else "<-"
            for c in p.connections:
                click.echo(f"         {arrow} {c}")


@click.command()
@click.argument("preset")
@server_option
def patch(preset: str, server: str | None) -> None:
    """Make a preset's JACK connections, without playing.

    Sources matching each input's `connect` patterns go to midicopilot:in_<name>; midicopilot:out
    goes to the destinations matching [output] connect. Patterns are Python regular expressions
    searched in port names and aliases. One line per connection made; a pattern that matches
    nothing is a warning (the rest still connects). Exit code 1 if a connection failed or the
    engine's ports are not there.
    """
    from midicopilot.host import jackpatch

    p = load(preset)
    if p.backend != "jack":
        raise PresetProblem(f"{p.path}: backend: '{p.backend}' — `patch` makes JACK connections; "
                            "with the alsa backend the engine opens its ports itself")
    try:
        with jackpatch.open_client(server=server) as client:
            found = jackpatch.list_midi_ports(client)
            if not jackpatch.engine_present(found):
                raise click.ClickException(
                    f"no '{jackpatch.ENGINE_CLIENT}' JACK client on server "
                    f"'{jackpatch.server_label(server)}': start the engine first")
            report = jackpatch.patch(client, p)
    except jackpatch.JackUnavailable as e:
        raise click.ClickException(str(e)) from None
    for line in report.lines():
        click.echo(line, err=line.startswith(("warning", "error")))
    if not (report.made or report.already):
        click.echo(f"{p.name}: no connections made", err=True)
    if report.failed or report.missing:
        sys.exit(1)


@click.command()
@click.argument("preset")
@click.argument("midi_in", metavar="IN.mid",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, metavar="OUT.mid",
              type=click.Path(dir_okay=False, path_type=Path), help="The MIDI file to write.")
@click.option("--roll", metavar="OUT.png", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw a piano roll of the result.")
@click.option("--seed", type=click.IntRange(0), help="Override the preset's seed.")
@click.option("--clock", type=click.Choice(["virtual", "wall"]), default=None,
              help="virtual: reproducible, as fast as it goes; wall: real time at the BPM.")
@click.option("--bpm", type=click.FloatRange(1, 999),
              help="Tempo of OUT and of the wall clock (default: IN's own first tempo, else 120).")
@click.option("--channels", type=click.Choice(["parts", "keep"]), default="parts",
              show_default=True,
              help="parts: every part (track, channel) of IN takes a channel of its own, 1–15, "
                   "as in training; keep: IN's channels as they are, its channel 0 left out.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the engine's report (events, lateness, flushes) as JSON.")
def render(preset: str, midi_in: Path, output: Path, roll: Path | None, seed: int | None,
           clock: str | None, bpm: float | None, channels: str, report: Path | None) -> None:
    """Play a MIDI file through the engine with a preset as the human (its parts on channels
    1–15); write what the model answered on channel 0 together with the human parts."""
    from midicopilot.host import engine, presets

    p = load(preset)
    problems = [line for line in presets.check_preset(p) if ": bundle:" in line]
    if problems:
        raise PresetProblem(problems[0])
    try:
        exe = engine.find_engine()
    except engine.EngineNotFound as e:
        raise click.ClickException(str(e)) from None
    argv = engine.render_argv(exe, p, midi_in, output, seed=seed, clock=clock, bpm=bpm,
                              channels=channels, report=report)
    try:
        code = subprocess.run(argv).returncode
    except KeyboardInterrupt:
        sys.exit(130)
    if code != 0:  # the engine has said what went wrong, on one line of stderr
        sys.exit(code if code > 0 else 1)
    click.echo(f"wrote {output}")
    if roll:
        _draw(output, roll, f"{p.name}: {midi_in.name}")


def _draw(midi: Path, png: Path, title: str) -> None:
    from midicopilot.host.pianoroll import PianoRollError, draw_pianoroll

    try:
        info = draw_pianoroll(midi, png, title=title)
    except PianoRollError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{png}: {e.strerror or e}") from None
    model = info.notes.get(0, 0)
    human = sum(n for ch, n in info.notes.items() if ch != 0)
    click.echo(f"wrote {png} ({human} human notes, {model} model notes, {info.beats:g} beats)")


@click.command()
@click.argument("midi_in", metavar="IN.mid",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, metavar="OUT.png",
              type=click.Path(dir_okay=False, path_type=Path), help="The PNG to write.")
@click.option("--title", help="Title above the roll (default: the file name).")
def roll(midi_in: Path, output: Path, title: str | None) -> None:
    """Draw a piano roll of a MIDI file (channel 0, the model's, in its own colour)."""
    _draw(midi_in, output, title or midi_in.name)


# -- `play` (the set: host/cmd_setlist.py, host/player.py) --------------------------------------
@click.command()
@click.argument("presets", nargs=-1, metavar="[PRESET]...")
@click.option("--set-list", "set_list", metavar="FILE.toml",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Play the songs of a set list file (docs/LIVE.md) instead of PRESET...")
@server_option
@click.option("--backend", type=click.Choice(["jack", "alsa"]), default=None,
              help="Override the presets' backend (alsa: the engine opens ALSA ports itself).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the engine's report (events, late, dropped, callback times) as JSON.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop by itself after this many seconds.")
@click.option("--no-patch", is_flag=True, help="Do not make the preset's connections.")
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Where `midicopilot switch` reaches this set (default: "
              "<user runtime dir>/midicopilot/play.sock).")
@click.option("--no-keys", is_flag=True, help="Do not read song keys from the terminal.")
def play(presets: tuple[str, ...], set_list: Path | None, server: str | None,
         backend: str | None, report: Path | None, seconds: float | None, no_patch: bool,
         socket_path: Path | None, no_keys: bool) -> None:
    """Play live with one preset, several (a set: `play song1 song2 song3`), or a set list:
    start the engine, make the first song's connections, supervise it. Ctrl-C stops it cleanly
    (note-offs, then its report line).

    Switch songs during the set with the number keys (n/p: next/previous) when the terminal is
    a TTY, a MIDI program change on midicopilot-host:control, or `midicopilot switch NAME` from
    another shell. A switch that fails is one line; the set goes on with the song playing.
    """
    from midicopilot.host.cmd_setlist import play_set

    play_set(presets, set_list, server=server, backend=backend, report=report, seconds=seconds,
             no_patch=no_patch, socket_path=socket_path, keys=not no_keys)


def register(main: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    for cmd in (ports, patch, render, roll, play):
        main.add_command(cmd)
