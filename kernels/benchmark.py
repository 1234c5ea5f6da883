"""`hybridfast bench kernels`: fused kernels vs naive and chunked-torch baselines."""

from __future__ import annotations

import typer


def bench_kernels_command() -> None:
    """Benchmark the fused contrastive loss and pooling against baselines."""
    typer.echo("hybridfast bench kernels: not implemented yet", err=True)
    raise typer.Exit(1)
