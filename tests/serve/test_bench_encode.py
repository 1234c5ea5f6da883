"""`hybridfast bench encode` on CPU with the tiny model: runs every variant and writes JSON + PNG."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hybridfast.cli import app
from hybridfast.errors import HybridfastError
from hybridfast.serve.benchmark import BenchConfig, run_encode_benchmark

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
    ],
)
def test_bench_config_errors(changes, message):
    config = BenchConfig(model="m", **{k: v for k, v in changes.items() if k != "model"})
    if "model" in changes:
        config.model = changes["model"]
    with pytest.raises(HybridfastError, match=message):
        config.check()
