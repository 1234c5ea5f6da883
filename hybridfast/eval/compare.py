"""Compare two `hybridfast eval` result files query by query.

For every setting and metric that both files hold per query, the scores are paired on the query ids
present (and scored) in both, and tested with a two-sided paired randomization test and a percentile
bootstrap 95% CI of the mean difference B - A (`hybridfast.eval.significance`). All p-values of one
comparison form one family: they are Holm-Bonferroni adjusted, and a difference is called significant when
its adjusted p-value is below alpha. Means are over the shared queries (micro), so they can differ slightly
from the files' macro-averaged headline numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hybridfast.errors import HybridfastError
from hybridfast.eval.results import format_value, markdown_table
from hybridfast.eval.significance import bootstrap_ci, holm_bonferroni, paired_randomization_test

LOWER_IS_BETTER = frozenset({"rank_distance"})


def compare_results(
    a: dict[str, Any],
    b: dict[str, Any],
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Paired tests of B against A for every shared (setting, metric); returns rows and notes."""
    if not 0.0 < alpha < 1.0:
        raise HybridfastError(f"alpha must be between 0 and 1, not {alpha}")
    if a.get("task") != b.get("task"):
        raise HybridfastError(f"cannot compare a {a.get('task')!r} result with a {b.get('task')!r} result")
    notes = []
    if a.get("data") != b.get("data"):
        notes.append(f"the runs used different data paths: {a.get('data')!r} and {b.get('data')!r}")
    rows: list[dict[str, Any]] = []
    for setting, block_a in a["per_query"].items():
        block_b = b["per_query"].get(setting)
        if block_b is None:
            continue
        metrics = [m for m in block_a if m != "ids" and m in block_b]
        index_b = {query_id: i for i, query_id in enumerate(block_b["ids"])}
        shared = [(i, index_b[q]) for i, q in enumerate(block_a["ids"]) if q in index_b]
        for metric in metrics:
            pairs = [(block_a[metric][i], block_b[metric][j]) for i, j in shared]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            if not pairs:
                continue
            scores_a = np.array([x for x, _ in pairs], dtype=np.float64)
            scores_b = np.array([y for _, y in pairs], dtype=np.float64)
            low, high = bootstrap_ci(scores_a, scores_b, n_resamples=n_resamples, seed=seed)
            rows.append({
                "setting": setting,
                "metric": metric,
                "queries": len(pairs),
                "mean_a": float(scores_a.mean()),
                "mean_b": float(scores_b.mean()),
                "diff": float((scores_b - scores_a).mean()),
                "ci_low": low,
                "ci_high": high,
                "p": paired_randomization_test(scores_a, scores_b, n_resamples=n_resamples, seed=seed),
            })
    if not rows:
        raise HybridfastError("the two result files share no per-query scores (no common setting, metric and query)")
    for row, adjusted in zip(rows, holm_bonferroni([row["p"] for row in rows]), strict=True):
        row["p_holm"] = float(adjusted)
        row["significant"] = bool(adjusted < alpha)
        better = row["diff"] < 0 if row["metric"] in LOWER_IS_BETTER else row["diff"] > 0
        row["better"] = "B" if row["significant"] and better else "A" if row["significant"] else ""
    notes.append(
        f"{len(rows)} tests form one family: p-values are Holm-Bonferroni adjusted (family-wise error rate "
        f"{alpha}); unadjusted p-values are shown for reference. Randomization test and bootstrap use "
        f"{n_resamples} resamples, seed {seed}."
    )
    return {
        "a": {"model": a.get("model"), "task": a.get("task"), "data": a.get("data")},
        "b": {"model": b.get("model"), "task": b.get("task"), "data": b.get("data")},
        "alpha": alpha,
        "n_resamples": n_resamples,
        "seed": seed,
        "rows": rows,
        "notes": notes,
    }


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """The comparison as a markdown table, then one line per significant difference and the notes."""
    header = ["setting", "metric", "n", "A", "B", "B − A", "95% CI", "p", "p (Holm)", "significant"]
    table_rows = [
        [r["setting"], r["metric"], r["queries"], r["mean_a"], r["mean_b"], r["diff"],
         f"[{format_value(r['ci_low'])}, {format_value(r['ci_high'])}]", r["p"], r["p_holm"],
         f"yes ({r['better']} better)" if r["significant"] else "no"]
        for r in comparison["rows"]
    ]
    lines = [markdown_table(header, table_rows), ""]
    significant = [r for r in comparison["rows"] if r["significant"]]
    if significant:
        for r in significant:
            lines.append(
                f"significant: {r['setting']} {r['metric']}: {r['better']} is better "
                f"(B − A = {r['diff']:+.4f}, Holm p = {r['p_holm']:.4g})"
            )
    else:
        lines.append(f"no difference is significant at alpha = {comparison['alpha']} after Holm-Bonferroni adjustment")
    lines.extend(f"note: {note}" for note in comparison["notes"])
    return "\n".join(lines)
