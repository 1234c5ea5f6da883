"""`hybridfast bench kernels` runs on CPU and writes its JSON record and PNG plot."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hybridfast.cli import app


def test_bench_kernels_cpu_writes_json_and_png(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "kernels", "--device", "cpu", "--sizes", "64,128", "--dims", "32",
                                      "--backends", "naive,torch", "--repeats", "2", "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (json_path,) = tmp_path.glob("kernels-*.json")
    assert json_path.with_suffix(".png").stat().st_size > 0
    assert "| M = N | d | backend |" in json_path.with_suffix(".md").read_text()
    record = json.loads(json_path.read_text())
    assert {"card", "torch", "triton", "date", "matmul_ceiling", "copy"} <= record.keys()
    main = [r for r in record["rows"] if r["op"] == "contrastive_loss" and "kind" not in r]
    assert {(r["backend"], r["m"]) for r in main} == {(b, s) for b in ("naive", "torch") for s in (64, 128)}
    assert all(r["status"] == "ok" and r["ms"] > 0 and r["tflops"] > 0 for r in main)
    assert {r.get("kind") for r in record["rows"]} >= {"symmetric", "hard-negatives"}
    assert {r["op"] for r in record["rows"]} >= {"pool", "pool_varlen"}


def test_bench_kernels_rejects_unknown_backend(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "kernels", "--device", "cpu", "--backends", "cuda",
                                      "--out-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert not list(tmp_path.glob("*.json"))


def test_markdown_summary_shows_breakdown_queued_and_checks() -> None:
    """The GPU-only parts of the record (breakdown, queued timings, float64 checks, pooling extras) render."""
    from hybridfast.kernels.benchmark import markdown_summary

    loss = {"op": "contrastive_loss", "backend": "triton", "m": 4096, "n": 4096, "d": 768, "status": "ok",
            "ms": 1.0, "tflops": 100.0, "fraction_of_ceiling": 0.1, "extra_gib": 0.03, "ms_queued": 0.4,
            "check": "pass", "check_rel_err": {"loss": 1e-6, "dq": 4e-3, "dp": 4e-3}}
    big = dict(loss, m=65536, n=65536, check_shape=[2048, 2048],
               configs={"forward": "BLOCK_M: 256, BLOCK_N: 128", "dS": "BLOCK_M: 128, BLOCK_N: 256"})
    naive = dict(loss, backend="naive", ms=0.9, check=None, check_rel_err=None)
    del naive["check"], naive["check_rel_err"]
    breakdown = {"op": "breakdown", "backend": "triton", "variant": "dP triton", "m": 65536, "n": 65536, "d": 768,
                 "status": "ok", "ms": 80.0, "other_ms": 1.0,
                 "stages_ms": {"forward": 20.0, "dS kernel": 20.0, "dQ matmul": 15.0, "dP accumulate": 20.0},
                 "stage_tflops": {"forward": 330.0, "dS kernel": 330.0, "dQ matmul": 440.0, "dP accumulate": 330.0}}
    alt = dict(breakdown, variant="dP cublas", dp_rel_diff_vs_default=1e-3)
    failed = {"op": "breakdown", "variant": "dP cublas", "m": 32768, "n": 32768, "d": 768, "status": "error: X"}
    pool_row = {"op": "pool", "backend": "triton", "phase": "forward", "ms": 0.2, "gbps": 4000.0,
                "fraction_of_copy": 0.95, "touched_gbps": 2300.0, "ms_queued": 0.15, "gbps_queued": 5300.0,
                "status": "ok"}
    record = {"card": "test", "torch": "x", "triton": "y", "date": "now",
              "matmul_ceiling": {"tflops": 787.0, "dtype": "bfloat16", "size": 8192}, "copy": {"gbps": 4207.0},
              "rows": [loss, big, naive, breakdown, alt, failed, pool_row]}
    text = markdown_summary(record)
    assert "Per-stage breakdown" in text and "dS kernel: 20.00 (330)" in text
    assert "dP rel. diff 1.0e-03" in text and "error: X" in text
    assert "| 4096 | 768 | triton | 1.000 | 0.400 |" in text
    assert "4096×4096 d=768: pass" in text
    assert "65536×65536 d=768: pass (max rel. err 4.0e-03) at 2048×2048" in text
    assert "65536×65536 d=768: BLOCK_M: 256, BLOCK_N: 128 / BLOCK_M: 128, BLOCK_N: 256" in text
    assert "| pool | triton | forward | 0.200 |" in text
