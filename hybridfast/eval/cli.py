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
        "under the data root."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data root holding the task folders; default: $HYBRIDFAST_DATA, else ./data."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the result JSON here (metrics, tables, per-query scores)."),
    batch_size: int = typer.Option(
        64, "--batch-size", help="Most texts per encoder batch (batches also stay within the encoder's token budget)."
    ),
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
            model, task, data, data_dir=data_dir, batch_size=batch_size, device=device,
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
    a: str = typer.Argument(..., help="Result JSON of system A (the baseline); several training seeds: A0.json,A1.json."),
    b: str = typer.Argument(..., help="Result JSON of system B; several training seeds: B0.json,B1.json,B2.json."),
    unit: str = typer.Option(
        "question", "--unit", help="What is resampled together: question (its translations), article, or query "
        "(independent queries: BEIR, Tatoeba, or files without cluster labels)."),
    sensitivity: str = typer.Option("article", "--sensitivity", help="Other units tested too, comma-separated ('' for none)."),
    primary: str | None = typer.Option(
        None, "--primary", help="Primary endpoints, declared before looking: setting/metric, comma-separated (e.g. "
        "multi/map,multi/rank_distance). Only they get a verdict, Holm-adjusted; the rest is exploratory. "
        "Default: every row is primary."),
    margin: str | None = typer.Option(
        None, "--margin", help="Equivalence margins per metric for TOST, e.g. map=0.01,rank_distance=10."),
    resamples: int = typer.Option(10_000, "--resamples", help="Bootstrap resamples per test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    alpha: float = typer.Option(0.05, "--alpha", help="Family-wise significance level (Holm-Bonferroni)."),
    out: Path | None = typer.Option(None, "--out", help="Also write the comparison as JSON."),
) -> None:
    """Test B against A for every shared setting and metric, with training seeds and query clusters resampled.

    Each row: means of A and B, B − A with its 95% CI and p-value from a bootstrap that resamples each system's
    seed files and the queries' clusters (the translations of one question together), the Holm-Bonferroni
    adjusted p of the primary rows with their verdict, the same test at the sensitivity units, and with
    --margin an equivalence test (TOST) for claims of "no difference".

    Example: hybridfast eval compare x-y-seed0.json,x-y-seed1.json hybrid-seed0.json,hybrid-seed1.json --primary multi/map
    """
    import json

    from hybridfast.eval.compare import compare_results, comparison_markdown
    from hybridfast.eval.results import load_result

    def files(value: str) -> list[Path]:
        return [Path(part.strip()) for part in value.split(",") if part.strip()]

    try:
        margins = {}
        for item in (margin or "").split(","):
            if item.strip():
                name, _, value = item.partition("=")
                try:
                    margins[name.strip()] = float(value)
                except ValueError:
                    raise HybridfastError(f"--margin: expected metric=number, got {item.strip()!r}") from None
        comparison = compare_results(
            [load_result(path) for path in files(a)], [load_result(path) for path in files(b)],
            n_resamples=resamples, seed=seed, alpha=alpha, unit=unit,
            sensitivity_units=[u.strip() for u in sensitivity.split(",") if u.strip()],
            primary=[e.strip() for e in primary.split(",") if e.strip()] if primary is not None else None,
            margins=margins or None,
        )
    except HybridfastError as error:
        typer.echo(f"hybridfast eval compare: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"A = {a} ({comparison['a']['seeds']} file(s))\nB = {b} ({comparison['b']['seeds']} file(s))\n")
    typer.echo(comparison_markdown(comparison))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(comparison, indent=1) + "\n")
        typer.echo(f"wrote {out}")
