"""Tensor names, shapes and dtypes of a checkpoint's safetensors files, read from their headers only."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from hybridfast.errors import HybridfastError

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


def weight_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint directory (one file, or the shards of an index)."""
    model_dir = Path(model_dir)
    single = model_dir / WEIGHTS_FILE
    if single.is_file():
        return [single]
    index = model_dir / WEIGHTS_INDEX_FILE
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as err:
            raise HybridfastError(f"{index}: not a safetensors index ({err})") from err
        return [model_dir / shard for shard in shards]
    raise HybridfastError(f"{model_dir}: no {WEIGHTS_FILE} (only safetensors checkpoints are supported)")


def read_header(path: str | Path) -> list[TensorInfo]:
    """The tensors listed in one safetensors file's JSON header."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) != 8:
                raise HybridfastError(f"{path}: truncated safetensors file")
            (header_len,) = struct.unpack("<Q", raw_len)
            header = json.loads(fh.read(header_len))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HybridfastError(f"{path}: unreadable safetensors header ({err})") from err
    return [
        TensorInfo(name, meta["dtype"], tuple(meta["shape"]))
        for name, meta in header.items()
        if name != "__metadata__"
    ]


def checkpoint_tensors(model_dir: str | Path) -> list[TensorInfo]:
    """All tensors of a checkpoint directory."""
    return [info for path in weight_files(model_dir) for info in read_header(path)]
