"""Fused Triton kernels: similarity matrix + InfoNCE loss, masked pooling (forward and backward).

The functions load on first use (PEP 562), so that importing a submodule such as `hybridfast.kernels.benchmark` for
its command-line options does not import torch and triton (`hybridfast --help` stays fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybridfast.kernels.functional import contrastive_loss, pool, pool_varlen

__all__ = ["contrastive_loss", "pool", "pool_varlen"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hybridfast.kernels import functional

        return getattr(functional, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
