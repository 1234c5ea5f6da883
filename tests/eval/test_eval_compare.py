"""`compare`: seeds and clusters resampled, primary vs exploratory endpoints, Holm over a family, TOST, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hybridfast.errors import HybridfastError
from hybridfast.eval.cli import app
from hybridfast.eval.compare import compare_results, comparison_markdown, family_holm
from hybridfast.eval.results import (
    RESULT_FORMAT,
    ResultFileError,
    load_result,
    new_result,
    per_query_block,
    save_result,
)


def _result(ids, per_setting, task="lareqa", clusters=None, model="model"):
    result = new_result(task, model, "data", {}, {})
    result["per_query"] = {setting: per_query_block(ids, scores, clusters) for setting, scores in per_setting.items()}
    return result


def _lareqa_pair(effect=0.02, spread=0.1, n_questions=40, langs=11, n_articles=8):
    """A and B on `n_questions` questions × `langs` translations: B − A is a question-level effect (mean
    `effect`, sd `spread`) shared by the translations, so the rows are far from independent."""
    z = np.linspace(-1.0, 1.0, n_questions)
    per_question = effect + spread * (z - z.mean()) / z.std(ddof=1)
    ids, clusters = [], {"question": [], "article": []}
    for lang in range(langs):
        for q in range(n_questions):
            ids.append(f"l{lang}:q{q}")
            clusters["question"].append(f"q{q}")
            clusters["article"].append(f"art{q % n_articles}")
    base = np.random.default_rng(0).uniform(0.3, 0.7, size=len(ids))
    diff = np.array([per_question[int(i.split(":q")[1])] for i in ids]) + 0.0005 * np.cos(np.arange(len(ids)))
    a = _result(ids, {"multi": {"map": base}}, clusters=clusters, model="a")
    b = _result(ids, {"multi": {"map": base + diff}}, clusters=clusters, model="b")
    return a, b


def test_clustering_by_question_changes_the_verdict():
    a, b = _lareqa_pair()
    naive = compare_results(a, b, n_resamples=3_000, unit="query", sensitivity_units=())
    clustered = compare_results(a, b, n_resamples=3_000)
    (row_naive,), (row,) = naive["rows"], clustered["rows"]
    assert row_naive["significant"] and row_naive["better"] == "B" and row_naive["clusters"] == 440
    assert not row["significant"] and row["better"] == "" and row["clusters"] == 40 and row["unit"] == "question"
    assert row["diff"] == pytest.approx(row_naive["diff"])
    # The article level (8 clusters here) is a sensitivity row beside it; with 4 articles it is not tested.
    assert row["sensitivity"]["article"]["clusters"] == 8
    assert row["sensitivity"]["article"]["ci_high"] - row["sensitivity"]["article"]["ci_low"] > 0
    a4, b4 = _lareqa_pair(n_articles=4)
    coarse = compare_results(a4, b4, n_resamples=500)["rows"][0]["sensitivity"]["article"]
    assert coarse["p"] is None and "too few to test" in coarse["note"]
    assert "questions resampled together" in clustered["notes"][-1]


def test_seeds_of_each_system_are_resampled():
    rng = np.random.default_rng(1)
    ids = [f"q{i}" for i in range(200)]
    base = rng.uniform(0.3, 0.7, size=200)
    seeds_a = [_result(ids, {"test": {"ndcg@10": base + o}}, task="beir") for o in (-0.04, 0.04, 0.0)]
    seeds_b = [_result(ids, {"test": {"ndcg@10": base + 0.015 + o}}, task="beir") for o in (0.05, -0.05, 0.02)]
    (row,) = compare_results(seeds_a, seeds_b, n_resamples=3_000)["rows"]
    assert row["seeds_a"] == row["seeds_b"] == 3 and row["unit"] == "query"
    assert row["diff"] == pytest.approx(0.015 + 0.02 / 3)
    assert not row["significant"]  # ±0.05 seed-to-seed spread swamps +0.02
    (pooled,) = compare_results(seeds_a[2], seeds_b[2], n_resamples=3_000)["rows"]
    assert pooled["significant"]  # one seed each: only query noise, which is tiny here


def test_primary_endpoints_get_verdicts_and_the_rest_is_exploratory():
    rng = np.random.default_rng(2)
    ids = [f"q{i}" for i in range(300)]
    base = rng.uniform(size=300)
    a = _result(ids, {"mono": {"map": base, "r@1": base}, "multi": {"map": base, "rank_distance": base * 100}})
    b = _result(ids, {"mono": {"map": base + 0.1, "r@1": base + 0.1},
                      "multi": {"map": base + 0.1, "rank_distance": base * 100 - 20}})
    comparison = compare_results(a, b, n_resamples=1_000, primary=["mono/map", "multi/rank_distance"],
                                 margins={"map": 0.01})
    rows = {(r["setting"], r["metric"]): r for r in comparison["rows"]}
    assert rows[("mono", "map")]["role"] == "primary" and rows[("mono", "map")]["better"] == "B"
    assert rows[("multi", "rank_distance")]["better"] == "B"  # lower rank distance is better
    for key in (("mono", "r@1"), ("multi", "map")):
        assert rows[key]["role"] == "exploratory" and rows[key]["p_holm"] is None and rows[key]["significant"] is None
    # Holm over the two primary p-values: the smaller is doubled.
    primary_p = sorted(r["p"] for r in comparison["rows"] if r["role"] == "primary")
    assert min(r["p_holm"] for r in comparison["rows"] if r["role"] == "primary") == pytest.approx(2 * primary_p[0])
    assert rows[("mono", "map")]["equivalence"]["margin"] == 0.01
    assert not rows[("mono", "map")]["equivalence"]["equivalent"]
    # The one primary TOST is a family of one: its adjusted p is its own; the exploratory multi/map TOST gets no verdict.
    assert rows[("mono", "map")]["equivalence"]["p_holm"] == rows[("mono", "map")]["equivalence"]["p"]
    assert rows[("multi", "map")]["equivalence"]["p_holm"] is None and rows[("multi", "map")]["equivalence"]["equivalent"] is None
    assert "equivalence" not in rows[("multi", "rank_distance")]
    text = comparison_markdown(comparison)
    assert "exploratory" in text and "significant: mono map: B is better" in text and "TOST" in text
    with pytest.raises(HybridfastError, match="primary endpoints not in the results: multi/hit@1"):
        compare_results(a, b, n_resamples=100, primary=["multi/hit@1"])


def test_family_holm_spans_comparisons():
    def comparison(name, ps):
        rows = [{"setting": "multi", "metric": f"m{i}", "role": "primary", "p": p, "diff": 0.1, "ci_low": 0.0,
                 "ci_high": 0.2, "unit": "question", "clusters": 40, "sensitivity": {}} for i, p in enumerate(ps)]
        rows.append({"setting": "mono", "metric": "r@1", "role": "exploratory", "p": 0.0001})
        return {"a": {"model": "a", "task": "lareqa"}, "b": {"model": name, "task": "lareqa"}, "rows": rows}

    family = family_holm({"one": comparison("b1", [0.01, 0.04]), "two": comparison("b2", [0.03, 0.5])})
    assert family["family_size"] == 4  # the exploratory rows stay out of the family
    adjusted = {(t["comparison"], t["metric"]): t["p_holm"] for t in family["tests"]}
    assert adjusted == pytest.approx({("one", "m0"): 0.04, ("one", "m1"): 0.09, ("two", "m0"): 0.09, ("two", "m1"): 0.5})
    assert [t["significant"] for t in family["tests"]] == [True, False, False, False]


def test_family_holm_adjusts_equivalence_claims_over_the_family():
    # Four primary tests, three with a margin: their TOST p-values form a Holm family of their own, apart from the
    # difference tests' p-values (all 0.5 here).
    def comparison(name, tost_ps):
        rows = [{"setting": "multi", "metric": f"m{i}", "role": "primary", "p": 0.5, "diff": 0.0, "ci_low": -0.01,
                 "ci_high": 0.01, "unit": "question", "clusters": 40, "sensitivity": {},
                 **({"equivalence": {"margin": 0.01, "p": p, "equivalent": True}} if p is not None else {})}
                for i, p in enumerate(tost_ps)]
        return {"a": {"model": "a", "task": "lareqa"}, "b": {"model": name, "task": "lareqa"}, "rows": rows}

    one, two = comparison("b1", [0.01, None]), comparison("b2", [0.02, 0.04])
    family = family_holm({"one": one, "two": two})
    adjusted = {(t["comparison"], t["metric"]): t["equivalence"] for t in family["tests"] if t["equivalence"]}
    # Sorted 0.01, 0.02, 0.04 -> x3, x2, x1 = 0.03, 0.04, 0.04 (monotone).
    assert {k: eq["p_holm"] for k, eq in adjusted.items()} == pytest.approx(
        {("one", "m0"): 0.03, ("two", "m0"): 0.04, ("two", "m1"): 0.04})
    assert all(eq["equivalent"] for eq in adjusted.values())
    assert family_holm({"one": one, "two": two}, alpha=0.035)["tests"][0]["equivalence"]["equivalent"]
    assert not family_holm({"one": one, "two": two}, alpha=0.035)["tests"][2]["equivalence"]["equivalent"]
    # A larger family: the same TOST p-values no longer show equivalence (smallest: 0.01 x 6 = 0.06).
    wide = family_holm({"one": one, "two": two, "three": comparison("b3", [0.2, 0.3, 0.4])})
    assert not any(t["equivalence"]["equivalent"] for t in wide["tests"] if t["equivalence"])
    assert min(t["equivalence"]["p_holm"] for t in wide["tests"] if t["equivalence"]) == pytest.approx(0.06)
    # The comparisons handed in keep their own (per-comparison) equivalence verdicts.
    assert "p_holm" not in one["rows"][0]["equivalence"]


def test_pairs_only_queries_scored_in_every_file():
    a = _result(["x", "y", "z", "v"], {"mono": {"map": [0.1, 0.2, float("nan"), 0.3]},
                                       "cross": {"map": [0.1, 0.2, 0.3, 0.4]}})
    b = _result(["z", "y", "x", "w", "v"], {"mono": {"map": [0.5, 0.4, 0.3, 0.9, 0.2]}})
    b2 = _result(["v", "y", "x"], {"mono": {"map": [0.1, 0.4, float("nan")]}})
    (row,) = compare_results(a, b, n_resamples=200)["rows"]
    # Shared ids x, y, v (z is skipped in A, w is not in A); the cross setting is only in A.
    assert row["setting"] == "mono" and row["queries"] == 3
    assert row["mean_a"] == pytest.approx(0.2) and row["mean_b"] == pytest.approx(0.3)
    (row,) = compare_results(a, [b, b2], n_resamples=200)["rows"]
    assert row["queries"] == 2 and row["seeds_b"] == 2  # x is unscored in b2
    assert row["mean_b"] == pytest.approx((0.4 + 0.2 + 0.4 + 0.1) / 4)


def test_missing_cluster_labels_fall_back_with_a_note_and_disagreeing_labels_raise():
    ids = [f"q{i}" for i in range(30)]
    a = _result(ids, {"multi": {"map": np.linspace(0, 1, 30)}})
    b = _result(ids, {"multi": {"map": np.linspace(0, 1, 30) + 0.1}})
    comparison = compare_results(a, b, n_resamples=200)
    assert comparison["rows"][0]["unit"] == "query"
    assert any("no 'question' cluster labels" in note for note in comparison["notes"])
    one = _result(ids, {"multi": {"map": np.ones(30)}}, clusters={"question": ["x"] * 30})
    other = _result(ids, {"multi": {"map": np.ones(30)}}, clusters={"question": ["y"] * 30})
    with pytest.raises(HybridfastError, match="disagree on the 'question' cluster"):
        compare_results(one, other, n_resamples=100)


def test_incomparable_results_raise():
    a = _result(["x"], {"mono": {"map": [0.1]}})
    with pytest.raises(HybridfastError, match="different tasks"):
        compare_results(a, _result(["x"], {"test": {"ndcg@10": [0.1]}}, task="beir"))
    with pytest.raises(HybridfastError, match="share no per-query"):
        compare_results(a, _result(["y"], {"mono": {"map": [0.1]}}))
    with pytest.raises(HybridfastError, match="unknown resampling unit 'paragraph'"):
        compare_results(a, a, unit="paragraph")


def test_cli_compare_seeds_units_and_bad_files(tmp_path):
    a, b = _lareqa_pair()
    save_result(a, tmp_path / "a.json")
    save_result(b, tmp_path / "b0.json")
    save_result(b, tmp_path / "b1.json")
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(tmp_path / "a.json"), f"{tmp_path / 'b0.json'},{tmp_path / 'b1.json'}",
                                 "--resamples", "500", "--primary", "multi/map", "--margin", "map=0.01",
                                 "--out", str(tmp_path / "cmp.json")])
    assert result.exit_code == 0, result.output
    assert "| multi | map | primary | 440 |" in result.stdout and "p (article)" in result.stdout
    saved = json.loads((tmp_path / "cmp.json").read_text())
    assert saved["b"]["seeds"] == 2 and saved["rows"][0]["clusters"] == 40
    assert saved["rows"][0]["equivalence"]["margin"] == 0.01

    (tmp_path / "bad.json").write_text(json.dumps({"format": RESULT_FORMAT, "per_query": {"mono": {"ids": ["a"], "map": []}}}))
    (tmp_path / "broken.json").write_text("{\n  nope")
    (tmp_path / "other.json").write_text("{}")
    (tmp_path / "badclusters.json").write_text(json.dumps(
        {"format": RESULT_FORMAT, "per_query": {"mono": {"ids": ["a"], "map": [1], "clusters": {"question": []}}}}))
    for name, message in (("missing.json", "not found"), ("bad.json", "does not match its ids"),
                          ("broken.json", "broken.json:2: malformed JSON"), ("other.json", "not a hybridfast eval result"),
                          ("badclusters.json", "['clusters']['question'] does not match its ids")):
        with pytest.raises(ResultFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_result(tmp_path / name)
        result = runner.invoke(app, ["compare", str(tmp_path / "a.json"), str(tmp_path / name)])
        assert result.exit_code == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    for args, message in ((["--margin", "map"], "--margin: expected metric=number"),
                          (["--unit", "paragraph"], "unknown resampling unit"),
                          (["--resamples", "0"], "resamples must be at least 1")):
        result = runner.invoke(app, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b0.json"), *args])
        assert result.exit_code == 2 and message in result.stderr
