"""benchmarks/loadtest.py: its summary arithmetic, and a short run against the tiny model on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import hybridfast
from hybridfast.serve.server import ServerSettings, create_app, serve_in_thread
from hybridfast.testing import DEFAULT_TEXTS

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "loadtest.py"


@pytest.fixture(scope="module")
def loadtest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("loadtest", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["loadtest"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_summary_counts_errors_by_kind_and_reports_percentiles_only_with_enough_samples(
        loadtest: ModuleType) -> None:
    rng = np.random.default_rng(0)
    latencies = list(rng.uniform(0.01, 0.2, size=150))
    outcomes = ["ok"] * 120 + ["429"] * 20 + ["504"] * 6 + ["ReadTimeout"] * 4
    level = loadtest.LevelResult(8, latencies, outcomes, inputs=240, tokens=2400, seconds=2.0,
                                 server_batches=30, server_batched_inputs=240)
    row = loadtest.summarize(level)
    ok = latencies[:120]
    assert row["ok"] == 120 and row["errors"] == 30
    assert row["errors_by_kind"] == {"429": 20, "504": 6, "ReadTimeout": 4}
    assert row["requests_per_s"] == 60 and row["inputs_per_s"] == 120 and row["tokens_per_s"] == 1200
    assert row["inputs_per_server_batch"] == 8
    assert row["p50_ms"] == round(1000 * float(np.percentile(ok, 50)), 2)
    assert row["p99_ms"] == round(1000 * float(np.percentile(ok, 99)), 2)
    few = loadtest.summarize(loadtest.LevelResult(1, latencies[:50], ["ok"] * 50, seconds=1.0))
    assert few["p50_ms"] is not None and few["p90_ms"] is not None and few["p99_ms"] is None


def test_only_loopback_urls_are_accepted(loadtest: ModuleType) -> None:
    assert loadtest.check_loopback("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    with pytest.raises(SystemExit, match="only targets this machine"):
        loadtest.check_loopback("http://10.1.2.3:8080")


def test_a_short_run_writes_json_and_png(tiny_model_dir: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(DEFAULT_TEXTS) + "\n", encoding="utf-8")
    settings = ServerSettings(max_wait_ms=2)
    app = create_app(hybridfast.load(str(tiny_model_dir), device="cpu"), settings, model_name="tiny")
    with serve_in_thread(app) as url:
        done = subprocess.run([sys.executable, str(SCRIPT), "--url", url, "--concurrency", "1,4", "--requests", "30",
                               "--max-seconds", "60", "--inputs", "2", "--texts", str(texts), "--out-dir",
                               str(tmp_path), "--tag", "tiny"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "loadtest_tiny.json").read_text())
    assert result["server"]["model"] == "tiny" and result["machine"]["cores"] >= 1
    assert [row["concurrency"] for row in result["levels"]] == [1, 4]
    for row in result["levels"]:
        assert row["requests"] == row["ok"] == 30 and row["errors"] == 0
        assert row["requests_per_s"] > 0 and row["p50_ms"] > 0 and row["p99_ms"] is None
        assert row["inputs_per_s"] == pytest.approx(2 * row["requests_per_s"])
    assert (tmp_path / "loadtest_tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
