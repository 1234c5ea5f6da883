"""`hybridfast bench encode` on CPU with the tiny model: runs every variant and writes JSON + PNG."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hybridfast.cli import app
from hybridfast.errors import HybridfastError
from hybridfast.serve.benchmark import BREAKDOWN_STAGES, BenchConfig, bench_texts, run_encode_benchmark

runner = CliRunner()


def test_bench_encode_cli_writes_results(tmp_path, tiny_model_dir, data_root):
    result = runner.invoke(app, [
        "bench", "encode", "--model", str(tiny_model_dir), "--device", "cpu", "--data-dir", str(data_root),
        "--max-texts", "24", "--max-length", "48", "--repeats", "1", "--int8",
        "--variants", "lean,lean-packed,unfused,sentence-transformers", "--out-dir", str(tmp_path), "--tag", "t",
    ])
    assert result.exit_code == 0, result.output
    path = tmp_path / f"bench_encode_cpu_{tiny_model_dir.name}_float32_t.json"
    data = json.loads(path.read_text())
    assert (tmp_path / path.name.replace(".json", ".png")).stat().st_size > 0
    assert data["environment"]["cpu"] and data["environment"]["torch"]
    for name in ("scifact", "xquad-r"):
        dataset = data["datasets"][name]
        assert dataset["texts"] == 24 and dataset["real_tokens"] > 24
        for variant in ("lean", "lean-packed", "unfused", "sentence-transformers", "lean-int8"):
            row = dataset["variants"][variant]
            assert "error" not in row, row
            assert row["sequences_per_s"] > 0 and row["real_tokens_per_s"] > 0
            assert row["batch_latency_ms_p99"] >= row["batch_latency_ms_p50"] > 0
        assert dataset["variants"]["lean"]["min_cosine_vs_unfused"] >= 0.9999
        assert dataset["variants"]["lean-packed"]["min_cosine_vs_unfused"] >= 0.9999
        assert dataset["variants"]["sentence-transformers"]["min_cosine_vs_unfused"] >= 0.9999
        assert set(dataset["speedups"]["lean"]) >= {"vs_unfused", "vs_sentence-transformers"}
    assert "lean" in result.output and "unfused" in result.output
    assert "nan" not in result.output  # a baseline has no ratio to itself: "–"
    speedups = data["datasets"]["scifact"]["speedups"]
    assert "vs_unfused" not in speedups["unfused"] and speedups["unfused"]["vs_sentence-transformers"] > 0
    assert speedups["sentence-transformers"]["vs_unfused"] > 0


def test_large_corpus_mode_with_breakdown(tmp_path, tiny_model_dir, data_root):
    """--corpus-size re-samples the dataset with replacement; --breakdown adds the lean path's stage times."""
    result = runner.invoke(app, [
        "bench", "encode", "--model", str(tiny_model_dir), "--device", "cpu", "--data-dir", str(data_root),
        "--datasets", "xquad-r", "--corpus-size", "60", "--seed", "3", "--max-length", "32", "--repeats", "1",
        "--max-batch-tokens", "256", "--variants", "lean,unfused", "--breakdown", "--baseline-texts", "25",
        "--out-dir", str(tmp_path),
    ])
    assert result.exit_code == 0, result.output
    data = json.loads(next(tmp_path.glob("bench_encode_cpu_*.json")).read_text())
    assert data["config"]["corpus_size"] == 60 and data["config"]["breakdown"] is True
    dataset = data["datasets"]["xquad-r"]
    assert dataset["texts"] == 60 and 1 <= dataset["unique_texts"] <= 60
    lean, unfused = dataset["variants"]["lean"], dataset["variants"]["unfused"]
    assert lean["texts"] == lean["warmup_texts"] == 60 and unfused["texts"] == unfused["warmup_texts"] == 25
    for row in (lean, unfused):
        assert row["real_tokens_per_s"] > 0 and row["sequences_per_s"] * row["seconds"] == pytest.approx(row["texts"])
        assert row["batch_latency_ms_p50"] is None  # no per-batch latency pass in large-corpus mode
    assert lean["real_tokens_per_s"] * lean["seconds"] == pytest.approx(dataset["real_tokens"])
    assert unfused["real_tokens_per_s"] * unfused["seconds"] < dataset["real_tokens"]  # its 25 texts only
    assert dataset["speedups"]["lean"]["vs_unfused"] == pytest.approx(
        lean["real_tokens_per_s"] / unfused["real_tokens_per_s"])
    assert lean["min_cosine_vs_unfused"] >= 0.9999
    breakdown = lean["breakdown"]
    assert set(breakdown["stages_s"]) == set(BREAKDOWN_STAGES)
    assert all(seconds >= 0 for seconds in breakdown["stages_s"].values())
    assert breakdown["stages_s"]["tokenize"] > 0 and breakdown["stages_s"]["model"] > 0
    assert breakdown["total_s"] == pytest.approx(sum(breakdown["stages_s"].values()))
    assert sum(breakdown["fractions"].values()) == pytest.approx(1.0)
    assert breakdown["real_tokens"] == dataset["real_tokens"] and breakdown["texts"] == 60
    assert breakdown["batches"] >= 2 and breakdown["packed"] is False  # CPU: padded batches
    assert "breakdown" not in unfused
    assert "breakdown xquad-r lean" in result.output and "nan" not in result.output


def test_corpus_resampling_is_seeded_and_draws_from_the_dataset(data_root):
    small = bench_texts(data_root, "xquad-r", 10**9)  # every sentence
    corpus = bench_texts(data_root, "xquad-r", 10, seed=5, corpus_size=len(small) + 500)
    assert len(corpus) == len(small) + 500 and set(corpus) <= set(small)
    assert corpus == bench_texts(data_root, "xquad-r", 10, seed=5, corpus_size=len(small) + 500)
    assert corpus != bench_texts(data_root, "xquad-r", 10, seed=6, corpus_size=len(small) + 500)


def test_failing_variant_is_recorded_not_fatal(tmp_path, tiny_model_dir, data_root, monkeypatch):
    import hybridfast.serve.benchmark as benchmark

    def broken(*args, **kwargs):
        raise RuntimeError("cannot load this one")

    monkeypatch.setattr(benchmark, "_st_variant", broken)
    config = BenchConfig(model=str(tiny_model_dir), data_dir=data_root, datasets=["xquad-r"], max_texts=8,
                         max_length=32, max_batch_tokens=16, device="cpu", repeats=1,
                         variants=["lean", "sentence-transformers"], out_dir=tmp_path)
    result = run_encode_benchmark(config)
    rows = result["datasets"]["xquad-r"]["variants"]
    assert "error" not in rows["lean"] and rows["lean"]["batches"] >= 2
    assert rows["sentence-transformers"] == {"error": "RuntimeError: cannot load this one"}
    with pytest.raises(HybridfastError):
        run_encode_benchmark(BenchConfig(model=str(tmp_path / "no-such-model"), data_dir=data_root,
                                         device="cpu", out_dir=tmp_path))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": None}, "exactly one of"),
        ({"random_shape": "e5-small"}, "exactly one of"),
        ({"datasets": ["msmarco"]}, "--datasets"),
        ({"variants": ["fast"]}, "--variants"),
        ({"repeats": 0}, "--repeats"),
        ({"corpus_size": 0}, "--corpus-size"),
    ],
)
def test_bench_config_errors(changes, message):
    config = BenchConfig(model="m", **{k: v for k, v in changes.items() if k != "model"})
    if "model" in changes:
        config.model = changes["model"]
    with pytest.raises(HybridfastError, match=message):
        config.check()
