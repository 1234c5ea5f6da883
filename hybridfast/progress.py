"""The one progress bar of the toolkit: rich, on stderr, so stdout stays for results."""

from __future__ import annotations

from typing import Any


def rich_progress(*extra_columns: Any, enabled: bool = True, transient: bool = False) -> Any:
    """A `rich.progress.Progress`: description, bar, done/total, elapsed, remaining, then `extra_columns`."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), *extra_columns,
        console=Console(stderr=True), disable=not enabled, transient=transient,
    )
