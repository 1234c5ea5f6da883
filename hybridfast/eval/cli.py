"""`hybridfast eval ...` commands: evaluate a model (`hybridfast eval --model DIR --task TASK`) and compare runs."""

from __future__ import annotations

from pathlib import Path

import typer

from hybridfast.errors import HybridfastError

app = typer.Typer(
    help="Evaluate an encoder (LAReQA, BEIR, Tatoeba) and compare runs.",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def eval_command(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", help="Checkpoint directory or hub id (see `hybridfast models`)."),
    task: str | None = typer.Option(None, "--task", help="lareqa (XQuAD-R / MLQA-R pools), beir, or tatoeba."),
    data: Path | None = typer.Option(
        None, "--data", help="Dataset folder; default: the task's folder (xquad-r, beir-scifact, tatoeba-laser) "
        "under $HYBRIDFAST_DATA or ./data."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the result JSON here (metrics, tables, per-query scores)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Texts per encoder batch."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ...; default: cuda when available."),
    langs: str | None = typer.Option(
        None, "--langs", help="lareqa, tatoeba: comma-separated languages as ISO 639-1 (de), ISO 639-3 (deu) or "
        "English names (German), matched to the data's own codes (Tatoeba's zh is cmn)."
    ),
    article_split: str | None = typer.Option(
        None, "--article-split", help="lareqa: 'eval' keeps only the held-out articles of the train/eval split."
    ),
    split: str = typer.Option("test", "--split", help="beir: the qrels split to evaluate."),
    with_context: bool = typer.Option(
        False, "--with-context", help="lareqa: encode each candidate sentence followed by its paragraph."
    ),
    top_k: int = typer.Option(100, "--top-k", help="beir: documents retrieved per query (recall@k, MAP@k)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show encoding progress bars."),
) -> None:
    """Evaluate a model on one task, print a markdown table and write a JSON result file.

    Example: hybridfast eval --model /tmp/e5 --task beir --data ../shared/data/beir-scifact --out scifact.json
    """
    if ctx.invoked_subcommand is not None:
        return
    if model is None or task is None:
        typer.echo("hybridfast eval: --model and --task are required (see hybridfast eval --help)", err=True)
        raise typer.Exit(2)
    from hybridfast.data.languages import parse_language_list
    from hybridfast.eval.results import save_result
    from hybridfast.eval.runner import evaluate, result_markdown

    try:
        result = evaluate(
            model, task, data, batch_size=batch_size, device=device,
            langs=parse_language_list(langs) if langs else None,
            article_split=article_split, split=split, with_context=with_context, top_k=top_k, progress=progress,
        )
    except HybridfastError as error:
        typer.echo(f"hybridfast eval: {error}", err=True)
        raise typer.Exit(2) from None
    if result["encoder"].get("note"):
        typer.echo(f"note: {result['encoder']['note']}", err=True)
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(result_markdown(result))
    timing = result["timing"]
    typer.echo(f"\n{result['task']} on {result['data']}: encoded {timing['texts_encoded']} texts in "
               f"{timing['encode_s']:.1f} s; wall time {timing['wall_s']:.1f} s")
    if out is not None:
        typer.echo(f"wrote {save_result(result, out)}")


@app.command("compare")
def compare_command(
    a: Path = typer.Argument(..., help="Result JSON of system A (the baseline)."),
    b: Path = typer.Argument(..., help="Result JSON of system B."),
    resamples: int = typer.Option(10_000, "--resamples", help="Random sign flips and bootstrap resamples per test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the randomization test and the bootstrap."),
    alpha: float = typer.Option(0.05, "--alpha", help="Family-wise significance level (Holm-Bonferroni)."),
    out: Path | None = typer.Option(None, "--out", help="Also write the comparison as JSON."),
) -> None:
    """Paired significance tests of B against A over shared queries, for every shared setting and metric.

    Each row: means of A and B, B − A with its bootstrap 95% CI, the paired randomization test's p-value and
    its Holm-Bonferroni adjusted value; "significant" uses the adjusted p-value.
    """
    import json

    from hybridfast.eval.compare import compare_results, comparison_markdown
    from hybridfast.eval.results import load_result

    try:
        if resamples < 1:
            raise HybridfastError(f"--resamples must be at least 1, not {resamples}")
        comparison = compare_results(load_result(a), load_result(b), n_resamples=resamples, seed=seed, alpha=alpha)
    except HybridfastError as error:
        typer.echo(f"hybridfast eval compare: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"A = {a} ({comparison['a']['model']})\nB = {b} ({comparison['b']['model']})\n")
    typer.echo(comparison_markdown(comparison))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(comparison, indent=1) + "\n")
        typer.echo(f"wrote {out}")
