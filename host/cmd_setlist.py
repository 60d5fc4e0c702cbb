"""Set-list commands: the body of `play PRESET... | --set-list FILE` (the click command is in
cmd_live.py) and `switch NAME | --next | --prev | --status`. The set list is host/setlist.py,
playing it host/player.py, the socket `switch` talks to host/playsocket.py."""
from __future__ import annotations

import sys
from pathlib import Path

import click


class SetProblem(click.ClickException):
    """A set list or preset that cannot be used: one line, exit code 2."""

    exit_code = 2


def play_set(presets: tuple[str, ...], set_list: Path | None, *, server: str | None,
             backend: str | None, report: Path | None, seconds: float | None, no_patch: bool,
             socket_path: Path | None, keys: bool) -> None:
    """`midicopilot play`: one preset, several, or a set list; switched live."""
    from midicopilot.host import engine, setlist
    from midicopilot.host.alsa import alsa_problem
    from midicopilot.host.player import SetPlayer

    if set_list is not None and presets:
        raise click.UsageError("give presets or --set-list, not both")
    try:
        s = (setlist.load_set_list(set_list) if set_list is not None
             else setlist.set_from_presets(list(presets)))
    except setlist.SetListError as e:
        raise SetProblem(str(e)) from None
    s = setlist.with_backend(s, backend)
    problems = setlist.check_set(s)
    if problems:
        for line in problems[:-1]:
            click.echo(f"Error: {line}", err=True)
        raise SetProblem(problems[-1])
    if s.songs[0].preset.backend == "alsa" and (why := alsa_problem()):
        raise click.ClickException(why)
    try:
        exe = engine.find_engine()
    except engine.EngineNotFound as e:
        raise click.ClickException(str(e)) from None
    player = SetPlayer(s, server=server, report=report, run_seconds=seconds,
                       patch=not no_patch, socket_path=socket_path, keys=keys, engine=exe)
    try:
        code = player.run_set()
    except setlist.SetListError as e:
        raise click.ClickException(str(e)) from None
    if report and report.exists():
        click.echo(f"report: {report}", err=True)
    if code != 0:
        sys.exit(code)


@click.command()
@click.argument("name", required=False)
@click.option("--next", "direction", flag_value="next", help="The next song of the set.")
@click.option("--prev", "direction", flag_value="prev", help="The previous song of the set.")
@click.option("--status", "direction", flag_value="status",
              help="Say which song plays and list the set.")
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The running `play`'s control socket (default: "
              "<user runtime dir>/midicopilot/play.sock).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds to wait for the engine (default: 310; a bundle may be loading).")
def switch(name: str | None, direction: str | None, socket_path: Path | None,
           timeout: float | None) -> None:
    """Switch the running `midicopilot play` to song NAME of its set (or --next / --prev).

    Prints one line: what the engine did, or why the switch failed (exit code 1; the set goes
    on with the song that was playing).
    """
    from midicopilot.host.playsocket import send_to_player

    if (name is None) == (direction is None):
        raise click.UsageError("give a song NAME, or one of --next, --prev, --status")
    command = ({"cmd": "switch", "name": name} if name is not None else {"cmd": direction})
    kw = {"timeout": timeout} if timeout else {}
    result = send_to_player(command, socket_path, **kw)
    if not result.ok:
        click.echo(f"Error: {result.message}", err=True)
        sys.exit(1)
    click.echo(result.message)


def register(main: click.Group) -> None:
    """Add this module's commands to the top-level group (`play` is cmd_live's)."""
    main.add_command(switch)
