"""Padding-free (packed, variable-length) attention for Hugging Face encoders.

A packed batch is one ``[1, T]`` token stream holding B texts back to back, with cumulative
sequence lengths ``cu_seqlens = [0, l0, l0 + l1, …, T]`` and per-text position ids. Linear
layers, layer norms and the feed-forward blocks then touch only real tokens; attention must
not cross text boundaries, so it runs per segment:

- on CUDA in fp16/bf16, through ``torch.nn.attention.varlen.varlen_attn`` (PyTorch's
  FlashAttention varlen kernel, torch ≥ 2.9) when present;
- elsewhere, one ``scaled_dot_product_attention`` call per text (exact, CPU-friendly).

In training, PyTorch's varlen kernel applies no dropout to the attention probabilities (its dropout is fixed
at 0); the per-text SDPA path and padded batches do. Hidden-state dropout is the same on every path.

The attention function is registered in transformers' ``AttentionInterface`` under
:data:`ATTN_NAME`. It receives ``cu_seq_lens_q`` / ``max_length_q`` through the model's
``**kwargs`` (the same keywords transformers' flash-attention integration uses); without
them it is plain SDPA over the padded mask, so padded batches (training, the server's
fallback) still run on a model switched to it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

ATTN_NAME = "hybridfast_varlen"

try:
    from torch.nn.attention.varlen import varlen_attn as _flash_varlen
except ImportError:  # torch < 2.9
    _flash_varlen = None

# Position numbering of packed texts, by model type: XLM-R/RoBERTa count from padding_idx + 1,
# BERT from 0. Other architectures are not packed.
_POSITION_OFFSETS = {"xlm-roberta": "pad+1", "roberta": "pad+1", "camembert": "pad+1", "bert": 0}


def packed_position_offset(model_config: Any) -> int | None:
    """The first position id of each packed text for this model, or None when packing is unsupported."""
    rule = _POSITION_OFFSETS.get(getattr(model_config, "model_type", ""))
    if rule is None:
        return None
    if rule == "pad+1":
        return int(model_config.pad_token_id) + 1
    return int(rule)


def flash_varlen_available(device: torch.device, dtype: torch.dtype) -> bool:
    """True when packed attention can use the FlashAttention varlen kernel for this device and dtype."""
    return _flash_varlen is not None and device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)


def varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: packed segments when `cu_seq_lens_q` is given, else SDPA.

    `query`/`key`/`value` are ``[B, H, L, d]``; returns ``[B, L, H, d]`` as transformers expects.
    """
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    head_dim = query.shape[-1]
    default_scale = scaling is None or abs(scaling - head_dim**-0.5) < 1e-6
    if default_scale and flash_varlen_available(query.device, query.dtype):
        max_len = int(kwargs["max_length_q"])
        out = _flash_varlen(
            query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1),
            cu_seqlens, cu_seqlens, max_len, max_len,
        )
        return out.unsqueeze(0), None
    bounds = cu_seqlens.tolist()
    segments = [
        F.scaled_dot_product_attention(
            query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], dropout_p=dropout, scale=scaling
        )
        for start, end in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return torch.cat(segments, dim=2).transpose(1, 2).contiguous(), None


def register_varlen_attention() -> None:
    """Register :func:`varlen_attention` (and SDPA's padded mask builder) under :data:`ATTN_NAME`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, varlen_attention)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
