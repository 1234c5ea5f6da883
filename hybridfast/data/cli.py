"""`hybridfast data ...` commands: count what is under the data root, fetch public datasets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hybridfast.errors import HybridfastError

if TYPE_CHECKING:
    from rich.table import Table

    from hybridfast.data.stats import DatasetStats

app = typer.Typer(help="Inspect and fetch datasets (XQuAD, XQuAD-R, BEIR, Tatoeba).", no_args_is_help=True)

DATA_DIR_HELP = "Data root; default: $HYBRIDFAST_DATA, else ./data."


def _fail(error: HybridfastError) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(2)


def _cell(value: str | int | None) -> str:
    return "" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _render_table(stats: DatasetStats, width: int) -> Table:
    """A rich table for one dataset; long per-language lists (Tatoeba) fold into as many column groups (up to 4)
    as `width` characters hold."""
    from rich.table import Table

    text_columns = {i for i, _ in enumerate(stats.columns) if all(isinstance(row[i], str) for row in stats.rows)}
    fold_width = sum(3 + max(len(column), *(len(_cell(row[i])) for row in stats.rows))
                     for i, column in enumerate(stats.columns))
    folds = max(1, min(4, (width - 1) // fold_width)) if len(stats.rows) > 24 else 1
    table = Table(title=f"{stats.name} ({stats.kind})", title_justify="left", caption=str(stats.path))
    for _ in range(folds):
        for i, column in enumerate(stats.columns):
            text = i in text_columns
            table.add_column(column, justify="left" if text else "right", no_wrap=text, overflow="ellipsis")
    height = -(-len(stats.rows) // folds)
    for r in range(height):
        cells: list[str] = []
        for fold in range(folds):
            index = fold * height + r
            row = stats.rows[index] if index < len(stats.rows) else ("",) * len(stats.columns)
            cells.extend(_cell(value) for value in row)
        table.add_row(*cells)
    if folds > 1:
        total = sum(int(row[-1] or 0) for row in stats.rows)
        table.caption = f"{stats.path}: {len(stats.rows)} languages, {total:,} {stats.columns[-1]} in total"
    return table


@app.command("stats")
def stats_command(
    directory: Path | None = typer.Argument(
        None, help="A data root holding dataset folders, or one dataset folder. Wins over --data-dir."
    ),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON instead of tables."),
) -> None:
    """Print per-dataset, per-language counts of the datasets found (XQuAD, XQuAD-R, BEIR, Tatoeba).

    Every file is read and validated, so this doubles as a check that the data loads.
    """
    import json

    from rich.console import Console
    from rich.progress import Progress

    from hybridfast.data.files import resolve_data_root
    from hybridfast.data.stats import dataset_stats, detect_datasets

    try:
        root = directory if directory is not None else resolve_data_root(data_dir)
        datasets = detect_datasets(root)
        results = []
        stderr = Console(stderr=True)
        with Progress(transient=True, console=stderr, disable=not stderr.is_terminal) as progress:
            task = progress.add_task("reading datasets", total=len(datasets))
            for dataset in datasets:
                progress.update(task, description=f"reading {dataset.name}")
                results.append(dataset_stats(dataset))
                progress.advance(task)
    except HybridfastError as error:
        raise _fail(error) from None
    if as_json:
        typer.echo(json.dumps([stats.as_dict() for stats in results], indent=2))
        return
    console = Console()
    for stats in results:
        console.print(_render_table(stats, console.width))


@app.command("download")
def download_command(
    name: str = typer.Argument(..., help="Dataset: xquad, xquad-r, beir-scifact or tatoeba."),
    to: str | None = typer.Option(
        None,
        "--data-dir",
        "--to",
        help="Data root to write into (the dataset lands in a sub-folder); default: $HYBRIDFAST_DATA, else ./data.",
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for the server before giving up."),
) -> None:
    """Download a public dataset from its official source into the data root.

    Without network access this fails within --timeout seconds and says where to put the files by hand.
    """
    from rich.console import Console
    from rich.progress import Progress

    from hybridfast.data.download import SOURCES, download_dataset
    from hybridfast.data.files import resolve_data_root

    root = resolve_data_root(to)
    try:
        stderr = Console(stderr=True)
        with Progress(console=stderr, disable=not stderr.is_terminal) as progress:
            task = progress.add_task(
                f"downloading {name}", total=len(SOURCES[name].files) if name in SOURCES else None
            )
            target = download_dataset(
                name,
                root,
                timeout=timeout,
                on_file=lambda done, total, _path: progress.update(task, completed=done),
            )
    except HybridfastError as error:
        raise _fail(error) from None
    typer.echo(f"{name} written to {target}")
