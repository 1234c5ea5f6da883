"""`hybridfast train` / `accelerate launch train` / `accelerate launch -m hybridfast.train`.

All three parse the same options and call `hybridfast.train.loop.train`; under a launcher every
process runs this and `accelerate` wires them together (DDP, or DeepSpeed when the config names
a DeepSpeed JSON).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hybridfast.errors import HybridfastError
from hybridfast.quiet import VERBOSE_ENV, quiet_third_party

if TYPE_CHECKING:
    from hybridfast.train.loop import TrainResult


def train_command(
    config: str = typer.Option(..., "--config", "-c", help="Training config (TOML or YAML), e.g. train/configs/quickstart.toml."),
    data_dir: str = typer.Option(
        None, "--data-dir", help="Data root for relative data paths (default: $HYBRIDFAST_DATA, else ./data)."
    ),
    output_dir: str = typer.Option(None, "--output-dir", "--out-dir", "-o", help="Override train.output_dir (the run folder)."),
    steps: int = typer.Option(None, "--steps", help="Override train.steps (and clear train.epochs)."),
    resume: str = typer.Option(
        None, "--resume", help="auto (continue from the newest checkpoint in the output dir; a finished run trains "
        "nothing), never (start over), or a checkpoint dir.",
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress",
        help="Show progress (step, loss, lr, tokens/s, ETA) on stderr: a bar on a terminal, plain lines in a log.",
    ),
    verbose: bool = typer.Option(
        False, "--verbose", envvar=VERBOSE_ENV,
        help="Also show the third-party output hidden by default (transformers' loading and saving bars, "
        "DeepSpeed's CPU notice).",
    ),
) -> None:
    """Fine-tune a shared dual encoder with hybrid (mono + cross-lingual) batches and global negatives.

    Single process: `hybridfast train --config CONFIG`. Several processes or GPUs:
    `accelerate launch train --config CONFIG` from the repository root, or
    `accelerate launch -m hybridfast.train --config CONFIG`. Checkpoints load with
    `hybridfast.load`, `transformers.AutoModel` and `sentence_transformers.SentenceTransformer`.
    """
    if not verbose:
        quiet_third_party()  # first: DeepSpeed logs its notice when accelerate imports it
    from hybridfast.train.config import load_config
    from hybridfast.train.loop import train

    overrides: dict[str, object] = {}
    if output_dir is not None:
        overrides["train.output_dir"] = output_dir
    if steps is not None:
        overrides["train.steps"] = steps
        overrides["train.epochs"] = 0
    if resume is not None:
        overrides["train.resume"] = resume
    try:
        cfg = load_config(config, overrides)
        result = train(cfg, data_dir=data_dir, show_progress=progress)
    except HybridfastError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if int(os.environ.get("RANK", "0")) != 0:
        return
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(summary_line(result))
    from hybridfast.train.checkpoint import checkpoint_size

    checkpoint = _shown(result.checkpoint)
    typer.echo(f"checkpoint: {checkpoint} ({checkpoint_size(result.checkpoint).describe()})")
    typer.echo(f"metrics:    {_shown(result.metrics_file)}")
    typer.echo("next:")
    data = f" --data {Path(data_dir) / 'xquad-r'}" if data_dir is not None else ""
    typer.echo(f"  hybridfast eval --model {checkpoint} --task lareqa{data} --article-split eval "
               f"--out {_shown(result.output_dir)}/lareqa.json")
    typer.echo(f'  python -c "import hybridfast; print(hybridfast.load(\'{checkpoint}\').encode_queries([\'hello\']).shape)"')


def summary_line(result: TrainResult) -> str:
    """What this invocation did: "trained N steps (a-b)", with where it resumed from, or that nothing was left."""
    resumed = f"resumed from {_shown(result.resumed_from)}; " if result.resumed_from is not None else ""
    if result.steps_trained == 0:
        return f"{resumed}trained 0 steps: the run had already reached step {result.steps} of {result.total_steps}"
    span = f"{result.start_step + 1}-{result.steps}" if result.steps_trained > 1 else f"{result.steps}"
    losses = [result.losses[step] for step in sorted(result.losses)]
    return (f"{resumed}trained {result.steps_trained} steps ({span}) in {result.wall_time_s:.0f} s; "
            f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it lies below it (as the README writes paths)."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(train_command)
    app(args=sys.argv[1:], prog_name="hybridfast train")
