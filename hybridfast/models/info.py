"""`hybridfast models info`: what a checkpoint directory holds, without loading its weights."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridfast.errors import HybridfastError
from hybridfast.models.checkpoint import ENCODER_CONFIG_FILE
from hybridfast.models.safetensors_header import checkpoint_tensors

_BYTES_PER_DTYPE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass
class ModelInfo:
    """Architecture, parameter counts, dtypes and sizes of a checkpoint directory."""

    path: str
    architecture: str
    model_type: str
    hidden_size: int | None
    num_layers: int | None
    num_heads: int | None
    vocab_size: int | None
    max_position_embeddings: int | None
    embedding_params: int
    other_params: int
    dtypes: dict[str, int]
    weights_bytes: int
    size_on_disk: int
    encoder_config: dict[str, Any] | None = field(default=None)

    @property
    def total_params(self) -> int:
        return self.embedding_params + self.other_params

    def lines(self) -> list[str]:
        """A human-readable summary, one fact per line."""
        total = max(self.total_params, 1)
        out = [
            f"path              {self.path}",
            f"architecture      {self.architecture} ({self.model_type})",
            f"dimensions        hidden {self.hidden_size}, layers {self.num_layers}, heads {self.num_heads}, "
            f"vocab {self.vocab_size}, max positions {self.max_position_embeddings}",
            f"parameters        {self.total_params:,} total",
            f"  embeddings      {self.embedding_params:,} ({100 * self.embedding_params / total:.1f}%)",
            f"  rest            {self.other_params:,} ({100 * self.other_params / total:.1f}%)",
            f"dtype             {', '.join(f'{k} ({v:,} params)' for k, v in self.dtypes.items())}",
            f"weights           {_human(self.weights_bytes)}",
            f"size on disk      {_human(self.size_on_disk)}",
        ]
        if self.encoder_config is None:
            out.append(f"encoder config    none ({ENCODER_CONFIG_FILE} absent: defaults apply)")
        else:
            out.append("encoder config    " + json.dumps(self.encoder_config, ensure_ascii=False))
        return out


def model_info(model_dir: str | Path) -> ModelInfo:
    """Read config.json, the safetensors headers and the encoder config of `model_dir`."""
    model_dir = Path(model_dir).expanduser()
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise HybridfastError(f"{model_dir}: not a checkpoint directory (no config.json)")
    config = _read_json(config_path)
    tensors = checkpoint_tensors(model_dir)
    embedding = sum(t.numel for t in tensors if t.name.endswith("_embeddings.weight"))
    dtypes: Counter[str] = Counter()
    weights_bytes = 0
    for t in tensors:
        dtypes[t.dtype] += t.numel
        weights_bytes += t.numel * _BYTES_PER_DTYPE.get(t.dtype, 0)
    encoder_path = model_dir / ENCODER_CONFIG_FILE
    return ModelInfo(
        path=str(model_dir),
        architecture=", ".join(config.get("architectures") or ["?"]),
        model_type=str(config.get("model_type", "?")),
        hidden_size=config.get("hidden_size"),
        num_layers=config.get("num_hidden_layers"),
        num_heads=config.get("num_attention_heads"),
        vocab_size=config.get("vocab_size"),
        max_position_embeddings=config.get("max_position_embeddings"),
        embedding_params=embedding,
        other_params=sum(t.numel for t in tensors) - embedding,
        dtypes=dict(dtypes.most_common()),
        weights_bytes=weights_bytes,
        size_on_disk=sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()),
        encoder_config=_read_json(encoder_path) if encoder_path.is_file() else None,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HybridfastError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from err


def _human(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
