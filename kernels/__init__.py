"""Fused Triton kernels: similarity matrix + InfoNCE loss, masked pooling (forward and backward)."""

from hybridfast.kernels.functional import contrastive_loss, pool, pool_varlen

__all__ = ["contrastive_loss", "pool", "pool_varlen"]
