"""Tatoeba bitext retrieval: nearest-neighbour accuracy by hand and end to end."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from hybridfast.data.tatoeba import load_tatoeba
from hybridfast.eval.cli import app
from hybridfast.eval.tatoeba import bitext_matches, evaluate_tatoeba


def test_bitext_matches_by_hand():
    source = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    # Unnormalized on purpose: cosine, not the dot product, decides (row 2 of target is long).
    target = np.array([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    forward, backward = bitext_matches(source, target)
    # source 2 (1, .1) is closest to target 0 by cosine (.995 vs .774) -> miss; by the dot product it would
    # pick target 2. Backwards, target 2 (1, 1) is closest to source 2 -> hit.
    assert forward.tolist() == [1.0, 1.0, 0.0]
    assert backward.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="one shape"):
        bitext_matches(source, target[:2])


def test_keyword_encoder_accuracy(tmp_path, write_tatoeba, keyword_encoder):
    pairs = load_tatoeba(write_tatoeba(tmp_path / "tat", swap={"fra": (0, 1)}))
    result = evaluate_tatoeba(keyword_encoder, pairs, progress=False)
    assert result["per_language"]["deu"] == {"to_eng": 1.0, "from_eng": 1.0, "mean": 1.0, "pairs": 5}
    assert result["per_language"]["fra"]["to_eng"] == pytest.approx(0.6)
    assert result["metrics"]["tatoeba"]["accuracy"] == pytest.approx(0.8)
    assert result["per_query"]["fra->eng"]["accuracy"] == [0, 0, 1, 1, 1]
    assert set(result["per_query"]) == {"deu->eng", "eng->deu", "fra->eng", "eng->fra"}


def test_cli_with_langs(tmp_path, write_tatoeba, tiny_model_dir):
    root = write_tatoeba(tmp_path / "tat")
    result = CliRunner().invoke(app, ["--model", str(tiny_model_dir), "--task", "tatoeba", "--data", str(root),
                                      "--langs", "fra", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "| fra |" in result.stdout and "| deu |" not in result.stdout
    result = CliRunner().invoke(app, ["--model", str(tiny_model_dir), "--task", "tatoeba", "--data", str(root),
                                      "--langs", "ita"])
    assert result.exit_code == 2 and "tatoeba.ita-eng.ita" in result.stderr
