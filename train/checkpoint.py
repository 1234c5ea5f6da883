"""Training checkpoints: an HF-compatible encoder folder plus the state for an exact resume.

Layout of `<output_dir>/checkpoint-<step>/`::

    config.json  model.safetensors  tokenizer files            transformers.AutoModel / AutoTokenizer
    hybridfast_encoder.json                                     hybridfast.load
    modules.json  sentence_bert_config.json  1_Pooling/ ...     sentence_transformers.SentenceTransformer
    training_state/
        trainer.json            step, sampler position and statistics, config (JSON)
        tensors.safetensors     learnable temperature and other trainer tensors
        optimizer.pt            torch.save of optimizer / scheduler state dicts (tensors and numbers only)
        rng-rank<r>.safetensors torch CPU (and CUDA) generator states of rank r
        deepspeed/              DeepSpeed's own sharded engine state, when training under DeepSpeed

Everything is written into `.partial-checkpoint-<step>/` and renamed into place by the main process
once complete, so a crash during a save leaves the previous checkpoints untouched and never a folder
that `latest_checkpoint` would pick. State is read back with `safetensors` and
`torch.load(weights_only=True)`: nothing is unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hybridfast.errors import HybridfastError

CHECKPOINT_PREFIX = "checkpoint-"
PARTIAL_PREFIX = ".partial-"
STATE_DIR = "training_state"
TRAINER_FILE = "trainer.json"
TENSORS_FILE = "tensors.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
DEEPSPEED_DIR = "deepspeed"
_STEP = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


class CheckpointError(HybridfastError):
    """A checkpoint to resume from is missing or incomplete."""


def checkpoint_dirs(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `output_dir`, oldest first, as (step, path)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        match = _STEP.match(child.name)
        if match and (child / STATE_DIR / TRAINER_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under `output_dir`, or None."""
    found = checkpoint_dirs(output_dir)
    return found[-1][1] if found else None


def write_encoder_checkpoint(
    directory: Path, encoder: Any, state_dict: Mapping[str, torch.Tensor] | None = None
) -> None:
    """Write the encoder as an HF + sentence-transformers + hybridfast folder into `directory`.

    `state_dict` (keys of the HF model) replaces the module's own weights, e.g. the consolidated
    weights of a ZeRO-3 run.
    """
    from hybridfast.models.checkpoint import write_encoder_files

    state = {k: v.detach().contiguous() for k, v in (state_dict or encoder.model.state_dict()).items()}
    encoder.model.save_pretrained(directory, state_dict=state, safe_serialization=True)
    encoder.tokenizer.save_pretrained(directory)
    write_encoder_files(directory, asdict(encoder.config), int(encoder.model.config.hidden_size))


def rng_state() -> dict[str, torch.Tensor]:
    """This process's torch generator states (CPU, and every CUDA device)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{index}"] = cuda_state
    return state


def set_rng_state(state: Mapping[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if torch.cuda.is_available():
        cuda = [state[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in state]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


class CheckpointWriter:
    """Writes checkpoints atomically from one or many processes and keeps the last K.

    `save` runs `write_all(staging)` on every process (per-rank RNG files, DeepSpeed's
    collective engine save), then `write_main(staging)` on the main process, which finally
    renames the staging folder to `checkpoint-<step>` and prunes older checkpoints.
    """

    def __init__(self, output_dir: str | Path, keep_last: int, *, is_main: bool, barrier: Callable[[], None]):
        self.output_dir = Path(output_dir)
        self.keep_last = keep_last
        self.is_main = is_main
        self.barrier = barrier

    def save(
        self,
        step: int,
        write_main: Callable[[Path], None],
        write_all: Callable[[Path], None] | None = None,
    ) -> Path:
        final = self.output_dir / f"{CHECKPOINT_PREFIX}{step:06d}"
        staging = self.output_dir / f"{PARTIAL_PREFIX}{final.name}"
        if self.is_main:
            shutil.rmtree(staging, ignore_errors=True)
            (staging / STATE_DIR).mkdir(parents=True)
        self.barrier()
        if write_all is not None:
            write_all(staging)
        self.barrier()
        if self.is_main:
            write_main(staging)
            if final.exists():
                trash = self.output_dir / f"{PARTIAL_PREFIX}old-{final.name}"
                shutil.rmtree(trash, ignore_errors=True)
                final.rename(trash)
                staging.rename(final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                staging.rename(final)
            self._prune()
        self.barrier()
        return final

    def _prune(self) -> None:
        for _, path in checkpoint_dirs(self.output_dir)[: -self.keep_last]:
            shutil.rmtree(path, ignore_errors=True)
        for child in self.output_dir.iterdir():
            if child.name.startswith(PARTIAL_PREFIX):
                shutil.rmtree(child, ignore_errors=True)


def write_trainer_state(
    directory: Path,
    trainer: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    optimizer: Mapping[str, Any] | None,
    scheduler: Mapping[str, Any],
) -> None:
    """The main process's share of the resume state (see the module docstring)."""
    state_dir = directory / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(state_dir / TENSORS_FILE))
    torch.save({"optimizer": optimizer, "scheduler": scheduler}, state_dir / OPTIMIZER_FILE)
    # Written last: its presence marks the checkpoint complete.
    (state_dir / TRAINER_FILE).write_text(json.dumps(trainer, indent=2) + "\n")


def write_rng_state(directory: Path, rank: int) -> None:
    save_file(rng_state(), str(directory / STATE_DIR / f"rng-rank{rank}.safetensors"))


def read_trainer_state(directory: Path) -> dict[str, Any]:
    """Trainer JSON, trainer tensors and optimizer / scheduler state of a checkpoint."""
    state_dir = Path(directory) / STATE_DIR
    missing = [name for name in (TRAINER_FILE, TENSORS_FILE, OPTIMIZER_FILE) if not (state_dir / name).is_file()]
    if missing:
        raise CheckpointError(f"{directory}: cannot resume, {STATE_DIR}/ lacks {', '.join(missing)}")
    optim = torch.load(state_dir / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    return {
        "trainer": json.loads((state_dir / TRAINER_FILE).read_text()),
        "tensors": load_file(str(state_dir / TENSORS_FILE)),
        "optimizer": optim["optimizer"],
        "scheduler": optim["scheduler"],
    }


def read_rng_state(directory: Path, rank: int) -> dict[str, torch.Tensor] | None:
    path = Path(directory) / STATE_DIR / f"rng-rank{rank}.safetensors"
    return load_file(str(path)) if path.is_file() else None
