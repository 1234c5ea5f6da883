"""`hybridfast bench kernels` runs on CPU and writes its JSON record and PNG plot."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from hybridfast.cli import app
from hybridfast.kernels.benchmark import pool_bytes_moved


def test_bench_kernels_cpu_writes_json_and_png(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "kernels", "--device", "cpu", "--sizes", "64,128", "--dims", "32",
                                      "--backends", "naive,torch", "--repeats", "2", "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (json_path,) = tmp_path.glob("kernels-*.json")
    assert json_path.with_suffix(".png").stat().st_size > 0
    assert "| M = N | d | backend |" in json_path.with_suffix(".md").read_text()
    record = json.loads(json_path.read_text())
    assert {"card", "torch", "triton", "date", "matmul_ceiling", "copy"} <= record.keys()
    assert record["matmul_ceiling"]["tflops"] > 0 and record["copy"]["gbps"] > 0
    main = [r for r in record["rows"] if r["op"] == "contrastive_loss" and "kind" not in r]
    assert {(r["backend"], r["m"]) for r in main} == {(b, s) for b in ("naive", "torch") for s in (64, 128)}
    ceiling = record["matmul_ceiling"]["tflops"]
    for r in main:
        factor = 6 if r["backend"] == "naive" else 8  # naive does no recomputation
        assert r["status"] == "ok" and r["ms"] > 0
        assert r["flop"] == factor * r["m"] * r["n"] * r["d"] and r["flop_formula"] == f"{factor}·M·N·d"
        assert r["tflops"] == pytest.approx(r["flop"] / r["ms"] / 1e9)
        assert r["roofline_ms"] == pytest.approx(r["flop"] / ceiling / 1e9)
        assert r["fraction_of_ceiling"] == pytest.approx(r["tflops"] / ceiling)
    assert {r.get("kind") for r in record["rows"]} >= {"symmetric", "hard-negatives"}
    pools = [r for r in record["rows"] if r["op"] in ("pool", "pool_varlen")]
    assert {(r["op"], r["phase"]) for r in pools} == {(op, phase) for op in ("pool", "pool_varlen")
                                                      for phase in ("forward", "forward+backward")}
    for r in pools:
        b, seq, d = r["shape"]
        layout = "padded" if r["op"] == "pool" else "varlen"
        assert b * seq // 8 <= r["valid_tokens"] <= b * seq
        assert r["bytes_moved"] == pool_bytes_moved(layout, r["phase"], b, seq, d, r["valid_tokens"], 4, 1)
        assert r["gbps"] == pytest.approx(r["bytes_moved"] / r["ms"] / 1e6) and r["gbps"] > 0
        assert r["fraction_of_copy"] == pytest.approx(r["gbps"] / record["copy"]["gbps"])
    text = json_path.with_suffix(".md").read_text()
    assert "matmul ceiling 0 TFLOP/s" not in text and "copy 0 GB/s" not in text
    assert not re.search(r"\| 0 \|", text), "a measured rate printed as 0"
    # CPU runs measure no memory: the plot has the time panel only (6.5 in at 120 dpi, not 12 in).
    assert Image.open(json_path.with_suffix(".png")).size[0] < 1000


def test_pool_bytes_moved_counts_valid_tokens_and_written_gradients() -> None:
    """B = 2, L = 4, d = 3, 5 valid tokens, 2-byte states, 1-byte mask, by hand: forward reads 5·3·2 state bytes
    and the 8-byte mask, writes 2·3·2 output bytes and 2·3·4 + 2·4 saved bytes; the backward reads the output
    gradient, the saved bytes and the mask again and writes the whole padded gradient (2·4·3·2) or the packed
    one (5·3·2); varlen reads cu_seqlens (3·4) and the launch order (2·4) instead of the mask."""
    assert pool_bytes_moved("padded", "forward", 2, 4, 3, 5, 2, 1) == 30 + 8 + 12 + 32
    assert pool_bytes_moved("padded", "forward+backward", 2, 4, 3, 5, 2, 1) == 82 + 12 + 32 + 8 + 48
    assert pool_bytes_moved("varlen", "forward", 2, 4, 3, 5, 2) == 30 + 20 + 12 + 32
    assert pool_bytes_moved("varlen", "forward+backward", 2, 4, 3, 5, 2) == 94 + 12 + 32 + 12 + 30
    with pytest.raises(ValueError, match="layout"):
        pool_bytes_moved("ragged", "forward", 2, 4, 3, 5, 2)


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
    loss["first_call_tuned"] = True
    loss["first_call_vs_later"] = {"check": "pass", "loss": 0.0, "dq": 2e-7, "dp": 0.0}
    loss["ms_graphed"], loss["graphed_vs_eager"] = 0.25, {"loss": 0.0, "dq": 1e-7, "dp": 0.0}
    pool_row = {"op": "pool", "backend": "triton", "phase": "forward", "ms": 0.2, "bytes_moved": 470_000_000,
                "gbps": 2350.0, "fraction_of_copy": 0.56, "ms_queued": 0.15, "gbps_queued": 3133.0,
                "fraction_of_copy_queued": 0.746, "status": "ok"}
    record = {"card": "test", "torch": "x", "triton": "y", "date": "now",
              "matmul_ceiling": {"tflops": 787.0, "dtype": "bfloat16", "size": 8192}, "copy": {"gbps": 4207.0},
              "rows": [loss, big, naive, breakdown, alt, failed, pool_row]}
    text = markdown_summary(record)
    assert "Per-stage breakdown" in text and "dS kernel: 20.00 (330)" in text
    assert "dP rel. diff 1.0e-03" in text and "error: X" in text
    assert "| 4096 | 768 | triton | 1.000 | 0.400 | 0.250 | 1.0e-07 |" in text
    assert "| 4096 | 768 | naive | 0.900 | 0.400 | – | – |" in text  # no graph timing in this row
    assert "4096×4096 d=768 (tuned): pass (max rel. diff 2.0e-07)" in text
    assert "4096×4096 d=768: pass" in text
    assert "65536×65536 d=768: pass (max rel. err 4.0e-03) at 2048×2048" in text
    assert "65536×65536 d=768: BLOCK_M: 256, BLOCK_N: 128 / BLOCK_M: 128, BLOCK_N: 256" in text
    assert "| pool | triton | forward | 470 | 0.200 | 2350 | 0.56 | 0.150 | 3133 | 0.75 |" in text


def test_rates_keep_three_significant_digits() -> None:
    """A CPU's 0.0144 TFLOP/s must not print as 0, and a GPU's 787.4 not as 787.400."""
    from hybridfast.kernels.benchmark import _sig

    assert [_sig(v) for v in (0.0144, 0.000123456, 4.567, 787.4, 0.0, None)] == [
        "0.0144", "0.000123", "4.57", "787", "0", "–"]


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="tunes interpreter-sized configs")
def test_first_call_bookkeeping_sees_a_retune(forced_tuning) -> None:
    """The sweep's first-call check: `_tuned_keys` grows by one key per autotuned kernel on the call that tunes, and
    that call's loss and gradients equal a later call's."""
    import torch

    from hybridfast.kernels import contrastive as cmod
    from hybridfast.kernels import contrastive_loss
    from hybridfast.kernels.benchmark import _rel_diffs, _tuned_keys

    short, tall = (cmod._config(rows, 16, 16, 4, 1) for rows in (cmod.ROW_ALIGN, 2 * cmod.ROW_ALIGN))
    for kernel in (cmod._forward_kernel, cmod._grad_scores_kernel):
        forced_tuning(kernel, [short, tall], lambda config: config is tall)
    q = torch.nn.functional.normalize(torch.randn(50, 24), dim=1).requires_grad_()
    p = torch.nn.functional.normalize(torch.randn(50, 24), dim=1).requires_grad_()

    def step():
        loss = contrastive_loss(q, p, temperature=0.05, symmetric=True, backend="triton")
        return (loss.detach(), *torch.autograd.grad(loss, (q, p)))

    before = _tuned_keys()
    first = step()
    assert sorted(name for name, _ in _tuned_keys() - before) == ["dS", "forward"]
    diffs = _rel_diffs(first, step())
    assert set(diffs) == {"loss", "dq", "dp"} and max(diffs.values()) <= 1e-6
    # float32 loss: 1.01 × loss is rounded, so the relative difference is 0.01/1.01 to float32 precision
    assert _rel_diffs(first, (first[0] * 1.01, *first[1:]))["loss"] == pytest.approx(0.01 / 1.01, rel=1e-5)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="runs the triton loss on the CPU")
def test_float64_check_of_the_sweep_reports_each_relative_error() -> None:
    """The sweep's check against float64 (CUDA-only in the sweep), here on the interpreter: fp32 loss and gradients
    within 1e-5 of float64, one relative error per output."""
    import torch

    from hybridfast.kernels.benchmark import _check_against_float64

    gen = torch.Generator().manual_seed(7)
    q = torch.nn.functional.normalize(torch.randn(40, 24, generator=gen), dim=1).requires_grad_()
    p = torch.nn.functional.normalize(torch.randn(56, 24, generator=gen), dim=1).requires_grad_()
    result = _check_against_float64(q, p, None, True)
    assert result["check"] == "pass" and set(result["check_rel_err"]) == {"loss", "dq", "dp"}
    assert all(0 < err < 1e-5 for err in result["check_rel_err"].values()), result
