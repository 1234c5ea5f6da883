"""Exact resume: a run killed with SIGKILL mid-way and restarted logs the losses of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import read_losses, write_config

from hybridfast.train.checkpoint import checkpoint_dirs
from hybridfast.train.config import load_config
from hybridfast.train.loop import train

KILLER = '''
import os, signal
from pathlib import Path


def hook(encoder, *, step, output_dir):
    marker = Path(output_dir) / "killed-once"
    if step == 5 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(
    tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path
) -> None:
    (tmp_path / "killer_hook.py").write_text(KILLER)
    # Dropout stays on (tiny model), so the resumed run must restore the RNG state too.
    sections = {
        "train": {"steps": 8},
        "sampling": {"alpha": 0.5, "batch_size": 6},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "schedule": "linear", "learn_temperature": True},
        "log": {"save_every": 3, "eval_every": 5, "eval_hook": "killer_hook:hook"},
    }
    killed_dir = tmp_path / "killed"
    killed_dir.mkdir()
    config_path = write_config(killed_dir, tiny_model_dir, parallel_jsonl, **sections)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "hybridfast.train", "--config", str(config_path), "--no-progress"]

    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    out = killed_dir / "out"
    assert [step for step, _ in checkpoint_dirs(out)] == [3]
    assert max(read_losses(out)) == 5  # steps 4 and 5 ran after the checkpoint and are redone

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    resumed = read_losses(out)

    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean = load_config(write_config(clean_dir, tiny_model_dir, parallel_jsonl,
                                     **{**sections, "log": {"save_every": 3}}))
    reference = train(clean, show_progress=False).losses
    assert sorted(resumed) == list(range(1, 9))
    for step in range(1, 9):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-6), step
