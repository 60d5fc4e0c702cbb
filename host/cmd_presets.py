"""Preset commands: `presets list`, `presets check FILE...` (the schema is in docs/PRESETS.md)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from midicopilot.host import presets as P


class PresetProblem(click.ClickException):
    """A preset that cannot be used: one line, exit code 2."""

    exit_code = 2


def load(spec: str) -> P.Preset:
    """A preset by path or name, for the other commands; a bad one ends the command (exit 2)."""
    try:
        return P.load_preset(P.resolve_preset(spec))
    except P.PresetError as e:
        raise PresetProblem(str(e)) from None


def _home(p: Path) -> str:
    home = str(Path.home())
    s = str(p)
    return "~" + s[len(home):] if home != "/" and (s == home or s.startswith(home + "/")) else s


def _style(preset: P.Preset) -> str:
    return "/".join(x for x in (preset.style.genre, preset.style.part) if x) or "-"


def _tempo(preset: P.Preset) -> str:
    bpm = f"{preset.tempo.bpm:g} BPM"
    return bpm if preset.tempo.source == "preset" else f"{preset.tempo.source} ({bpm} at start)"


@click.group("presets")
def presets_group() -> None:
    """Style presets: the project's presets/ and your own (see `presets list` for the folders)."""


@presets_group.command("list")
def list_cmd() -> None:
    """Show every preset: name, where it is, its bundle (✓ exists / ✗ missing), style, tempo."""
    entries = P.find_presets()
    for label, folder in P.preset_dirs():
        state = "" if folder.is_dir() else " (does not exist)"
        click.echo(f"# {label} presets: {folder}{state}")
    if not entries:
        click.echo("no presets found")
        return
    rows = [("NAME", "FROM", "BUNDLE", "STYLE", "TEMPO", "FILE")]
    errors = []
    for e in entries:
        if e.preset is None:
            errors.append(e.error or str(e.path))
            rows.append((e.path.stem, e.source, "?", "?", "?", f"{e.path} (invalid)"))
            continue
        p = e.preset
        mark = "✓" if (p.bundle / "midicopilot.json").is_file() else "✗"
        origin = e.source + (" (shadowed)" if e.shadowed else "")
        rows.append((p.name, origin, f"{mark} {_home(p.bundle)}", _style(p), _tempo(p),
                     str(e.path)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    for err in errors:
        click.echo(err, err=True)


@presets_group.command("check")
@click.argument("files", nargs=-1, required=True)
def check_cmd(files: tuple[str, ...]) -> None:
    """Validate presets (files or names): the schema, the bundle folder and its style tokens.

    Each problem is one line on stderr; the exit code is 2 if there was any.
    """
    bad = False
    for spec in files:
        try:
            path = P.resolve_preset(spec)
            preset = P.load_preset(path)
        except P.PresetError as e:
            click.echo(str(e), err=True)
            bad = True
            continue
        problems = P.check_preset(preset, str(path))
        for line in problems:
            click.echo(line, err=True)
        if problems:
            bad = True
        else:
            tokens = " ".join(preset.style.tokens) or "no style tokens"
            click.echo(f"{path}: ok ({preset.name}: {tokens}, {_tempo(preset)}, "
                       f"bundle {_home(preset.bundle)})")
    if bad:
        sys.exit(2)


def register(main: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    main.add_command(presets_group)
