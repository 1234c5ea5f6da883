"""The `hybridfast` command line: a thin shell over library functions.

Each command's options live next to the code it drives (`*/cli.py`, `*/benchmark.py`); this
file only assembles them, and is the one place in `hybridfast/` that reaches up into
`hybridfast.train` and `hybridfast.serve`. Command modules import nothing heavy at module
level, so `hybridfast --help` stays fast.
"""

from __future__ import annotations

import typer

from hybridfast.data.cli import app as data_app
from hybridfast.eval.cli import app as eval_app
from hybridfast.kernels.benchmark import bench_kernels_command
from hybridfast.models.cli import app as models_app
from hybridfast.serve import cli as serve_cli
from hybridfast.serve.server_cli import serve_command
from hybridfast.train.cli import train_command

app = typer.Typer(
    name="hybridfast",
    help="Train and serve multilingual dense-retrieval encoders with hybrid batches and fused kernels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.command("train")(train_command)
app.add_typer(eval_app, name="eval")
app.command("encode")(serve_cli.encode_command)
app.command("index")(serve_cli.index_command)
app.command("search")(serve_cli.search_command)
app.command("serve")(serve_command)

bench_app = typer.Typer(
    help="Benchmarks: fused kernels and the lean encode path against unfused baselines.",
    no_args_is_help=True,
)
bench_app.command("kernels")(bench_kernels_command)
bench_app.command("encode")(serve_cli.bench_encode_command)
app.add_typer(bench_app, name="bench")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
