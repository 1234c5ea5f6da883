"""Shared fixtures (the data root, a tiny random encoder checkpoint; no downloads), and Triton's interpreter
switched on for CPU-only machines so that `python -m pytest` runs the kernel tests there too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Triton reads TRITON_INTERPRET when a kernel is decorated, i.e. when hybridfast.kernels is first imported: this
# file is imported before any test module, so the switch lands in time. Without a CUDA device the interpreter is
# the only way to run the Triton kernels; with one, or when the user chose a value, nothing changes. Subprocesses
# started by tests inherit it.
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


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
