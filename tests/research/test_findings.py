"""The report's verdict rules (`benchmarks/research/findings.py`) on constructed results, apart from the prose."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

RESEARCH = Path(__file__).resolve().parents[2] / "benchmarks" / "research"


def _module(name: str) -> ModuleType:
    if str(RESEARCH) not in sys.path:
        sys.path.insert(0, str(RESEARCH))
    spec = importlib.util.spec_from_file_location(f"research_{name}", RESEARCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fd = _module("findings")
layout = _module("layout")
cost_module = _module("inference_cost")
timing = _module("timing")

ENDPOINTS = ["lareqa/multi/map", "lareqa/mono/map", "beir/test/ndcg@10"]


def _test(a, b, setting, metric, diff, significant, task="lareqa", equivalence=None):
    return {"task": task, "a": a, "b": b, "setting": setting, "metric": metric, "diff": diff, "ci_low": diff - 0.01,
            "ci_high": diff + 0.01, "p": 0.001 if significant else 0.5, "p_holm": 0.01 if significant else 1.0,
            "significant": significant, "equivalence": equivalence, "sensitivity": {}}


def _results(tmp_path, tests):
    experiment = {"alphas": [1.0, 0.0, 0.5], "runs": [], "tasks": ["lareqa", "beir"], "comparisons": [],
                  "stats_settings": {"primary": ENDPOINTS, "unit": "question"}}
    res = fd.Results(layout.ResultsLayout(tmp_path), experiment, [])
    res.family = {"tests": tests, "family_size": len(tests)}
    return res


def _all_tests(overrides):
    """Every primary test of hybrid vs both baselines and of each strategy vs zero-shot: no significant
    difference, except the (a, b, setting, metric) keys in `overrides` -> (diff, significant)."""
    tests = []
    pairs = [("x-x-mono", "hybrid"), ("x-y", "hybrid"), ("zero-shot", "x-x-mono"), ("zero-shot", "x-y"),
             ("zero-shot", "hybrid")]
    for a, b in pairs:
        for endpoint in ENDPOINTS:
            task, setting, metric = endpoint.split("/")
            diff, significant = overrides.get((a, b, setting, metric), (0.001, False))
            tests.append(_test(a, b, setting, metric, diff, significant, task=task))
    return tests


def test_paper_agreement_needs_significance_and_equivalence():
    sig_up = _test("x-y", "hybrid", "mono", "map", 0.02, True)
    assert fd.paper_agreement(sig_up, 0.043, "map").startswith("agrees")
    assert fd.paper_agreement(sig_up, -0.01, "map").startswith("disagrees")
    # A tiny effect with the paper's sign is not agreement when it is not significant (the issue's +0.0001).
    tiny = _test("x-y", "hybrid", "mono", "map", 0.0001, False)
    assert fd.paper_agreement(tiny, 0.043, "map") == "inconclusive: not significant"
    # Rank distance: lower is better, so a significant negative difference agrees with a negative published one.
    assert fd.paper_agreement(_test("x-y", "hybrid", "multi", "rank_distance", -5.0, True), -8.8, "rank_distance").startswith("agrees")
    # A published non-effect: only a passing equivalence test agrees.
    equivalent = _test("x-y", "hybrid", "multi", "map", 0.001, False,
                       equivalence={"margin": 0.01, "p": 0.001, "p_holm": 0.02, "equivalent": True})
    not_shown = _test("x-y", "hybrid", "multi", "map", 0.001, False,
                      equivalence={"margin": 0.01, "p": 0.01, "p_holm": 0.3, "equivalent": False})
    different = _test("x-y", "hybrid", "multi", "map", -0.03, True,
                      equivalence={"margin": 0.01, "p": 0.9, "p_holm": 1.0, "equivalent": False})
    assert fd.paper_agreement(equivalent, 0.0, "map") == "agrees: equivalent within ±0.01 (TOST Holm p = 0.02)"
    assert fd.paper_agreement(not_shown, 0.0, "map").startswith("inconclusive")
    assert fd.paper_agreement(different, 0.0, "map").startswith("disagrees")
    assert fd.paper_agreement(None, 0.0, "map") == "not tested"


def test_family_is_holm_adjusted_over_every_comparison_file(tmp_path):
    # Five comparisons, one primary row each, each with TOST p = 0.02: unadjusted every one would show equivalence;
    # Holm over the family's five TOSTs (0.02 x 5 ... x 1, monotone: all 0.1) shows none.
    pairs = [("x-x-mono", "hybrid"), ("x-y", "hybrid"), ("zero-shot", "x-x-mono"), ("zero-shot", "x-y"),
             ("zero-shot", "hybrid")]
    res = _results(tmp_path, [])
    res.experiment["comparisons"] = [{"task": "lareqa", "a": a, "b": b} for a, b in pairs]
    res.experiment["stats_settings"]["alpha"] = 0.05
    layout.write_json(res.layout.experiment_file, res.experiment)
    for a, b in pairs:
        row = {"setting": "mono", "metric": "map", "role": "primary", "p": 0.004, "diff": 0.001, "ci_low": -0.01,
               "ci_high": 0.01, "unit": "question", "clusters": 40, "sensitivity": {},
               "equivalence": {"margin": 0.01, "p": 0.02, "p_holm": 0.02, "equivalent": True}}
        layout.write_json(res.layout.compare_file("lareqa", a, b), {"a": {"model": a, "task": "lareqa"},
                                                                    "b": {"model": b, "task": "lareqa"}, "rows": [row]})
    loaded = fd.load_results(tmp_path)
    assert loaded.family["family_size"] == 5
    assert [t["p_holm"] for t in loaded.family["tests"]] == pytest.approx([0.02] * 5)
    assert all(t["significant"] for t in loaded.family["tests"])
    assert [t["equivalence"]["p_holm"] for t in loaded.family["tests"]] == pytest.approx([0.1] * 5)
    assert not any(t["equivalence"]["equivalent"] for t in loaded.family["tests"])
    hybrid_vs_xy = fd.family_test(loaded, "lareqa", "x-y", "hybrid", "mono", "map")
    assert fd.paper_agreement(hybrid_vs_xy, 0.0, "map").startswith("disagrees")


def test_effect_verdict_follows_metric_direction():
    assert fd.effect_verdict(_test("a", "b", "multi", "rank_distance", -3.0, True)) == "better"
    assert fd.effect_verdict(_test("a", "b", "multi", "map", -0.03, True)) == "worse"
    assert fd.effect_verdict(_test("a", "b", "multi", "map", 0.03, False)) == "no significant difference"


def test_recommendation_only_when_the_tests_support_it(tmp_path):
    wins = {("x-x-mono", "hybrid", "multi", "map"): (0.03, True), ("x-y", "hybrid", "mono", "map"): (0.02, True)}
    res = _results(tmp_path, _all_tests(wins))
    rec = fd.recommendation(res)
    assert rec["strategy"] == "hybrid" and len(rec["wins"]) == 2
    # Beating only one baseline is not enough.
    res = _results(tmp_path, _all_tests({("x-x-mono", "hybrid", "multi", "map"): (0.03, True)}))
    assert fd.recommendation(res)["strategy"] is None
    # Worse than a baseline on any primary endpoint blocks it.
    res = _results(tmp_path, _all_tests({**wins, ("x-y", "hybrid", "multi", "map"): (-0.02, True)}))
    assert fd.recommendation(res)["strategy"] is None
    # So does being worse than the zero-shot model (e.g. on SciFact).
    res = _results(tmp_path, _all_tests({**wins, ("zero-shot", "hybrid", "test", "ndcg@10"): (-0.02, True)}))
    rec = fd.recommendation(res)
    assert rec["strategy"] is None
    assert rec["candidates"][0]["worse_than_zero_shot"] == [("beir", "test", "ndcg@10")]


def test_standing_against_zero_shot_reports_every_endpoint(tmp_path):
    res = _results(tmp_path, _all_tests({("zero-shot", "x-y", "test", "ndcg@10"): (-0.03, True),
                                         ("zero-shot", "x-y", "multi", "map"): (0.1, True)}))
    standing = {endpoint: verdict for endpoint, verdict, _ in fd.standing_against_zero_shot(res, "x-y", fd.primary_endpoints(res))}
    assert standing == {("lareqa", "multi", "map"): "better", ("lareqa", "mono", "map"): "no significant difference",
                        ("beir", "test", "ndcg@10"): "worse"}


def _cost_samples(factors: dict[str, float], noise: float, repeats: int = 10, seed: int = 1) -> list[dict]:
    """Interleaved repeats: a shared drift per repeat (the machine), a model factor, small independent noise."""
    rng = np.random.default_rng(seed)
    samples = []
    for repeat in range(repeats):
        drift = rng.normal(0, 0.05)
        for model, factor in factors.items():
            value = 100 * np.exp(drift) * factor * np.exp(rng.normal(0, noise))
            samples.append({"model": model, "path": "lean", "repeat": repeat, "passages_per_s": value,
                            "latency_mean_ms": 1000 / value})
    return samples


def test_cost_verdict_requires_every_pair_equivalent():
    precise = fd.cost_verdict({"samples": _cost_samples({"z": 1.0, "m": 1.0}, noise=0.003)}, "lean", 0.03)
    assert precise["tests"] == 2 and precise["all_equivalent"] and precise["differ"] == 0
    # A real 10 % difference: not equivalent, and it shows as a difference.
    slower = fd.cost_verdict({"samples": _cost_samples({"z": 1.0, "y": 1.10}, noise=0.003)}, "lean", 0.03)
    assert slower["equivalent"] == 0 and slower["differ"] == 2
    # Same cost, but too noisy to show equivalence within ±3 %: neither equivalent nor different.
    noisy = fd.cost_verdict({"samples": _cost_samples({"z": 1.0, "m": 1.0}, noise=0.08, seed=4)}, "lean", 0.03)
    assert noisy["equivalent"] == 0 and noisy["differ"] == 0
    assert fd.cost_verdict(None) is None and fd.cost_verdict({"samples": []}) is None


def test_curve_summary_prepends_the_zero_shot_point_and_judges_flatness(tmp_path):
    res = _results(tmp_path, [])
    res.experiment["alphas"] = [0.5]
    res.experiment["runs"] = [{"run": f"hybrid-seed{s}", "strategy": "hybrid", "alpha": 0.5, "seed": s} for s in (0, 1)]
    res.curve_start = {"eval": {"multi_map": 0.30}}
    res.train = {"hybrid-seed0": {"eval_curve": [[25, {"multi_map": 0.40}], [50, {"multi_map": 0.402}]]},
                 "hybrid-seed1": {"eval_curve": [[25, {"multi_map": 0.42}], [50, {"multi_map": 0.424}]]}}
    summary = fd.curve_summary(res)["hybrid"]
    assert summary["steps"] == [0, 25, 50] and summary["seeds"] == 2
    assert summary["mean"] == pytest.approx([0.30, 0.41, 0.413])
    assert summary["last_change"] == pytest.approx(0.003) and summary["flat"]
    res.train["hybrid-seed1"]["eval_curve"][1][1]["multi_map"] = 0.44
    assert not fd.curve_summary(res)["hybrid"]["flat"]


def test_arm_estimate_pools_seeds_and_clusters_questions(tmp_path):
    from hybridfast.eval.results import new_result, per_query_block

    res = _results(tmp_path, [])
    res.experiment["alphas"] = [0.5]
    res.experiment["runs"] = [{"run": f"hybrid-seed{s}", "strategy": "hybrid", "alpha": 0.5, "seed": s} for s in (0, 1)]
    ids = [f"{lang}:q{q}" for lang in ("de", "en") for q in range(30)]
    clusters = {"question": [i.split(":")[1] for i in ids]}
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        result = new_result("lareqa", "m", "d", {}, {})
        values = rng.uniform(size=len(ids))
        result["per_query"] = {"multi": per_query_block(ids, {"map": values}, clusters)}
        result["metrics"] = {"multi": {"map": float(values.mean())}}
        res.evals[(f"hybrid-seed{seed}", "lareqa")] = result
    est = fd.arm_estimate(res, "hybrid", "lareqa", "multi", "map", n_resamples=500)
    assert est.seeds == 2 and est.mean == pytest.approx(np.mean(est.per_seed), abs=1e-6)
    assert est.ci_low < est.mean < est.ci_high
    assert fd.arm_estimate(res, "x-y", "lareqa", "multi", "map") is None


def test_tail_percentiles_only_with_enough_samples():
    assert cost_module.tail_percentile(np.arange(32.0), 99) is None  # p99 of 32 latencies would be the maximum
    assert cost_module.tail_percentile(np.arange(99.0), 90) is None
    assert cost_module.tail_percentile(np.arange(100.0), 90) == pytest.approx(89.1)
    assert cost_module.tail_percentile(np.arange(1000.0), 99) == pytest.approx(989.01)


def test_cost_equivalence_is_a_paired_tost_on_log_ratios():
    samples = _cost_samples({"z": 1.0, "m": 1.005, "y": 1.10}, noise=0.003)
    tests = {(t["a"], t["b"], t["metric"]): t for t in cost_module.equivalence_tests(samples, 0.03)}
    assert tests[("z", "m", "passages_per_s")]["equivalent"]
    assert tests[("z", "m", "passages_per_s")]["ratio_b_over_a"] == pytest.approx(1.005, abs=0.004)
    low90, high90 = tests[("z", "m", "passages_per_s")]["ratio_ci90"]
    low95, high95 = tests[("z", "m", "passages_per_s")]["ratio_ci95"]
    assert low95 < low90 < high90 < high95
    assert not tests[("z", "y", "passages_per_s")]["equivalent"]
    assert not tests[("z", "y", "latency_mean_ms")]["equivalent"]


def _speed_samples(levels: dict[str, list[float]], step_noise: float, steps: int = 8, seed: int = 3) -> list[dict]:
    """Per-step tokens/s of each strategy in each round: the round's level times a small per-step noise."""
    rng = np.random.default_rng(seed)
    return [{"strategy": name, "round": r, "step": step, "tokens_per_s": 600 * level * np.exp(rng.normal(0, step_noise))}
            for name, per_round in levels.items() for r, level in enumerate(per_round) for step in range(steps)]


def test_training_speed_tests_take_the_round_as_the_unit():
    # The machine drifts by ±15 % between rounds, shared by the strategies of one round: paired by round, a 0.5 %
    # difference is shown equivalent within ±3 %.
    drift = [1.0, 0.85, 1.15, 0.95]
    shared = timing.equivalence_tests(_speed_samples({"a": drift, "b": [1.005 * d for d in drift]}, 0.01), 0.03)
    (test,) = shared
    assert test["rounds"] == 4 and test["equivalent"] and test["ratio_b_over_a"] == pytest.approx(1.005, abs=0.01)
    # Round levels that the strategies do not share (each met the machine in a different state): 8 steps per round
    # do not make two rounds more than two observations, and the interval says so.
    apart = timing.equivalence_tests(_speed_samples({"a": [1.0, 0.8], "b": [0.82, 1.0]}, 0.01), 0.03)
    (test,) = apart
    assert test["rounds"] == 2 and not test["equivalent"]
    assert test["ratio_ci90"][1] / test["ratio_ci90"][0] > 2.0
    # One round: no test at all.
    assert timing.equivalence_tests(_speed_samples({"a": [1.0], "b": [1.0]}, 0.01), 0.03) == []
    assert fd.speed_tests({"samples": _speed_samples({"a": drift, "b": drift}, 0.01)}, 0.03)[0]["equivalent"]
