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
