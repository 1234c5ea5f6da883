"""`accelerate launch train` as a user runs it: quiet by default, third-party output back with --verbose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import write_config

ROOT = Path(__file__).resolve().parents[2]
NOISE = ("Setting accelerator to CPU", "Loading weights", "Writing model shards")


@pytest.mark.slow
def test_accelerate_launch_train_is_quiet_unless_verbose(
    tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path
) -> None:
    config = write_config(tmp_path, tiny_model_dir, parallel_jsonl, train={"steps": 2})
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "train", "--config", str(config), "--no-progress"]
    env = {key: value for key, value in os.environ.items() if key not in ("HYBRIDFAST_VERBOSE", "HF_HUB_DISABLE_PROGRESS_BARS")}

    quiet = subprocess.run([*launch, "--resume", "never"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "trained 2 steps (1-2)" in quiet.stdout
    assert [noise for noise in NOISE if noise in quiet.stderr] == [], quiet.stderr

    verbose = subprocess.run([*launch, "--resume", "never", "--verbose"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "Loading weights" in verbose.stderr and "Writing model shards" in verbose.stderr
