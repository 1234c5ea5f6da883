"""The README's test command runs the kernel tests by itself: with TRITON_INTERPRET unset, a Triton-backend test
runs (through the interpreter without CUDA, compiled with it) instead of being skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_kernel_tests_run_without_triton_interpret_set() -> None:
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    selection = "test_pool_matches_reference and triton and mean-norm and float32"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/kernels/test_pooling.py",
         "-k", selection],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    summary = out.stdout.strip().splitlines()[-1]
    assert summary.startswith("1 passed") and "skipped" not in summary, out.stdout
