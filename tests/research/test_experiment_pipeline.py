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
seeds = [0]

[training.model]
name = "{model}"
query_max_length = 16
passage_max_length = 32
freeze_embeddings = true

[training.sampling]
batch_size = 4

[training.train]
steps = 1

[eval]
batch_size = 64
query_max_length = 16
passage_max_length = 32
n_resamples = 100

[eval.lareqa]
langs = ["en", "de"]

[eval.tatoeba]
langs = ["deu", "fra"]
max_pairs = 10

[eval.beir]
max_docs = 40

[cost]
passages = 4
queries = 2
repeats = 2
max_length = 32
query_max_length = 16
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
    for run in ("x-x-mono-seed0", "x-y-seed0", "hybrid-seed0"):
        assert json.loads((results / "train" / f"{run}.json").read_text())["steps"] == 1
        for task in ("lareqa", "tatoeba", "beir"):
            assert json.loads((results / "eval" / run / f"{task}.json").read_text())["format"] == "hybridfast-eval/1"
    assert (results / "compare" / "beir" / "hybrid__vs__x-x-mono.json").is_file()
    cost = json.loads((results / "cost.json").read_text())
    assert {s["path"] for s in cost["samples"]} == {"lean", "baseline"}
    assert all(info["min_cosine_lean_vs_baseline"] > 0.999 for info in cost["models"].values())

    first = (results / "steps.jsonl").read_text().splitlines()
    assert experiment.main(args) == 0  # every step's output exists: the second run only skips
    second = [json.loads(line) for line in (results / "steps.jsonl").read_text().splitlines()[len(first):]]
    assert len(second) == len(first) and all(step["status"] == "skipped" for step in second)

    out = tmp_path / "REPORT.md"
    assert report.main(["--results", str(results), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Answer to the research question" in text and "REDUCED" in text and "INCOMPLETE" not in text
    for figure in ("map_by_setting", "rank_distance_per_language", "metric_vs_alpha", "latency_p50_ms", "passages_per_s"):
        assert (tmp_path / "figures" / "tiny" / f"{figure}.png").stat().st_size > 0


def test_unknown_config_key_is_rejected(tmp_path: Path) -> None:
    experiment = _module("experiment")
    path = tmp_path / "bad.toml"
    path.write_text('[experiment]\nname = "x"\nlabel = "x"\nresults_dir = "r"\nruns_dir = "s"\n'
                    'alphas = [0.5]\nseeds = [0]\n\n[eval]\nbatchsize = 3\n')
    with pytest.raises(experiment.ExperimentConfigError, match="batchsize"):
        experiment.load_settings(path)
