"""`hybridfast train` / `accelerate launch train` / `python -m hybridfast.train`."""

from __future__ import annotations

import typer


def train_command(config: str = typer.Option(..., "--config", help="Training config (TOML or YAML).")) -> None:
    """Fine-tune a shared dual encoder with hybrid (mono + cross-lingual) batches."""
    typer.echo("hybridfast train: not implemented yet", err=True)
    raise typer.Exit(1)


def main() -> None:
    typer.run(train_command)
