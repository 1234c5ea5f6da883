"""Checkpoint files: durable before the rename, no optimizer state for frozen weights, a smaller save dtype."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import write_config

import hybridfast
from hybridfast.train.checkpoint import STATE_DIR, CheckpointWriter, checkpoint_size
from hybridfast.train.config import load_config
from hybridfast.train.loop import train

EMBEDDINGS = "embeddings.word_embeddings.weight"


def test_every_file_and_folder_is_fsynced_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, Path.rename

    def fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def rename(self: Path, target: Path) -> Path:
        events.append(("rename", str(target)))
        return real_rename(self, target)

    def write_main(directory: Path) -> None:
        (directory / "model.safetensors").write_bytes(b"weights")
        (directory / "1_Pooling").mkdir()
        (directory / "1_Pooling" / "config.json").write_text("{}")
        (directory / STATE_DIR / "trainer.json").write_text("{}")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "rename", rename)
    output = tmp_path / "run"
    output.mkdir()
    final = CheckpointWriter(output, keep_last=2, is_main=True, barrier=lambda: None).save(7, write_main)

    staging = output / ".partial-checkpoint-000007"
    renamed = events.index(("rename", str(final)))
    synced_before = {path for kind, path in events[:renamed] if kind == "fsync"}
    files = {"model.safetensors", "1_Pooling/config.json", f"{STATE_DIR}/trainer.json"}
    assert {str(staging / name) for name in files} <= synced_before
    assert {str(staging), str(staging / "1_Pooling"), str(staging / STATE_DIR)} <= synced_before
    assert ("fsync", str(output)) in events[renamed + 1 :]  # the rename itself made durable
    assert (final / "model.safetensors").read_bytes() == b"weights"


@pytest.fixture(scope="module")
def frozen_runs(
    tmp_path_factory: pytest.TempPathFactory, nodrop_model_dir: Path, parallel_jsonl: Path
) -> dict[str, Path]:
    """Two 3-step runs with frozen embeddings, saved in float32 and in bfloat16."""
    checkpoints = {}
    for dtype in ("float32", "bfloat16"):
        directory = tmp_path_factory.mktemp(dtype)
        config = load_config(write_config(directory, nodrop_model_dir, parallel_jsonl, train={"steps": 3},
                                          model={"freeze_embeddings": True}, log={"save_dtype": dtype}))
        checkpoints[dtype] = train(config, show_progress=False).checkpoint
    return checkpoints


def test_no_optimizer_state_for_frozen_parameters(frozen_runs: dict[str, Path], nodrop_model_dir: Path) -> None:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(nodrop_model_dir, add_pooling_layer=False)
    trained = [p for name, p in model.named_parameters() if name != EMBEDDINGS]
    saved = torch.load(frozen_runs["float32"] / STATE_DIR / "optimizer.pt", weights_only=True)["optimizer"]
    shapes = sorted(tuple(entry["exp_avg"].shape) for entry in saved["state"].values())
    assert shapes == sorted(tuple(p.shape) for p in trained)
    assert sum(len(group["params"]) for group in saved["param_groups"]) == len(trained)


def test_bfloat16_save_halves_the_model_and_keeps_float32_master_weights(frozen_runs: dict[str, Path]) -> None:
    full, half = frozen_runs["float32"], frozen_runs["bfloat16"]
    full_weights, half_weights = load_file(str(full / "model.safetensors")), load_file(str(half / "model.safetensors"))
    assert {t.dtype for t in half_weights.values()} == {torch.bfloat16}
    for name, value in full_weights.items():  # same training, then rounded on save
        assert torch.equal(half_weights[name], value.to(torch.bfloat16)), name
    ratio = (half / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.49 < ratio < 0.52

    master = load_file(str(half / STATE_DIR / "master_weights.safetensors"))
    assert EMBEDDINGS not in master and set(master) == set(full_weights) - {EMBEDDINGS}
    for name, value in master.items():
        assert value.dtype == torch.float32 and torch.equal(value, full_weights[name]), name
    assert not (full / STATE_DIR / "master_weights.safetensors").exists()

    encoder = hybridfast.load(str(half), device="cpu", dtype="float32")
    reference = hybridfast.load(str(full), device="cpu", dtype="float32")
    texts = ["Wo ist der Rhein?", "Where is the Rhine?"]
    assert (encoder.encode_queries(texts) * reference.encode_queries(texts)).sum(axis=1).min() > 0.999


def test_checkpoint_size_counts_model_and_training_state(frozen_runs: dict[str, Path]) -> None:
    checkpoint = frozen_runs["float32"]
    size = checkpoint_size(checkpoint)
    state = sum(p.stat().st_size for p in (checkpoint / STATE_DIR).rglob("*") if p.is_file())
    everything = sum(p.stat().st_size for p in checkpoint.rglob("*") if p.is_file())
    assert (size.state_bytes, size.total_bytes) == (state, everything)
    assert size.model_bytes >= (checkpoint / "model.safetensors").stat().st_size
    assert size.describe().endswith(f"training state {state / 2**20:.1f} MiB")


def test_cli_prints_disk_use_per_checkpoint(tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from hybridfast.train.cli import train_command

    app = typer.Typer()
    app.command()(train_command)
    config = write_config(tmp_path, tiny_model_dir, parallel_jsonl, train={"steps": 4}, log={"save_every": 2})
    result = CliRunner().invoke(app, ["--config", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    for step in (2, 4):
        described = checkpoint_size(tmp_path / "out" / f"checkpoint-00000{step}").describe()
        assert f"saved checkpoint-00000{step}: {described}" in result.stderr
    assert f"checkpoint: {tmp_path / 'out' / 'checkpoint-000004'} ({described})" in result.stdout
