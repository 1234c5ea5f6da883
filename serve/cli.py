"""`hybridfast encode | index | search | serve | bench encode`."""

from __future__ import annotations

import typer


def _todo(name: str) -> None:
    typer.echo(f"hybridfast {name}: not implemented yet", err=True)
    raise typer.Exit(1)


def encode_command() -> None:
    """Embed a corpus into shards with ids."""
    _todo("encode")


def index_command() -> None:
    """Build a FAISS inner-product index from embedding shards."""
    _todo("index")


def search_command() -> None:
    """Retrieve top-k passages for a query file."""
    _todo("search")


def serve_command() -> None:
    """Serve embeddings (and search) over HTTP."""
    _todo("serve")


def bench_encode_command() -> None:
    """Benchmark the lean encode path against unfused baselines."""
    _todo("bench encode")
