"""End to end: the research driver on a tiny random model and tiny evaluation subsets, then the report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

RESEARCH = Path(__file__).resolve().parents[2] / "benchmarks" / "research"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"research_{name}", RESEARCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _config(tmp_path: Path, model: Path) -> Path:
    text = f"""
[experiment]
name = "tiny"
label = "tiny pipeline test"
reduced = true
results_dir = "{tmp_path / 'results'}"
runs_dir = "{tmp_path / 'runs'}"
device = "cpu"
alphas = [1.0, 0.0, 0.5]
seeds = [0, 1]
max_timing_load = 1000.0

[training.model]
name = "{model}"
query_max_length = 16
passage_max_length = 32

[training.sampling]
batch_size = 4

[training.train]
steps = 2

[eval]
batch_size = 64
query_max_length = 16
passage_max_length = 32

[eval.lareqa]
langs = ["en", "de"]
articles = 2

[eval.curve]
every = 1
articles = 1

[eval.tatoeba]
langs = ["deu", "fra"]
max_pairs = 10

[eval.beir]
max_queries = 12
max_docs = 40

[stats]
n_resamples = 200

[cost]
passages = 4
queries = 2
repeats = 2
max_length = 32
query_max_length = 16

[timing]
steps = 2
warmup_steps = 1
rounds = 2
"""
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_driver_runs_end_to_end_resumes_and_reports(tmp_path: Path, tiny_model_dir: Path, data_root: Path) -> None:
    experiment, report = _module("experiment"), _module("report")
    config = _config(tmp_path, tiny_model_dir)
    args = ["--config", str(config), "--data-dir", str(data_root)]
    assert experiment.main(args) == 0

    results = tmp_path / "results"
    # Training pairs are the evaluation's candidate format (sentence + paragraph), from training articles only.
    positives = [json.loads(line) for line in (tmp_path / "runs" / "train-sentence-in-context.jsonl").read_text().splitlines()]
    held_out = set(json.loads((results / "eval" / "zero-shot" / "lareqa.json").read_text())["settings"]["articles"])
    assert positives and not {p["article"] for p in positives} & held_out
    for seed in (0, 1):
        for run, mono in ((f"x-x-mono-seed{seed}", 2), (f"x-y-seed{seed}", 0), (f"hybrid-seed{seed}", 1)):
            summary = json.loads((results / "train" / f"{run}.json").read_text())
            assert summary["steps"] == 2 and summary["mono_batches"] == summary["scheduled_mono_batches"] == mono
            assert [step for step, _ in summary["eval_curve"]] == [1, 2] and "multi_map" in summary["eval_curve"][0][1]
            for task in ("lareqa", "tatoeba", "beir"):
                assert json.loads((results / "eval" / run / f"{task}.json").read_text())["format"] == "hybridfast-eval/1"
    lareqa = json.loads((results / "eval" / "hybrid-seed0" / "lareqa.json").read_text())
    assert lareqa["settings"]["with_context"] and set(lareqa["per_query"]["multi"]["clusters"]) == {"question", "article"}
    comparison = json.loads((results / "compare" / "lareqa" / "hybrid__vs__x-x-mono.json").read_text())
    assert comparison["a"]["seeds"] == comparison["b"]["seeds"] == 2 and comparison["unit"] == "question"
    assert {r["role"] for r in comparison["rows"]} == {"primary", "exploratory"}
    family = json.loads((results / "compare" / "family.json").read_text())
    assert family["family_size"] == 5 * 5  # 5 primary endpoints x 5 comparisons
    cost = json.loads((results / "cost.json").read_text())
    assert {s["path"] for s in cost["samples"]} == {"lean", "baseline"}
    assert all(info["min_cosine_lean_vs_baseline"] > 0.999 for info in cost["models"].values())
    assert cost["equivalence"] and all(s["load_avg"] is not None for s in cost["samples"])
    speed = json.loads((results / "training_speed.json").read_text())
    assert set(speed["summary"]) == {"x-x-mono", "x-y", "hybrid"} and speed["rounds"][0]["load_avg_start"] is not None
    # 2 measured steps x 2 rounds per strategy; one round-paired test per pair of strategies.
    assert all(v["tokens_per_s"]["n"] == 2 * 2 for v in speed["summary"].values()) and len(speed["equivalence"]) == 3
    assert all(t["rounds"] == 2 for t in speed["equivalence"])

    first = (results / "steps.jsonl").read_text().splitlines()
    assert experiment.main(args) == 0  # every step's output exists: the second run only skips
    second = [json.loads(line) for line in (results / "steps.jsonl").read_text().splitlines()[len(first):]]
    assert len(second) == len(first) and all(step["status"] == "skipped" for step in second)

    out = tmp_path / "REPORT.md"
    assert report.main(["--results", str(results), "--out", str(out), "--resamples", "200"]) == 0
    text = out.read_text()
    assert "## Answer to the research question" in text and "REDUCED" in text and "INCOMPLETE" not in text
    assert "zero-shot" in text.split("## Setup")[0] and "What the tests support" in text
    for figure in ("map_by_setting", "rank_distance", "metric_vs_alpha", "learning_curves_multi_map",
                   "latency_p50_ms", "passages_per_s"):
        assert (tmp_path / "figures" / "tiny" / f"{figure}.png").stat().st_size > 0


def test_timing_stage_waits_for_an_idle_machine(tmp_path: Path, tiny_model_dir: Path, data_root: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = _module("experiment")
    settings = experiment.load_settings(_config(tmp_path, tiny_model_dir))
    settings.max_timing_load = 1.5
    messages: list[str] = []
    driver = experiment.Experiment(settings, data_root, messages.append)
    monkeypatch.setattr(experiment, "load_average", lambda: 3.2)
    assert not driver.timing_allowed(force=False)
    assert "load average is 3.20 > 1.5" in messages[-1] and "--stages timing" in messages[-1]
    assert driver.timing_allowed(force=True)
    monkeypatch.setattr(experiment, "load_average", lambda: 0.4)
    assert driver.timing_allowed(force=False)


def test_unknown_config_key_is_rejected(tmp_path: Path) -> None:
    experiment = _module("experiment")
    path = tmp_path / "bad.toml"
    head = '[experiment]\nname = "x"\nlabel = "x"\nresults_dir = "r"\nruns_dir = "s"\nalphas = [0.5]\nseeds = [0]\n'
    for tail, match in (('\n[eval]\nbatchsize = 3\n', "batchsize"),
                        ('\n[stats]\nunit = "paragraph"\n', "unknown resampling unit 'paragraph'"),
                        ('\n[stats]\nprimary = ["multi/map"]\n', "is not task/setting/metric"),
                        ('\n[eval.lareqa]\nwith_context = false\n', "with_context = true")):
        path.write_text(head + tail)
        with pytest.raises(experiment.ExperimentConfigError, match=match):
            experiment.load_settings(path)
