"""`hybridfast models ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Import, prune and inspect encoder checkpoints.", no_args_is_help=True)


@app.command("info")
def info_command(model_dir: str) -> None:
    """Print architecture, parameter counts, dtype and size on disk."""
    typer.echo("hybridfast models info: not implemented yet", err=True)
    raise typer.Exit(1)
