"""Fused Triton kernels: similarity matrix + InfoNCE loss, masked pooling (forward and backward)."""
