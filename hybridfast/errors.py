"""Errors that the CLI turns into one clear line (what, and where) instead of a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class HybridfastError(Exception):
    """Base class for user-facing errors: bad input, missing files, bad configs."""


class DataFormatError(HybridfastError, ValueError):
    """A data file is malformed; the message names the file and the line."""

    def __init__(self, path: object, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class NotImplementedYet(HybridfastError):
    """A command whose body lands in a later issue."""


@contextmanager
def user_errors() -> Iterator[None]:
    """In a CLI command: turn a HybridfastError into `error: …` on stderr and exit status 2."""
    import typer

    try:
        yield
    except HybridfastError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
