"""`hybridfast eval ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Evaluate an encoder (LAReQA, BEIR, Tatoeba) and compare runs.", invoke_without_command=True)


@app.callback()
def eval_command(ctx: typer.Context) -> None:
    """Evaluate a model and write a JSON result file."""
    if ctx.invoked_subcommand is None:
        typer.echo("hybridfast eval: not implemented yet", err=True)
        raise typer.Exit(1)
