"""The `hybridfast` command line: a thin shell over library functions.

Each command's options live next to the code it drives (`*/cli.py`, `*/benchmark.py`); this
file only assembles them, and is the one place in `hybridfast/` that reaches up into
`hybridfast.train` and `hybridfast.serve`. Command modules import nothing heavy at module
level, so `hybridfast --help` stays fast.
"""

from __future__ import annotations

import os

import typer

from hybridfast.data.cli import app as data_app
from hybridfast.eval.cli import app as eval_app
from hybridfast.kernels.benchmark import bench_kernels_command
from hybridfast.models.cli import app as models_app
from hybridfast.quiet import VERBOSE_ENV, quiet_third_party
from hybridfast.serve import cli as serve_cli
from hybridfast.serve.server_cli import serve_command
from hybridfast.train.benchmark import bench_train_command
from hybridfast.train.cli import train_command

app = typer.Typer(
    name="hybridfast",
    help="Train and serve multilingual dense-retrieval encoders with hybrid batches and fused kernels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def global_options(
    ctx: typer.Context,
    verbose: bool = typer.Option(
        False, "--verbose", envvar=VERBOSE_ENV,
        help="Also show the third-party output hidden by default (transformers' loading and saving bars and "
        "pooler report, DeepSpeed's CPU notice). Put it before the command: hybridfast --verbose encode ...",
    ),
) -> None:
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # for commands with their own --verbose (train), and for subprocesses
    elif ctx.invoked_subcommand != "train":  # train quiets itself unless its own --verbose is given
        quiet_third_party()


app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.command("train")(train_command)
app.add_typer(eval_app, name="eval")
app.command("encode")(serve_cli.encode_command)
app.command("index")(serve_cli.index_command)
app.command("search")(serve_cli.search_command)
app.command("serve")(serve_command)

bench_app = typer.Typer(
    help="Benchmarks: fused kernels, the lean encode path and the training step against unfused baselines.",
    no_args_is_help=True,
)
bench_app.command("kernels")(bench_kernels_command)
bench_app.command("encode")(serve_cli.bench_encode_command)
bench_app.command("train")(bench_train_command)
app.add_typer(bench_app, name="bench")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
