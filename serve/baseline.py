"""The unfused baseline encoder: what a plain Hugging Face script does.

HF `AutoModel` (SDPA attention), fixed-size batches **in input order**, each padded to its own
longest text, masked pooling and L2 normalization in plain torch, one device-to-host copy per
batch. It reads the same checkpoint config (pooling, normalization, prefixes, max length) as
:class:`hybridfast.encoder.FusedEncoder`, so the two must agree to float tolerance; the lean
path's speed-up over it is what `hybridfast bench encode` reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from hybridfast.encoder import EncoderConfig, TextKind
from hybridfast.errors import HybridfastError


def masked_pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str, normalize: bool) -> torch.Tensor:
    """Plain-torch pooling of [B, L, D] states under a [B, L] mask (mean / cls / max), then L2 norm."""
    valid = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        pooled = (hidden * valid).sum(1) / valid.sum(1).clamp(min=1)
    elif mode == "cls":
        pooled = hidden[:, 0]
    elif mode == "max":
        pooled = hidden.masked_fill(valid == 0, torch.finfo(hidden.dtype).min).max(1).values
    else:
        raise HybridfastError(f"pooling must be mean, cls or max, not {mode!r}")
    return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled


class UnfusedEncoder:
    """Reference encoder: padded batches in input order, torch pooling (see module docstring)."""

    def __init__(self, model: torch.nn.Module, tokenizer: object, config: EncoderConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> UnfusedEncoder:
        """Load a checkpoint directory with `AutoModel` / `AutoTokenizer` and its encoder config."""
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(directory, dtype=dtype, add_pooling_layer=False, attn_implementation="sdpa")
        model.to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(directory)
        return cls(model, tokenizer, EncoderConfig.load(directory) or EncoderConfig())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        prefix: TextKind | None = None,
        *,
        batch_size: int = 32,
        max_length: int | None = None,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Float32 [n, D] embeddings, batches of `batch_size` texts taken in input order; `on_batch` is called with
        (texts, real tokens) of each finished batch, as by `FusedEncoder.encode`."""
        if batch_size < 1:
            raise HybridfastError(f"batch_size must be at least 1, not {batch_size}")
        limit = max_length or self.config.length_limit(prefix)
        prefix_text = self.config.prefix(prefix)
        out: list[np.ndarray] = []
        for start in range(0, len(texts), batch_size):
            chunk = [prefix_text + text for text in texts[start : start + batch_size]]
            batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=limit, return_tensors="pt")
            input_ids = batch["input_ids"].to(self.device)
            mask = batch["attention_mask"].to(self.device)
            hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            pooled = masked_pool(hidden, mask, self.config.pooling, self.config.normalize)
            out.append(pooled.float().cpu().numpy())
            if on_batch is not None:
                on_batch(len(chunk), int(batch["attention_mask"].sum()))
        if not out:
            return np.zeros((0, int(self.model.config.hidden_size)), dtype=np.float32)
        return np.concatenate(out)
