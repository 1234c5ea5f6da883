"""SIGKILL at chosen points of a short training run, then resume: bitwise the weights of an uninterrupted run.

The killed run is a real `hybridfast train` process; a small wrapper replaces one function of the trainer
so that the process kills itself (SIGKILL, no cleanup, no atexit) exactly at the chosen point: half-way
through a metrics line, in the middle of a checkpoint's model file, before a checkpoint's rename, after
the rename but before old checkpoints are pruned, between two steps, and inside the final save. Every
point is reached deterministically, and each case first checks that the disk shows that the kill happened
there. The tiny model keeps its dropout, so the resume must also restore the RNG states.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import write_config

from hybridfast.train.checkpoint import STATE_DIR, checkpoint_dirs
from hybridfast.train.config import load_config
from hybridfast.train.loop import train

STEPS = 9
SECTIONS = {
    "train": {"steps": STEPS},
    "sampling": {"alpha": 0.5, "batch_size": 6},
    "optim": {"lr": 1e-3, "warmup_steps": 2, "schedule": "linear", "learn_temperature": True},
    "log": {"save_every": 3, "keep_last": 1},
}

WRAPPER = '''
import json, os, signal, sys
from pathlib import Path

import hybridfast.train.checkpoint as checkpoint
import hybridfast.train.metrics as metrics

POINT, STEP = sys.argv[1], int(sys.argv[2])


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def at(directory):
    return Path(directory).name.endswith(f"checkpoint-{STEP:06d}")


append_record, write_encoder_checkpoint = metrics.append_record, checkpoint.write_encoder_checkpoint
publish, prune = checkpoint.CheckpointWriter._publish, checkpoint.CheckpointWriter._prune


def faulty_append(path, record):
    if POINT == "metrics-torn" and record["step"] == STEP:
        line = json.dumps(record) + "\\n"
        with path.open("a") as handle:
            handle.write(line[: len(line) // 2])
        die()
    append_record(path, record)
    if POINT == "between-steps" and record["step"] == STEP:
        die()


def faulty_model_write(directory, *args, **kwargs):
    write_encoder_checkpoint(directory, *args, **kwargs)
    if POINT == "model-write" and at(directory):
        weights = directory / "model.safetensors"
        os.truncate(weights, weights.stat().st_size // 2)
        die()


def faulty_trainer_state(directory, *args, **kwargs):
    if POINT == "state-write" and at(directory):
        (directory / checkpoint.STATE_DIR / checkpoint.OPTIMIZER_FILE).write_bytes(b"PK" + bytes(64))
        die()
    real_trainer_state(directory, *args, **kwargs)


def faulty_publish(self, staging, final):
    if POINT == "before-rename" and at(final):
        die()
    publish(self, staging, final)


def faulty_prune(self):
    newest = checkpoint.latest_checkpoint(self.output_dir)
    if POINT == "before-prune" and at(newest):
        die()
    prune(self)


real_trainer_state = checkpoint.write_trainer_state
metrics.append_record, checkpoint.write_encoder_checkpoint = faulty_append, faulty_model_write
checkpoint.write_trainer_state = faulty_trainer_state
checkpoint.CheckpointWriter._publish, checkpoint.CheckpointWriter._prune = faulty_publish, faulty_prune

from hybridfast.train.cli import main

sys.argv = ["hybridfast train", *sys.argv[3:]]
main()
'''


def _write(directory: Path, model: Path, data: Path, save_dtype: str) -> Path:
    directory.mkdir()
    return write_config(directory, model, data, **{**SECTIONS, "log": {**SECTIONS["log"], "save_dtype": save_dtype}})


def _final_state(output: Path) -> dict[str, torch.Tensor]:
    """Everything a continued run would start from (model file, master weights of bf16 saves, τ), and the
    logged losses."""
    final = output / f"checkpoint-{STEPS:06d}"
    weights = load_file(str(final / "model.safetensors"))
    master = final / STATE_DIR / "master_weights.safetensors"
    if master.is_file():
        weights.update({f"master.{k}": v for k, v in load_file(str(master)).items()})
    weights.update(load_file(str(final / STATE_DIR / "tensors.safetensors")))
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    weights["logged steps"] = torch.tensor([row["step"] for row in rows])
    weights["logged losses"] = torch.tensor([row["loss"] for row in rows], dtype=torch.float64)
    return weights


@pytest.fixture(scope="module")
def references(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, parallel_jsonl: Path
) -> dict[str, dict[str, torch.Tensor]]:
    """The uninterrupted runs, one per save dtype."""
    weights = {}
    for dtype in ("float32", "bfloat16"):
        config = _write(tmp_path_factory.mktemp("reference") / "run", tiny_model_dir, parallel_jsonl, dtype)
        weights[dtype] = _final_state(train(load_config(config), show_progress=False).output_dir)
    return weights


def _killed_at(out: Path, point: str) -> None:
    """What the disk must show right after the kill, so each case proves it hit its point."""
    steps = [step for step, _ in checkpoint_dirs(out)]
    metrics = (out / "metrics.jsonl").read_text()
    if point == "metrics-torn":
        assert steps == [3] and not metrics.endswith("\n") and metrics.count("\n") == 4
    elif point == "between-steps":
        assert steps == [6] and json.loads(metrics.splitlines()[-1])["step"] == 7
    elif point in ("model-write", "before-rename"):
        assert steps == [3] and (out / ".partial-checkpoint-000006" / "model.safetensors").is_file()
        assert (out / ".partial-checkpoint-000006" / STATE_DIR / "trainer.json").is_file() == (point == "before-rename")
    elif point == "before-prune":
        assert steps == [3, 6]  # keep_last = 1: checkpoint 3 was about to go
    elif point == "state-write":
        assert steps == [6] and (out / f".partial-checkpoint-{STEPS:06d}").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "step", "save_dtype", "resumed_from"),
    [
        ("metrics-torn", 5, "float32", 3),
        ("model-write", 6, "float32", 3),
        ("before-rename", 6, "float32", 3),
        ("before-prune", 6, "float32", 6),
        ("between-steps", 7, "float32", 6),
        ("state-write", STEPS, "float32", 6),
        ("between-steps", 7, "bfloat16", 6),
    ],
)
def test_sigkill_then_resume_gives_the_uninterrupted_weights(
    tmp_path: Path,
    tiny_model_dir: Path,
    parallel_jsonl: Path,
    references: dict[str, dict[str, torch.Tensor]],
    point: str,
    step: int,
    save_dtype: str,
    resumed_from: int,
) -> None:
    config = _write(tmp_path / "run", tiny_model_dir, parallel_jsonl, save_dtype)
    (tmp_path / "faulty_train.py").write_text(WRAPPER)
    killed = subprocess.run(
        [sys.executable, str(tmp_path / "faulty_train.py"), point, str(step), "--config", str(config), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    out = tmp_path / "run" / "out"
    _killed_at(out, point)

    result = train(load_config(config), show_progress=False)
    assert result.resumed_from == out / f"checkpoint-{resumed_from:06d}"
    assert (result.start_step, result.steps_trained) == (resumed_from, STEPS - resumed_from)
    assert [step for step, _ in checkpoint_dirs(out)] == [STEPS]
    assert not [child.name for child in out.iterdir() if child.name.startswith(".partial")]

    reference = references[save_dtype]
    resumed = _final_state(out)
    assert resumed["logged steps"].tolist() == list(range(1, STEPS + 1))
    assert sorted(resumed) == sorted(reference)
    different = [name for name in reference if not torch.equal(resumed[name], reference[name])]
    assert not different, different
