"""Event-language commands: `encode`, `decode`, `stats` (docs/FORMAT.md)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from midicopilot.train import events


def _params(tpq: int, bins: int) -> events.LanguageParams:
    try:
        return events.LanguageParams(tpq, bins)
    except ValueError as err:
        raise click.UsageError(str(err)) from None


def _meta(genre: str | None, part: str | None) -> list[str]:
    return [events.meta_token(kind, name) for kind, name in (("genre", genre), ("part", part))
            if name]


language_options = [
    click.option("--tpq", default=24, show_default=True, help="Ticks per quarter note."),
    click.option("--velocity-bins", default=8, show_default=True, help="Velocity levels."),
]


def with_language_options(func):
    for option in reversed(language_options):
        func = option(func)
    return func


@click.command()
@click.argument("midi_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--genre", help="Open the text with [GENRE_NAME].")
@click.option("--part", help="Open the text with [PART_NAME].")
@with_language_options
def encode(midi_file: Path, genre: str | None, part: str | None, tpq: int,
           velocity_bins: int) -> None:
    """Print the event text of a MIDI file."""
    try:
        text = events.encode_file(midi_file, _params(tpq, velocity_bins), _meta(genre, part))
    except events.MidiError as err:
        raise click.ClickException(str(err)) from None
    click.echo(text)


@click.command()
@click.argument("text_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The MIDI file to write.")
@click.option("--bpm", default=120.0, show_default=True, help="Tempo written into the file.")
@with_language_options
def decode(text_file: Path, output: Path, bpm: float, tpq: int, velocity_bins: int) -> None:
    """Write the MIDI file of an event text ('-' reads standard input)."""
    try:
        text = sys.stdin.read() if str(text_file) == "-" else text_file.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise click.ClickException(f"{text_file}: {err}") from None
    try:
        mid = events.text_to_midi(text, _params(tpq, velocity_bins), bpm)
    except events.TextError as err:
        raise click.ClickException(f"{text_file}: {err}") from None
    try:
        mid.save(output)
    except OSError as err:
        raise click.ClickException(f"{output}: {err.strerror or err}") from None


@click.command()
@click.argument("files", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@with_language_options
def stats(files: tuple[Path, ...], tpq: int, velocity_bins: int) -> None:
    """Print notes, words and words per note of MIDI files (and their total).

    A file that cannot be read is reported on stderr and counted; the exit code is 1 if any was.
    """
    params = _params(tpq, velocity_bins)
    total = events.TextStats()
    failed = 0
    click.echo(f"{'notes':>8} {'words':>8} {'time':>7} {'instant':>7} {'w/note':>7}  file")
    for path in files:
        try:
            one = events.text_stats(events.encode_file(path, params))
        except events.MidiError as err:
            click.echo(f"midicopilot: {err}", err=True)
            failed += 1
            continue
        total += one
        click.echo(f"{one.notes:>8} {one.words:>8} {one.time_words:>7} {one.instant_words:>7} "
                   f"{one.words_per_note:>7.3f}  {path}")
    if len(files) > 1:
        click.echo(f"{total.notes:>8} {total.words:>8} {total.time_words:>7} "
                   f"{total.instant_words:>7} {total.words_per_note:>7.3f}  "
                   f"total ({len(files) - failed} files, {failed} unreadable)")
    if failed:
        sys.exit(1)


def register(main: click.Group) -> None:
    for command in (encode, decode, stats):
        main.add_command(command)
