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
            assert row["peak_memory_bytes"] is None and len(row["step_s"]) == 1  # memory: CUDA runs only
        assert record["largest_batch"][variant] == 16
    # same initial weights and batch: first losses agree up to dropout (other masks per chunk layout)
    first = [rows[(variant, 8)]["first_loss"] for variant in ran]
    assert max(first) < 1.5 * min(first), first
    ratio = record["ratios"]["16"]["hybridfast-cached"]["vs_st-cached-mnrl"]
    assert ratio["pairs_per_s"] > 0 and ratio["peak_memory"] is None
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


def test_ratios_largest_batches_and_targets_from_rows() -> None:
    """The bookkeeping a GPU run's verdicts rest on, on hand-made rows."""
    from hybridfast.train.benchmark import _largest, _ratios, targets

    def row(variant: str, batch: int, pairs_per_s: float | None, memory: float | None) -> dict:
        if pairs_per_s is None:
            return {"variant": variant, "batch": batch, "status": "oom"}
        return {"variant": variant, "batch": batch, "status": "ok", "pairs_per_s": pairs_per_s,
                "peak_memory_bytes": memory}

    rows = [row("st-mnrl", 1024, 100.0, 8.0), row("st-cached-mnrl", 1024, 60.0, 4.0),
            row("hybridfast-plain", 1024, 140.0, 6.0), row("hybridfast-cached", 1024, 95.0, 1.0),
            row("st-mnrl", 2048, None, None), row("st-cached-mnrl", 2048, 50.0, 5.0),
            row("hybridfast-cached", 2048, 80.0, 2.0), row("st-cached-mnrl", 4096, None, None),
            row("hybridfast-cached", 4096, 70.0, 3.0)]
    largest = _largest(rows)
    assert largest == {"st-mnrl": 1024, "st-cached-mnrl": 2048, "hybridfast-plain": 1024, "hybridfast-cached": 4096}
    ratios = _ratios(rows)
    assert ratios["1024"]["hybridfast-plain"]["vs_st-mnrl"] == {"pairs_per_s": 1.4, "peak_memory": 0.75}
    assert ratios["2048"]["hybridfast-cached"]["vs_st-cached-mnrl"] == {"pairs_per_s": 1.6, "peak_memory": 0.4}
    assert "4096" not in ratios  # no baseline fits there
    verdict = targets({"largest_batch": largest, "ratios": ratios, "config": {"max_batch": 4096}})
    assert verdict["cached_at_st_cached_largest"]["batch"] == 2048 and verdict["cached_at_st_cached_largest"]["met"]
    assert verdict["plain_at_1024"]["met"] and verdict["cached_reaches_max_batch"]
    slower = [dict(r, pairs_per_s=r["pairs_per_s"] * 0.5) if r["variant"] == "hybridfast-cached" and r["status"] == "ok"
              else r for r in rows]
    verdict = targets({"largest_batch": _largest(slower), "ratios": _ratios(slower), "config": {"max_batch": 8192}})
    assert not verdict["cached_at_st_cached_largest"]["met"] and not verdict["cached_reaches_max_batch"]
