"""Compare `hybridfast eval` results of two systems, each given as one result file per training seed.

For every setting and metric that all files hold per query, the scores are paired on the query ids present and
scored in every file, and B − A is tested with the two-factor bootstrap of `hybridfast.eval.significance`:
training seeds and query *clusters* are resampled together. The resampling unit (`unit`) is the cluster level
stored in the result files (`per_query[setting]["clusters"]`): for LAReQA, "question" keeps the translations of
one question together and "article" the questions of one article; "query" treats every query as independent,
which is right only where queries are (BEIR, Tatoeba) and is the fallback, with a note, where a file has no
labels. Every other level in `sensitivity_units` is tested too and reported beside the primary unit's result,
where it has at least `MIN_SENSITIVITY_CLUSTERS` clusters.

Endpoints. `primary` names the (setting/metric) endpoints declared before looking at results: only they get a
verdict, after Holm-Bonferroni over all primary tests of the comparison (`family_holm` widens the family to
several comparisons). Every other row is *exploratory*: its estimate, CI and unadjusted p-value are shown, no
verdict. Without `primary` every row is primary (one family, the conservative default). `margins` ({metric:
m}) adds an equivalence test (TOST, |Δ| < m) per row, which is what a claim of "no effect" needs; a claim of
equivalence is held to the same family-wise standard as a claim of difference, so the TOST p-values of the primary
rows are Holm-adjusted over the same family (separately from the difference tests) and only they get a verdict.

Means are over the shared queries (micro), so they can differ slightly from the files' macro-averaged headline
numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hybridfast.errors import HybridfastError
from hybridfast.eval.results import CLUSTERS_KEY, block_metrics, format_value, markdown_table
from hybridfast.eval.significance import hierarchical_bootstrap, holm_bonferroni

LOWER_IS_BETTER = frozenset({"rank_distance"})
# A sensitivity level with fewer clusters is not tested: the bootstrap of K clusters has only C(2K-1, K) distinct
# resamples (10 for K = 3) and understates the variance by (K - 1) / K, so its p-value would mislead.
MIN_SENSITIVITY_CLUSTERS = 5
CLUSTER_UNITS = ("question", "article", "query")
Results = Mapping[str, Any] | Sequence[Mapping[str, Any]]


def compare_results(
    a: Results,
    b: Results,
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    unit: str = "question",
    sensitivity_units: Sequence[str] = ("article",),
    primary: Sequence[str] | None = None,
    margins: Mapping[str, float] | None = None,
    labels: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Test B against A (each a result dict or one per training seed) for every shared (setting, metric).

    `primary`: "setting/metric" names of the primary endpoints (None: every row). Returns the rows (estimate,
    CI, p, Holm-adjusted p and verdict for primary rows, sensitivity and equivalence results) and notes.
    """
    if not 0.0 < alpha < 0.5:
        raise HybridfastError(f"alpha must be between 0 and 0.5, not {alpha}")
    if n_resamples < 1:
        raise HybridfastError(f"resamples must be at least 1, not {n_resamples}")
    for name in (unit, *sensitivity_units):
        if name not in CLUSTER_UNITS:
            raise HybridfastError(f"unknown resampling unit {name!r}; use one of {', '.join(CLUSTER_UNITS)}")
    runs_a, runs_b = _as_list(a, "A"), _as_list(b, "B")
    tasks = {run.get("task") for run in [*runs_a, *runs_b]}
    if len(tasks) != 1:
        raise HybridfastError(f"cannot compare results of different tasks: {sorted(map(str, tasks))}")
    notes: list[str] = []
    data = {run.get("data") for run in [*runs_a, *runs_b]}
    if len(data) > 1:
        notes.append(f"the runs used different data paths: {sorted(map(str, data))}")
    rows: list[dict[str, Any]] = []
    fallback: list[str] = []
    for setting in runs_a[0]["per_query"]:
        blocks = [run["per_query"].get(setting) for run in [*runs_a, *runs_b]]
        if any(block is None for block in blocks):
            continue
        metrics = [m for m in block_metrics(blocks[0]) if all(m in block for block in blocks)]
        for metric in metrics:
            table = score_table(blocks, metric)
            if table is None:
                continue
            ids, scores, clusters = table
            scores_a, scores_b = scores[: len(runs_a)], scores[len(runs_a):]
            if unit != "query" and unit not in clusters:
                fallback.append(setting)
            row = _test_row(setting, metric, ids, scores_a, scores_b, clusters, unit, sensitivity_units,
                            n_resamples, seed, margins, alpha)
            rows.append(row)
    if not rows:
        raise HybridfastError("the result files share no per-query scores (no common setting, metric and query)")
    declared = set(primary) if primary is not None else None
    if declared is not None:
        unknown = sorted(declared - {f"{r['setting']}/{r['metric']}" for r in rows})
        if unknown:
            raise HybridfastError(f"primary endpoints not in the results: {', '.join(unknown)}")
    for row in rows:
        row["role"] = "primary" if declared is None or f"{row['setting']}/{row['metric']}" in declared else "exploratory"
    primary_rows = [row for row in rows if row["role"] == "primary"]
    _holm_verdicts(primary_rows, alpha)
    for row in rows:
        if row["role"] == "exploratory":
            row.update(p_holm=None, significant=None, better="")
            if "equivalence" in row:
                row["equivalence"].update(p_holm=None, equivalent=None)
    if fallback:
        notes.append(f"no {unit!r} cluster labels in setting(s) {', '.join(sorted(set(fallback)))}: queries were "
                     "resampled as independent units there")
    notes.append(
        f"{len(primary_rows)} primary test(s) form one family: their p-values (and TOST p-values, separately) are "
        f"Holm-Bonferroni adjusted (family-wise error rate {alpha}); {len(rows) - len(primary_rows)} exploratory "
        "row(s) get no verdict. "
        f"Two-factor bootstrap ({n_resamples} resamples, seed {seed}): {len(runs_a)} seed(s) of A and "
        f"{len(runs_b)} of B resampled independently, {unit}s resampled together for both."
    )
    return {
        "a": {"model": labels[0] if labels else runs_a[0].get("model"), "seeds": len(runs_a),
              "files": [run.get("model") for run in runs_a], "task": runs_a[0].get("task")},
        "b": {"model": labels[1] if labels else runs_b[0].get("model"), "seeds": len(runs_b),
              "files": [run.get("model") for run in runs_b], "task": runs_b[0].get("task")},
        "alpha": alpha,
        "n_resamples": n_resamples,
        "seed": seed,
        "unit": unit,
        "sensitivity_units": [u for u in sensitivity_units if u != unit],
        "primary": sorted(declared) if declared is not None else None,
        "margins": dict(margins or {}),
        "rows": rows,
        "notes": notes,
    }


def _as_list(results: Results, name: str) -> list[Mapping[str, Any]]:
    runs = [results] if isinstance(results, Mapping) else list(results)
    if not runs:
        raise HybridfastError(f"system {name}: no result files")
    return runs


def score_table(blocks: Sequence[Mapping[str, Any]], metric: str
                ) -> tuple[list[str], np.ndarray, dict[str, list[str]]] | None:
    """One setting's `metric` across result files (one per-query block per file): the query ids scored in every
    file, the [files, queries] score matrix, and each cluster level's labels of those queries (the files must agree
    on them). None when no query is scored in every file."""
    indexes = [{query_id: i for i, query_id in enumerate(block["ids"])} for block in blocks]
    ids = [q for q in blocks[0]["ids"] if all(q in index for index in indexes)]
    ids = [q for q in ids if all(block[metric][index[q]] is not None for block, index in zip(blocks, indexes, strict=True))]
    if not ids:
        return None
    matrix = np.array([[block[metric][index[q]] for q in ids] for block, index in zip(blocks, indexes, strict=True)],
                      dtype=np.float64)
    clusters: dict[str, list[str]] = {}
    for level in blocks[0].get(CLUSTERS_KEY, {}):
        per_file = [block.get(CLUSTERS_KEY, {}).get(level) for block in blocks]
        if any(found is None for found in per_file):
            continue
        mapped = [[found[index[q]] for q in ids] for found, index in zip(per_file, indexes, strict=True)]
        if any(m != mapped[0] for m in mapped[1:]):
            raise HybridfastError(f"the result files disagree on the {level!r} cluster of some queries")
        clusters[level] = mapped[0]
    return ids, matrix, clusters


def _test_row(setting: str, metric: str, ids: list[str], scores_a: np.ndarray, scores_b: np.ndarray,
              clusters: Mapping[str, list[str]], unit: str, sensitivity_units: Sequence[str], n_resamples: int,
              seed: int, margins: Mapping[str, float] | None, alpha: float) -> dict[str, Any]:
    main_unit = unit if unit == "query" or unit in clusters else "query"
    if main_unit != "query" and len(set(clusters[main_unit])) < 2:
        raise HybridfastError(f"{setting} {metric}: all shared queries are in one {main_unit}; a test needs at least "
                              f"two (use --unit query if they are independent)")
    test = hierarchical_bootstrap(scores_a, scores_b, clusters.get(main_unit), n_resamples=n_resamples, seed=seed)
    row: dict[str, Any] = {
        "setting": setting,
        "metric": metric,
        "queries": len(ids),
        "unit": main_unit,
        "clusters": test.clusters,
        "seeds_a": test.seeds_a,
        "seeds_b": test.seeds_b,
        "mean_a": float(scores_a.mean()),
        "mean_b": float(scores_b.mean()),
        "diff": test.diff,
        "ci_low": test.ci_low,
        "ci_high": test.ci_high,
        "p": test.p,
        "sensitivity": {},
    }
    for level in sensitivity_units:
        if level == main_unit or (level != "query" and level not in clusters):
            continue
        count = len(set(clusters[level])) if level != "query" else len(ids)
        if count < MIN_SENSITIVITY_CLUSTERS:
            row["sensitivity"][level] = {"clusters": count, "ci_low": None, "ci_high": None, "p": None,
                                         "note": f"{count} {level}(s): too few to test (at least {MIN_SENSITIVITY_CLUSTERS})"}
            continue
        other = hierarchical_bootstrap(scores_a, scores_b, clusters.get(level), n_resamples=n_resamples, seed=seed)
        row["sensitivity"][level] = {"clusters": other.clusters, "ci_low": other.ci_low, "ci_high": other.ci_high,
                                     "p": other.p}
    margin = (margins or {}).get(metric)
    if margin is not None:
        low, high = test.interval(1.0 - 2.0 * alpha)
        p_tost = test.equivalence_p(margin)
        row["equivalence"] = {"margin": margin, "ci_low": low, "ci_high": high, "p": p_tost}
    return row


def _holm_verdicts(rows: Sequence[dict[str, Any]], alpha: float) -> None:
    """Holm-Bonferroni over one family of rows: the difference tests' p-values give each row its p_holm and
    verdict; the TOST p-values of the rows with a margin, adjusted as a family of their own, give each of those its
    equivalence p_holm and verdict (a new dict: the caller's rows may share theirs with a comparison)."""
    for row, adjusted in zip(rows, holm_bonferroni([row["p"] for row in rows]), strict=True):
        _verdict(row, float(adjusted), alpha)
    tested = [row for row in rows if row.get("equivalence")]
    for row, adjusted in zip(tested, holm_bonferroni([row["equivalence"]["p"] for row in tested]), strict=True):
        row["equivalence"] = {**row["equivalence"], "p_holm": float(adjusted), "equivalent": bool(adjusted < alpha)}


def _verdict(row: dict[str, Any], p_holm: float, alpha: float) -> None:
    row["p_holm"] = p_holm
    row["significant"] = bool(p_holm < alpha)
    better = row["diff"] < 0 if row["metric"] in LOWER_IS_BETTER else row["diff"] > 0
    row["better"] = ("B" if better else "A") if row["significant"] else ""


def family_holm(comparisons: Mapping[str, Mapping[str, Any]], alpha: float = 0.05) -> dict[str, Any]:
    """Holm-Bonferroni over the primary rows of several comparisons (`{name: compare_results(...)}`): one
    family, one family-wise error rate. Returns every primary test with its family-adjusted p and verdict, and its
    equivalence test (where it has a margin) with the TOST p adjusted over the family's TOSTs and that verdict."""
    tests = []
    for name, comparison in comparisons.items():
        for row in comparison["rows"]:
            if row["role"] != "primary":
                continue
            tests.append({"comparison": name, "a": comparison["a"]["model"], "b": comparison["b"]["model"],
                          "task": comparison["a"]["task"], "setting": row["setting"], "metric": row["metric"],
                          "diff": row["diff"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "p": row["p"],
                          "unit": row["unit"], "clusters": row["clusters"], "sensitivity": row["sensitivity"],
                          "equivalence": row.get("equivalence")})
    _holm_verdicts(tests, alpha)
    return {"alpha": alpha, "family_size": len(tests), "tests": tests,
            "note": f"Holm-Bonferroni over all {len(tests)} primary tests of {len(comparisons)} comparisons (and, "
                    "separately, over their equivalence tests)"}


def comparison_markdown(comparison: Mapping[str, Any]) -> str:
    """The comparison as a markdown table, then one line per significant difference and the notes."""
    units = [comparison["unit"], *comparison["sensitivity_units"]]
    header = ["setting", "metric", "role", "n", "A", "B", "B − A", f"95% CI ({comparison['unit']})", "p", "p (Holm)",
              "significant", *[f"p ({u})" for u in units[1:]]]
    if comparison["margins"]:
        header.append("TOST p (|B − A| < margin)")
    table_rows = []
    for r in comparison["rows"]:
        verdict = "exploratory" if r["role"] == "exploratory" else (f"yes ({r['better']} better)" if r["significant"] else "no")
        cells = [r["setting"], r["metric"], r["role"], r["queries"], r["mean_a"], r["mean_b"], r["diff"],
                 f"[{format_value(r['ci_low'])}, {format_value(r['ci_high'])}]", r["p"], r["p_holm"], verdict,
                 *[r["sensitivity"].get(u, {}).get("p") for u in units[1:]]]
        if comparison["margins"]:
            eq = r.get("equivalence")
            holm = f", Holm {format_value(eq['p_holm'])}" if eq and eq["p_holm"] is not None else ""
            cells.append(f"{format_value(eq['p'])} (±{eq['margin']:g}{holm})" if eq else "–")
        table_rows.append(cells)
    lines = [markdown_table(header, table_rows), ""]
    significant = [r for r in comparison["rows"] if r["significant"]]
    for r in significant:
        lines.append(f"significant: {r['setting']} {r['metric']}: {r['better']} is better "
                     f"(B − A = {r['diff']:+.4f}, Holm p = {r['p_holm']:.4g})")
    if not significant:
        lines.append(f"no primary difference is significant at alpha = {comparison['alpha']} after Holm-Bonferroni "
                     "adjustment")
    lines.extend(f"note: {note}" for note in comparison["notes"])
    return "\n".join(lines)
