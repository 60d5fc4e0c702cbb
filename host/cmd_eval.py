"""`midicopilot eval BUNDLE [PIECES]... [--corpus DIR]`: the musical figures of a bundle
(host/evaluate.py; every figure is defined in docs/QUALITY.md)."""
from __future__ import annotations

import json
from pathlib import Path

import click


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_report(report, console) -> None:
    from rich.table import Table

    from midicopilot.host import quality

    tpq = report.tpq
    per_piece = Table(title="per piece (model / real part)", title_justify="left")
    for col in ("piece", "target", "in-chord %", "random %", "notes/beat", "on-grid %",
                "loss / unigram"):
        per_piece.add_column(col, justify="left" if col in ("piece", "target") else "right")
    for p in report.pieces:
        m, r = quality.figures(p.model, tpq), quality.figures(p.real, tpq)
        per_piece.add_row(
            p.piece, p.target, f"{_pct(m.in_chord)} / {_pct(r.in_chord)}",
            _pct(m.random_in_chord), f"{_num(m.notes_per_beat)} / {_num(r.notes_per_beat)}",
            f"{_pct(m.on_grid)} / {_pct(r.on_grid)}", f"{_num(p.loss)} / {_num(p.unigram)}")
    console.print(per_piece)
    total = report.total()
    m, r = total["model"], total["real"]
    table = Table(title=f"total: {total['pieces']} piece(s)", title_justify="left")
    for col in ("figure", "model", "real part"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    table.add_row("in-chord %", _pct(m["in_chord"]), _pct(r["in_chord"]))
    table.add_row("random pitches, in-chord %", _pct(m["random_in_chord"]),
                  _pct(r["random_in_chord"]))
    table.add_row("on-grid %", _pct(m["on_grid"]), _pct(r["on_grid"]))
    table.add_row("notes per beat", _num(m["notes_per_beat"]), _num(r["notes_per_beat"]))
    table.add_row("pitch range (semitones)", str(m["pitch_range"]), str(r["pitch_range"]))
    table.add_row("mean note length (beats)", _num(m["mean_length_beats"]),
                  _num(r["mean_length_beats"]))
    table.add_row("repeated pitches %", _pct(m["repeated"]), _pct(r["repeated"]))
    table.add_row("notes", str(m["notes"]), str(r["notes"]))
    console.print(table)
    console.print(f"validation loss {_num(total['loss'], 3)} nats/token "
                  f"(unigram baseline {_num(total['unigram'], 3)})")


@click.command("eval")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("pieces", nargs=-1)
@click.option("--corpus", type=click.Path(file_okay=False, path_type=Path),
              help="Also evaluate this corpus folder's validation pieces.")
@click.option("--target", default="top", show_default=True,
              help="The part the model replaces: top (highest), bottom, all (each in turn), a "
                   "track name (Soprano) or a part number (1 = the first).")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(1),
              help="Renders per piece and part (seeds 0, 1, …).")
@click.option("--genre", help="Header genre, e.g. CHORALE (default: the bundle's).")
@click.option("--part", help="Header part, e.g. SOPRANO (default: the target's name if the "
                             "bundle knows it, else the bundle's).")
@click.option("--temperature", type=click.FloatRange(0), help="Override the bundle's.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), help="Override the bundle's.")
@click.option("--max-polyphony", type=click.IntRange(1, 128), help="Override the bundle's.")
@click.option("--context", type=click.IntRange(32),
              help="The engine's context limit in tokens (default: render's).")
@click.option("--no-listen", is_flag=True,
              help="The model never leaves an instant to the band (for comparisons).")
@click.option("--band-velocity-as-played", is_flag=True,
              help="The band's velocities reach the model as played, not as the nearest it "
                   "heard the band in during training (the bundle's band_velocities; for "
                   "comparisons).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the figures as JSON here.")
@click.option("--rolls", type=click.Path(file_okay=False, path_type=Path),
              help="Write a piano roll per piece and part into this folder.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1),
              help="Engines run side by side.")
@click.option("--no-loss", is_flag=True, help="Skip the validation loss.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_command(bundle: Path, pieces: tuple[str, ...], corpus: Path | None, target: str,
                 seeds: int, genre: str | None, part: str | None, temperature: float | None,
                 top_p: float | None, max_polyphony: int | None, context: int | None,
                 no_listen: bool, band_velocity_as_played: bool,
                 json_out: Path | None,
                 rolls: Path | None, workers: int, no_loss: bool, quiet: bool) -> None:
    """Evaluate BUNDLE on held-out music: for each piece (MIDI files or music21 names such as
    bach/bwv108.6; none: the bundle's validation_pieces), take the target part out, let the
    model play it through the engine, and compare it with the real part (docs/QUALITY.md)."""
    from rich.console import Console

    from midicopilot.host import evaluate as E

    console = Console()
    sampling = E.Sampling(temperature, top_p, max_polyphony, listen=not no_listen,
                          context=context, band_velocity_as_trained=not band_velocity_as_played)
    opts = E.Options(seeds=tuple(range(seeds)), target=target, genre=genre, part=part,
                     sampling=sampling, rolls=rolls, workers=workers, loss=not no_loss)

    def skip(name: str, reason: str) -> None:
        click.echo(f"skipped {name}: {reason}", err=True)

    try:
        report = E.evaluate(bundle, pieces, corpus, opts, skip, progress=not quiet)
    except E.EvalError as e:
        raise click.ClickException(str(e)) from None
    print_report(report, console)
    if json_out:
        json_out.write_text(json.dumps(report.to_json(), indent=1) + "\n")
        click.echo(f"wrote {json_out}")


def register(main: click.Group) -> None:
    main.add_command(eval_command)
