"""`hybridfast bench train` end to end on a tiny random model (output schema only; no timing asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridfast.cli import app
from hybridfast.errors import HybridfastError
from hybridfast.train.benchmark import TrainBenchConfig, run_train_benchmark, sample_batch, training_pairs


def test_bench_train_runs_every_variant_and_writes_json_and_png(tmp_path: Path, data_root: Path) -> None:
    result = CliRunner().invoke(app, [
        "bench", "train", "--random-shape", "tiny", "--data-dir", str(data_root), "--start-batch", "8",
        "--max-batch", "16", "--steps", "1", "--chunk-size", "4", "--query-max-length", "16",
        "--passage-max-length", "32", "--out-dir", str(tmp_path),
    ])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "bench_train_cpu_random-tiny.json").read_text())
    assert (tmp_path / "bench_train_cpu_random-tiny.png").stat().st_size > 0
    assert record["benchmark"] == "train" and record["precision"] == "fp32"
    ran = {"hybridfast-cached", "hybridfast-plain", "hybridfast-naive", "st-mnrl", "st-cached-mnrl", "st-hybridfast",
           "st-hybridfast-cached"}
    assert record["skipped_variants"] == {}
    rows = {(row["variant"], row["batch"]): row for row in record["rows"]}
    for variant in ran:
        for batch in (8, 16):
            row = rows[(variant, batch)]
            assert row["status"] == "ok", row
            assert row["pairs_per_s"] > 0 and row["real_tokens_per_s"] > row["pairs_per_s"]
            assert row["peak_memory_bytes"] > 0 and len(row["step_s"]) == 1
        assert record["largest_batch"][variant] == 16
    # same initial weights and batch: first losses agree up to dropout (other masks per chunk layout)
    first = [rows[(variant, 8)]["first_loss"] for variant in ran]
    assert max(first) < 1.5 * min(first), first
    ratio = record["ratios"]["16"]["hybridfast-cached"]["vs_st-cached-mnrl"]
    assert ratio["pairs_per_s"] > 0 and ratio["peak_memory"] > 0
    assert set(record["targets"]) >= {"cached_at_st_cached_largest", "plain_at_1024", "cached_reaches_max_batch"}
    assert "| hybridfast-cached | 16 |" in result.output


def test_bench_train_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(HybridfastError, match="exactly one"):
        run_train_benchmark(TrainBenchConfig(out_dir=tmp_path))
    with pytest.raises(HybridfastError, match="unknown variants"):
        run_train_benchmark(TrainBenchConfig(random_shape="tiny", variants=["st-fancy"], out_dir=tmp_path))
    with pytest.raises(HybridfastError, match="max-batch"):
        run_train_benchmark(TrainBenchConfig(random_shape="tiny", start_batch=64, max_batch=32, out_dir=tmp_path))


def test_training_pairs_have_real_lengths(data_root: Path) -> None:
    for dataset in ("xquad", "scifact"):
        pairs = training_pairs(data_root, dataset)
        assert len(pairs) > 500
        queries, passages = sample_batch(pairs, 64, seed=0)
        assert len(queries) == len(passages) == 64
        assert sum(map(len, passages)) > 3 * sum(map(len, queries))  # passages are much longer than queries
    assert sample_batch(pairs, 10, seed=1) == sample_batch(pairs, 10, seed=1)
    big_queries, _ = sample_batch(pairs, 2 * len(pairs), seed=0)  # more than the data holds: with replacement
    assert len(big_queries) == 2 * len(pairs)
