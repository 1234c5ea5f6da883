"""examples/st_side_by_side.py on the tiny model: ST's MNRL and the fused loss train the same weights on the same
hybrid XQuAD batches through SentenceTransformerTrainer, and their losses agree step by step."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "st_side_by_side.py"


def test_side_by_side_example_writes_matching_losses(tmp_path: Path, data_root: Path, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("st_side_by_side", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "result.json"
    monkeypatch.setattr(sys, "argv", [
        str(EXAMPLE), "--data-dir", str(data_root), "--langs", "de,en,zh", "--losses", "st-mnrl,fused",
        "--batch-sizes", "8", "--steps", "3", "--warmup", "1", "--repeats", "1", "--max-length", "32",
        "--out", str(out),
    ])
    example.main()
    result = json.loads(out.read_text())
    assert result["languages"] == ["de", "en", "zh"] and result["questions"] > 100
    assert [(row["variant"], row["timed_steps"]) for row in result["summary"]] == [("st-mnrl", 2), ("fused", 2)]
    (ratio,) = result["ratios"]
    assert (ratio["ours"], ratio["theirs"]) == ("fused", "st-mnrl") and ratio["speedup"] > 0
    losses = {run["variant"]: run["losses"] for run in result["runs"]}
    assert len(losses["fused"]) == 3
    assert losses["fused"] == pytest.approx(losses["st-mnrl"], abs=1e-5)
    assert ratio["max_loss_difference"] < 1e-5
    assert result["machine"]["torch"] and result["config"]["model"] == "tiny"
