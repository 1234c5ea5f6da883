"""Fixtures for the sentence-transformers integration tests: a parallel `datasets.Dataset` and the tiny random
encoder checkpoint that `SentenceTransformer(dir)` loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from st_helpers import parallel_rows


@pytest.fixture(scope="session")
def parallel_dataset():
    from datasets import Dataset

    return Dataset.from_dict(parallel_rows())


@pytest.fixture(scope="session")
def st_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random XLM-R checkpoint (dropout 0.1)."""
    from hybridfast.testing import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("st-tiny"))
