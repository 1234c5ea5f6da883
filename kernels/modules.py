"""`nn.Module` wrappers of the fused kernels, for models that hold their pooling and loss as submodules."""

from __future__ import annotations

import math

import torch
from torch import nn

from hybridfast.kernels.functional import contrastive_loss, temperature_value
from hybridfast.kernels.pooling import BACKENDS, MODES, pool, pool_varlen


class Pooler(nn.Module):
    """Masked pooling (mean / cls / max) with the optional L2 normalization fused in (see `pool`).

    Example:
        >>> pooler = Pooler("mean", normalize=True)
        >>> emb = pooler(torch.randn(2, 7, 16), torch.ones(2, 7, dtype=torch.long))  # [2, 16], unit rows
        >>> packed = pooler.forward_varlen(torch.randn(9, 16), torch.tensor([0, 4, 9], dtype=torch.int32))
    """

    def __init__(
        self,
        mode: str = "mean",
        normalize: bool = True,
        out_dtype: torch.dtype | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.mode = mode
        self.normalize = normalize
        self.out_dtype = out_dtype
        self.backend = backend

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, L, D] states and [B, L] mask → [B, D]."""
        return pool(
            hidden,
            attention_mask,
            mode=self.mode,
            normalize=self.normalize,
            out_dtype=self.out_dtype,
            backend=self.backend,
        )

    def forward_varlen(self, hidden_packed: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        """[T, D] packed states and [B + 1] cumulative lengths → [B, D]."""
        return pool_varlen(
            hidden_packed,
            cu_seqlens,
            mode=self.mode,
            normalize=self.normalize,
            out_dtype=self.out_dtype,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, normalize={self.normalize}, backend={self.backend!r}"


class ContrastiveLoss(nn.Module):
    """InfoNCE over queries and candidates (see `contrastive_loss`), with an optionally learnable temperature.

    A learnable temperature is stored as log τ (as CLIP stores its logit scale), so that gradient steps act on
    its scale and τ stays positive: τ = exp(log_temperature).

    Example:
        >>> loss_fn = ContrastiveLoss(temperature=0.05, learnable_temperature=True)
        >>> q = torch.nn.functional.normalize(torch.randn(4, 32), dim=-1)
        >>> p = torch.nn.functional.normalize(torch.randn(12, 32), dim=-1)
        >>> loss_fn(q, p).backward()  # loss_fn.log_temperature.grad is now set
    """

    def __init__(
        self,
        temperature: float = 0.05,
        *,
        learnable_temperature: bool = False,
        symmetric: bool = False,
        reduction: str = "mean",
        backend: str = "auto",
    ) -> None:
        super().__init__()
        log_temperature = torch.tensor(math.log(temperature_value(temperature)), dtype=torch.float32)
        if learnable_temperature:
            self.log_temperature = nn.Parameter(log_temperature)
        else:
            self.register_buffer("log_temperature", log_temperature)
        self.symmetric = symmetric
        self.reduction = reduction
        self.backend = backend

    @property
    def temperature(self) -> torch.Tensor:
        """τ as a 0-dim tensor (carrying a gradient when learnable)."""
        return self.log_temperature.exp()

    def forward(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        labels: torch.Tensor | None = None,
        group_ids: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """[M, d] queries, [N, d] candidates (labels default to arange(M)) → the reduced loss."""
        return contrastive_loss(
            q,
            p,
            labels=labels,
            temperature=self.temperature,
            group_ids=group_ids,
            symmetric=self.symmetric,
            reduction=self.reduction,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={float(self.temperature.detach()):.4g}, learnable={self.log_temperature.requires_grad}, "
            f"symmetric={self.symmetric}, reduction={self.reduction!r}"
        )
