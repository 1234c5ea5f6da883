"""`hybridfast data ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Inspect and fetch datasets (XQuAD, XQuAD-R, BEIR, Tatoeba).", no_args_is_help=True)


@app.command("stats")
def stats_command() -> None:
    """Print per-dataset, per-language counts."""
    typer.echo("hybridfast data stats: not implemented yet", err=True)
    raise typer.Exit(1)
