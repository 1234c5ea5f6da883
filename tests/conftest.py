"""Shared fixtures: the data root and a tiny random encoder checkpoint (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared datasets: $HYBRIDFAST_DATA, else ../shared/data beside the repository."""
    root = Path(os.environ.get("HYBRIDFAST_DATA", ROOT.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"data root {root} is absent (set HYBRIDFAST_DATA)")
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer XLM-R checkpoint with a trained Unigram tokenizer and e5 prefixes."""
    from hybridfast.testing import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))
