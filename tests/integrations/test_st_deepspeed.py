"""SentenceTransformerTrainer under DeepSpeed ZeRO-2 on two gloo processes, with the cached fused loss (global
negatives, group masks) and hybrid batches, ends with the weights of one process trained on the union batch.

ST's own CachedMultipleNegativesRankingLoss backpropagates once per mini-batch and fails under ZeRO
("Gradient computed twice for this partition", sentence-transformers issue #3173); the cached fused loss runs one
backward per step. Without a GPU, accelerate counts a DeepSpeed run as one process; the worker patches its
backend detection to gloo (see `st_trainer_worker._count_ranks_under_cpu_deepspeed`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("st_trainer_worker.py")


@pytest.fixture(scope="module")
def nodrop_st_model_dir(st_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder without dropout: runs that differ only in their process layout then agree exactly."""
    import shutil

    directory = tmp_path_factory.mktemp("st-tiny-nodrop")
    shutil.copytree(st_model_dir, directory, dirs_exist_ok=True)
    config = json.loads((directory / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


@pytest.mark.multiprocess
@pytest.mark.slow
def test_zero2_two_processes_match_one_process(tmp_path: Path, nodrop_st_model_dir: Path) -> None:
    from st_trainer_worker import STEPS, run

    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(WORKER),
        "--model", str(nodrop_st_model_dir), "--out", str(tmp_path / "zero2"), "--batch-size", "4",
        "--deepspeed", str(ROOT / "train" / "configs" / "zero2.json"),
    ]
    launched = subprocess.run(command, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                              text=True, timeout=540)
    assert launched.returncode == 0, launched.stderr[-4000:]
    zero2 = json.loads((tmp_path / "zero2" / "run.json").read_text())
    assert (zero2["wrapper"], zero2["zero_stage"], zero2["world_size"]) == ("DeepSpeedEngine", 2, 2)

    reference = run(nodrop_st_model_dir, tmp_path / "single", batch_size=8)
    assert reference["world_size"] == 1 and len(reference["losses"]) == STEPS
    # The trainer logs 4 significant digits.
    assert zero2["losses"] == pytest.approx(reference["losses"], rel=1e-3)
    got, expected = _weights(tmp_path / "zero2" / "model"), _weights(tmp_path / "single" / "model")
    assert got.keys() == expected.keys()
    # XLM-R's pooler is not in the tiny checkpoint: every process draws its own at load time, and mean pooling
    # leaves it untrained.
    compared = [name for name in expected if not name.startswith("pooler.")]
    assert len(compared) == len(expected) - 2
    for name in compared:
        assert (got[name].float() - expected[name].float()).abs().max() < 1e-5, name
    # The runs trained: the weights moved 1,000x further than the tolerance.
    initial = _weights(nodrop_st_model_dir)
    moved = max((expected[name].float() - initial[name].float()).abs().max() for name in compared)
    assert moved > 1e-2
