"""The report's numbers and verdicts, computed from the result files apart from the sentences that show them.

`report.py` only formats what this module returns; `tests/research/test_findings.py` tests the rules:

- **Estimates** (`arm_estimate`): a strategy's mean score over its seeds and the held-out queries, with a 95% CI
  from the same two-factor bootstrap as the tests (seeds × questions, `hybridfast.eval.significance`).
- **Effects** come from the comparison files: every primary test of every comparison, Holm-Bonferroni adjusted
  over the whole family (`hybridfast.eval.compare.family_holm`, the function that writes the compare stage's
  `compare/family.json`, applied to the comparison files when the report is made). An effect is "better" or "worse"
  only when its family-adjusted p is below α; otherwise there is no verdict ("no significant difference"), which is
  not evidence of equality. Equivalence (TOST within the stated margin) is claimed only when its p, Holm-adjusted
  over the family's equivalence tests, is below α: the same standard as a difference.
- **Agreement with the seed paper** (`paper_agreement`): a published difference agrees only when ours is
  significant in the same direction; a published difference of zero needs our family-adjusted equivalence test to
  pass.
- **Recommendations** (`recommendation`): a strategy is recommended only when the tests show it better than every
  other trained strategy on some primary endpoint and worse on none, and not worse than the zero-shot model on
  any; otherwise the report says that the tests support no choice.
- **Cost** (`cost_verdict`): "equivalent" only when every paired TOST between models passes at the stated margin.
  Cost and training-speed tests are recomputed from the samples in the result files (`cost_tests`, `speed_tests`),
  with the independent unit of each: the interleaved repeat, the round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from layout import ZERO_SHOT, ResultsLayout, read_json, read_steps, strategy_name

# Published, not measured here: Elmahdy, Lin & Ahmad 2024 (arXiv 2408.10536), XLM-R fine-tuned on XQuAD,
# evaluated on XQuAD-R: macro mAP (their Table 1) and mean rank distance (their Table 2), as quoted in
# shared/docs/ANCHORS.md.
SEED_PAPER_SOURCE = "Elmahdy, Lin & Ahmad 2024 (arXiv 2408.10536), XLM-R rows, Tables 1–2, via shared/docs/ANCHORS.md"
SEED_PAPER = {
    ("mono", "map"): {"x-x-mono": 0.792, "x-y": 0.755, "hybrid": 0.798},
    ("cross", "map"): {"x-x-mono": 0.674, "x-y": 0.700, "hybrid": 0.705},
    ("multi", "map"): {"x-x-mono": 0.547, "x-y": 0.593, "hybrid": 0.593},
    ("multi", "rank_distance"): {"x-x-mono": 410.2, "x-y": 295.4, "hybrid": 286.6},
}
LOWER_IS_BETTER = frozenset({"rank_distance"})
# A learning curve whose last interval still moves multi mAP by more than this counts as not flat.
CURVE_TOLERANCE = 0.005


@dataclass(frozen=True)
class Estimate:
    """A strategy's mean over seeds and queries, its 95% CI, and the per-seed headline values."""

    mean: float
    ci_low: float
    ci_high: float
    seeds: int
    per_seed: list[float]


@dataclass
class Results:
    """Everything found under one results folder."""

    layout: ResultsLayout
    experiment: dict[str, Any]
    steps: list[dict[str, Any]]
    train: dict[str, dict[str, Any]] = field(default_factory=dict)
    evals: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    compares: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    family: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    speed: dict[str, Any] | None = None
    curve_start: dict[str, Any] | None = None
    pruning: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)

    @property
    def strategies(self) -> list[str]:
        """Strategy names, α from 1 (X-X-mono) down to 0 (X-Y)."""
        return [strategy_name(a) for a in sorted(self.experiment["alphas"], reverse=True)]

    def runs_of(self, strategy: str) -> list[str]:
        if strategy == ZERO_SHOT:
            return [ZERO_SHOT]
        return [r["run"] for r in self.experiment["runs"] if r["strategy"] == strategy]

    def seed_results(self, model: str, task: str) -> list[dict[str, Any]] | None:
        """The eval results of a strategy's seeds (zero-shot: one), None while any is missing."""
        found = [self.evals.get((run, task)) for run in self.runs_of(model)]
        return None if not found or any(r is None for r in found) else found  # type: ignore[return-value]


def load_results(root: Path) -> Results:
    layout = ResultsLayout(root)
    if not layout.experiment_file.is_file():
        raise SystemExit(f"report: {layout.experiment_file} not found: run benchmarks/research/experiment.py first")
    res = Results(layout, read_json(layout.experiment_file), read_steps(layout))
    exp = res.experiment
    for run in exp["runs"]:
        path = layout.train_file(run["run"])
        if path.is_file():
            res.train[run["run"]] = read_json(path)
        else:
            res.missing.append(f"training of {run['run']}")
    for model in [ZERO_SHOT, *(r["run"] for r in exp["runs"])]:
        for task in exp["tasks"]:
            path = layout.eval_file(model, task)
            if path.is_file():
                res.evals[(model, task)] = read_json(path)
            else:
                res.missing.append(f"evaluation of {model} on {task}")
    for pair in exp["comparisons"]:
        path = layout.compare_file(pair["task"], pair["a"], pair["b"])
        if path.is_file():
            res.compares[(pair["task"], pair["a"], pair["b"])] = read_json(path)
        else:
            res.missing.append(f"significance test {pair['task']}: {pair['b']} vs {pair['a']}")
    if res.compares and len(res.compares) == len(exp["comparisons"]):
        from hybridfast.eval.compare import family_holm

        res.family = family_holm({f"{task}/{b}__vs__{a}": comparison for (task, a, b), comparison in res.compares.items()},
                                 alpha=exp["stats_settings"]["alpha"])
    optional = {"cost": (layout.cost_file, "inference cost (timing stage)"),
                "speed": (layout.training_speed_file, "training speed (timing stage)"),
                "curve_start": (layout.curve_start_file, None), "pruning": (layout.pruning_file, None)}
    for name, (path, label) in optional.items():
        if path.is_file():
            setattr(res, name, read_json(path))
        elif label is not None:
            res.missing.append(label)
    return res


# ---- estimates --------------------------------------------------------------------------------------------
def arm_estimate(res: Results, model: str, task: str, setting: str, metric: str, *, n_resamples: int = 2_000,
                 unit: str = "question") -> Estimate | None:
    """Mean over seeds and queries with a two-factor bootstrap 95% CI (queries clustered by `unit` when the
    files carry it); None while a seed's result is missing."""
    from hybridfast.eval.compare import score_table
    from hybridfast.eval.significance import bootstrap_mean

    results = res.seed_results(model, task)
    if results is None or any(metric not in r["per_query"].get(setting, {}) for r in results):
        return None
    table = score_table([r["per_query"][setting] for r in results], metric)
    if table is None or len(table[0]) < 2:
        return None
    _, matrix, clusters = table
    test = bootstrap_mean(matrix, clusters.get(unit), n_resamples=n_resamples)
    per_seed = [r["metrics"].get(setting, {}).get(metric) for r in results]
    return Estimate(test.diff, test.ci_low, test.ci_high, len(results), per_seed)


def family_test(res: Results, task: str, a: str, b: str, setting: str, metric: str) -> dict[str, Any] | None:
    """The family-adjusted test of B against A on one primary endpoint, None if it was not run."""
    if res.family is None:
        return None
    return next((t for t in res.family["tests"] if t["task"] == task and t["a"] == a and t["b"] == b
                 and t["setting"] == setting and t["metric"] == metric), None)


def exploratory_rows(res: Results) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(task, A, B, row) for every exploratory row of every comparison."""
    return [(task, a, b, row) for (task, a, b), comparison in res.compares.items()
            for row in comparison["rows"] if row["role"] == "exploratory"]


# ---- verdicts ---------------------------------------------------------------------------------------------
def improves(diff: float, metric: str) -> bool:
    return diff < 0 if metric in LOWER_IS_BETTER else diff > 0


def effect_verdict(test: dict[str, Any]) -> str:
    """"better" / "worse" (B against A, after family-wide Holm) or "no significant difference"."""
    if not test["significant"]:
        return "no significant difference"
    return "better" if improves(test["diff"], test["metric"]) else "worse"


def paper_agreement(test: dict[str, Any] | None, paper_diff: float, metric: str) -> str:
    """Whether our effect agrees with a published one (module docstring)."""
    if test is None:
        return "not tested"
    if paper_diff == 0:
        if test["significant"]:
            return "disagrees: a significant difference where the paper has none"
        eq = test.get("equivalence")
        if eq is None:
            return "not tested: no equivalence margin for this metric"
        if eq["equivalent"]:
            return f"agrees: equivalent within ±{eq['margin']:g} (TOST Holm p = {eq['p_holm']:.3g})"
        return f"inconclusive: not significant, and not shown equivalent within ±{eq['margin']:g}"
    if not test["significant"]:
        return "inconclusive: not significant"
    if improves(test["diff"], metric) == improves(paper_diff, metric):
        return "agrees: significant, in the paper's direction"
    return "disagrees: significant, against the paper's direction"


def standing_against_zero_shot(res: Results, strategy: str, endpoints: Sequence[tuple[str, str, str]]
                               ) -> list[tuple[tuple[str, str, str], str, dict[str, Any] | None]]:
    """Per primary endpoint: how a trained strategy compares with the zero-shot model."""
    out = []
    for endpoint in endpoints:
        test = family_test(res, endpoint[0], ZERO_SHOT, strategy, endpoint[1], endpoint[2])
        out.append((endpoint, effect_verdict(test) if test else "not tested", test))
    return out


def primary_endpoints(res: Results) -> list[tuple[str, str, str]]:
    return [tuple(e.split("/")) for e in res.experiment["stats_settings"]["primary"]]  # type: ignore[misc]


def recommendation(res: Results) -> dict[str, Any]:
    """The strategy the tests support, if any, with the reasons (module docstring)."""
    endpoints = primary_endpoints(res)
    if res.family is None:
        return {"strategy": None, "reason": "the primary tests have not run"}
    trained = res.strategies
    reasons = []
    for candidate in trained:
        others = [s for s in trained if s != candidate]
        wins, losses, untested = [], [], []
        for other in others:
            for task, setting, metric in endpoints:
                test = family_test(res, task, other, candidate, setting, metric)
                if test is None:
                    untested.append(other)
                    continue
                verdict = effect_verdict(test)
                if verdict == "better":
                    wins.append((other, setting, metric))
                elif verdict == "worse":
                    losses.append((other, setting, metric))
        if untested:
            continue
        beaten = {other for other, _, _ in wins}
        against_zero = [e for e, verdict, _ in standing_against_zero_shot(res, candidate, endpoints) if verdict == "worse"]
        if beaten == set(others) and not losses and not against_zero:
            return {"strategy": candidate, "reason": "better than every other trained strategy on some primary "
                    "endpoint, worse on none, and not worse than the zero-shot model on any", "wins": wins}
        reasons.append({"strategy": candidate, "beats": sorted(beaten), "losses": losses, "worse_than_zero_shot": against_zero})
    return {"strategy": None, "reason": "no trained strategy is better than every other on some primary endpoint "
            "while worse on none and not worse than the zero-shot model", "candidates": reasons}


def cost_tests(cost: dict[str, Any], margin: float) -> list[dict[str, Any]]:
    """Every paired TOST between the measured models, recomputed from the repeats (`inference_cost`)."""
    from inference_cost import equivalence_tests

    return equivalence_tests(cost["samples"], margin)


def speed_tests(speed: dict[str, Any], margin: float) -> list[dict[str, Any]]:
    """Every pairwise TOST of training tokens/s, recomputed from the per-step samples with the round as the unit
    (`timing.equivalence_tests`)."""
    from timing import equivalence_tests

    return equivalence_tests(speed["samples"], margin)


def cost_verdict(cost: dict[str, Any] | None, path: str = "lean", margin: float | None = None) -> dict[str, Any] | None:
    """Whether every pair of models was shown equivalent in cost (paired TOST on the repeats' log-ratios, recomputed
    from the samples) on `path`, and how many pairs differ (95% interval of the ratio excluding 1, unadjusted)."""
    if cost is None or not cost.get("samples"):
        return None
    margin = margin if margin is not None else cost.get("equivalence", [{}])[0].get("margin", 0.03)
    tests = [t for t in cost_tests(cost, margin) if t["path"] == path]
    if not tests:
        return None
    equivalent = [t for t in tests if t["equivalent"]]
    differ = [t for t in tests if t["ratio_ci95"][0] > 1 or t["ratio_ci95"][1] < 1]
    return {"path": path, "tests": len(tests), "equivalent": len(equivalent), "all_equivalent": len(equivalent) == len(tests),
            "differ": len(differ), "margin": margin,
            "max_ratio_deviation": max(abs(t["ratio_b_over_a"] - 1) for t in tests),
            "widest_ci": [min(t["ratio_ci90"][0] for t in tests), max(t["ratio_ci90"][1] for t in tests)]}


def curve_summary(res: Results, metric: str = "multi_map") -> dict[str, dict[str, Any]]:
    """Per strategy: mean curve over seeds (step 0 = the zero-shot point) and whether its last interval is flat."""
    out: dict[str, dict[str, Any]] = {}
    start = res.curve_start["eval"][metric] if res.curve_start else None
    for strategy in res.strategies:
        curves = [dict((step, point[metric]) for step, point in res.train[run]["eval_curve"])
                  for run in res.runs_of(strategy) if run in res.train and res.train[run].get("eval_curve")]
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        if start is not None:
            for c in curves:
                c[0] = start
            steps = [0, *steps]
        values = np.array([[c[s] for s in steps] for c in curves])
        mean = values.mean(axis=0)
        last_change = float(mean[-1] - mean[-2]) if len(steps) >= 2 else math.nan
        out[strategy] = {"steps": steps, "mean": mean.tolist(), "min": values.min(axis=0).tolist(),
                         "max": values.max(axis=0).tolist(), "seeds": len(curves), "last_change": last_change,
                         "flat": bool(abs(last_change) <= CURVE_TOLERANCE) if math.isfinite(last_change) else None}
    return out


def realized_mix(res: Results) -> list[dict[str, Any]]:
    """Per run: α, the monolingual batches scheduled and drawn, the realized monolingual fraction."""
    rows = []
    for run in res.experiment["runs"]:
        t = res.train.get(run["run"])
        if t is not None:
            rows.append({"run": run["run"], "alpha": run["alpha"], "mono": t["mono_batches"], "cross": t["cross_batches"],
                         "scheduled": t.get("scheduled_mono_batches"), "fraction": t.get("realized_mono_fraction")})
    return rows
