"""Two CPU processes (gloo): DDP and DeepSpeed ZeRO-2 / ZeRO-3, with the plain or the cached step, reproduce the
single-process plain run on the same global batch (losses of every step and the final weights)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import read_losses, write_config

import hybridfast
from hybridfast.train.config import load_config
from hybridfast.train.loop import TrainResult, train

ROOT = Path(__file__).resolve().parents[2]
STEPS = 3
SECTIONS = {
    "train": {"steps": STEPS},
    "sampling": {"alpha": 0.5, "allow_parallel_duplicates": True, "pairs_per_qid": 2},
    "optim": {"lr": 1e-3, "schedule": "linear", "warmup_steps": 1, "max_grad_norm": 1.0},
}


def _config(directory: Path, inputs: tuple[Path, Path], batch_size: int, **train: str | int) -> Path:
    sampling = {**SECTIONS["sampling"], "batch_size": batch_size}
    return write_config(directory, *inputs, **{**SECTIONS, "sampling": sampling, "train": {**SECTIONS["train"], **train}})


def _launch(args: list[str], config: Path) -> dict[int, float]:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args,
               "--config", str(config), "--no-progress"]
    run = subprocess.run(command, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                         text=True, timeout=540)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "checkpoint:" in run.stdout
    return read_losses(config.parent / "out")


@pytest.fixture(scope="module")
def inputs(nodrop_model_dir: Path, parallel_jsonl: Path) -> tuple[Path, Path]:
    return nodrop_model_dir, parallel_jsonl


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, inputs: tuple[Path, Path]) -> TrainResult:
    """One process, plain step, on the global batch of 8 pairs."""
    config = load_config(_config(tmp_path_factory.mktemp("single"), inputs, batch_size=8))
    return train(config, show_progress=False)


def _assert_matches(output_dir: Path, reference: TrainResult) -> None:
    from safetensors.torch import load_file

    losses = read_losses(output_dir)
    assert sorted(losses) == list(range(1, STEPS + 1))
    for step in losses:
        assert losses[step] == pytest.approx(reference.losses[step], rel=2e-4), (step, losses, reference.losses)
    got = load_file(output_dir / f"checkpoint-{STEPS:06d}" / "model.safetensors")
    expected = load_file(reference.checkpoint / "model.safetensors")
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert (got[name].float() - tensor.float()).abs().max() < 1e-5, name


# embed_chunk_size 3 cuts each rank's 4 queries into 3 + 1 and its 4 candidates into 3 + 1 (cached step).
@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("chunk", [0, 3], ids=["plain", "cached"])
def test_ddp_two_processes_match_single_process(
    tmp_path: Path, inputs: tuple[Path, Path], reference: TrainResult, chunk: int
) -> None:
    # `accelerate launch train ...` from the repository root: train/__main__.py.
    _launch(["train"], _config(tmp_path, inputs, batch_size=4, embed_chunk_size=chunk))
    _assert_matches(tmp_path / "out", reference)


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize(("stage", "chunk"), [(2, 0), (2, 3), (3, 3)], ids=["zero2-plain", "zero2-cached", "zero3-cached"])
def test_deepspeed_zero_two_processes_match_single_process(
    tmp_path: Path, inputs: tuple[Path, Path], reference: TrainResult, stage: int, chunk: int
) -> None:
    ds_config = str(ROOT / "train" / "configs" / f"zero{stage}.json")
    _launch(["-m", "hybridfast.train"], _config(tmp_path, inputs, batch_size=4, deepspeed=ds_config,
                                                 embed_chunk_size=chunk))
    _assert_matches(tmp_path / "out", reference)
    checkpoint = tmp_path / "out" / f"checkpoint-{STEPS:06d}"
    assert (checkpoint / "training_state" / "deepspeed").is_dir()
    assert hybridfast.load(str(checkpoint), device="cpu").encode_queries(["Wo ist der Rhein?"]).shape == (1, 32)
