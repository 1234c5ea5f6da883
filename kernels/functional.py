"""Public functional API of the kernels: ``contrastive_loss``, ``pool`` and ``pool_varlen``."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from hybridfast.kernels.contrastive import (
    INTERPRET,
    ContrastiveLossFunction,
    Problem,
    contrastive_losses_naive,
)
from hybridfast.kernels.pooling import pool, pool_varlen

__all__ = ["contrastive_loss", "pool", "pool_varlen"]

BACKENDS = ("auto", "triton", "torch", "naive")
REDUCTIONS = ("mean", "sum", "none")
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check_index(name: str, t: object, length: int, device: torch.device) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(t).__name__}")
    if t.dim() != 1 or t.shape[0] != length:
        raise ValueError(f"{name} must have shape [{length}], got {list(t.shape)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but q and p are on {device}")
    return t.to(torch.int64).contiguous()


def _check_inputs(q: object, p: object) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("q", q), ("p", p)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D [rows, d], got shape {list(t.shape)}")
        if not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
        if t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(f"{name} is empty: shape {list(t.shape)}")
    assert isinstance(q, torch.Tensor) and isinstance(p, torch.Tensor)
    if q.shape[1] != p.shape[1]:
        raise ValueError(f"q and p must share the embedding size d: q is {list(q.shape)}, p is {list(p.shape)}")
    if q.device != p.device:
        raise ValueError(f"q is on {q.device} but p is on {p.device}")
    return q, p


def temperature_value(temperature: object) -> float:
    """A Python or numpy real τ as a float, checked to be finite and positive (``ValueError`` naming it otherwise)."""
    if isinstance(temperature, (bool, np.bool_)):
        raise ValueError(f"temperature must be a positive finite number, got the bool {temperature!r}")
    if isinstance(temperature, np.ndarray):
        raise ValueError(f"temperature must be a number or a torch tensor, got a numpy array of shape "
                         f"{list(temperature.shape)} (pass float(x) or torch.tensor(x))")
    if not isinstance(temperature, numbers.Real):
        raise ValueError(f"temperature must be a positive finite number, got {type(temperature).__name__}")
    value = float(temperature)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    return value


def _temperature(temperature: object, device: torch.device) -> torch.Tensor:
    """τ as a 0-dim fp32 tensor on ``device``, checked to be a finite positive real number.

    Python and numpy real scalars are taken by value. A tensor (a learnable τ) must hold one floating-point
    element; on CPU its value is checked here, on CUDA by a device-side assert queued on the stream: reading it
    on the host would wait for the GPU on every call. A failed device assert surfaces at the next synchronizing
    call and leaves the CUDA context unusable, which is what a NaN or non-positive learnable τ deserves.
    """
    if isinstance(temperature, torch.Tensor):
        if not temperature.dtype.is_floating_point:
            raise ValueError(f"temperature tensor must have a floating-point dtype, got {temperature.dtype}")
        if temperature.numel() != 1:
            raise ValueError(f"temperature tensor must hold one value (a scalar), got shape {list(temperature.shape)}")
        tau = temperature.reshape(())
        if tau.is_cuda:
            torch._assert_async(torch.isfinite(torch.log(tau.detach())),
                                "contrastive_loss: temperature must be finite and positive")
        else:
            value = float(tau.detach())
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"temperature must be finite and positive, got a tensor holding {value!r}")
        return tau.to(device=device, dtype=torch.float32)
    value = temperature_value(temperature)
    # A fill on the device: torch.tensor(value, device="cuda") would copy from pageable host memory and wait for
    # the stream, a host sync on every call.
    return torch.full((), value, dtype=torch.float32, device=device)


# backend="auto" on CUDA takes the naive path up to this many logits (M·N), the fused kernels above it. At 4,096²
# the fused step is host-bound (~40 launches): 1.69 ms against naive's 0.91 ms (d = 768, bf16, H200, run 3 in
# benchmarks/KERNELS.md); at 16,384² fused wins 3.40 against 6.35 ms. Interpolating both, they cross near 2^26;
# at 2^25 naive holds ≤ 0.4 GiB of logits and their gradient.
AUTO_NAIVE_MAX_LOGITS = 2**25


def _resolve_backend(backend: str, q: torch.Tensor, n: int) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if not q.is_cuda:
            return "torch"
        return "naive" if q.shape[0] * n <= AUTO_NAIVE_MAX_LOGITS else "triton"
    if backend == "triton":
        if not (q.is_cuda or INTERPRET):
            raise ValueError("backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before import for CPU")
        if q.dtype not in TRITON_DTYPES:
            raise ValueError(f"backend='triton' supports float32, bfloat16 and float16, got {q.dtype}")
    return backend


def contrastive_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    temperature: float | torch.Tensor = 0.05,
    group_ids: tuple[torch.Tensor, torch.Tensor] | None = None,
    symmetric: bool = False,
    reduction: str = "mean",
    backend: str = "auto",
    allow_tf32: bool = False,
) -> torch.Tensor:
    """InfoNCE loss of queries against candidates without materializing the [M, N] logits.

    ``loss_i = -s(i, l_i)/τ + log Σ_{j kept} exp(s(i, j)/τ)`` with ``s = q·pᵀ`` (inputs need not be normalized),
    as in van den Oord et al. (2018), "Representation Learning with Contrastive Predictive Coding". The fused
    kernels use the online softmax of FlashAttention (Dao et al., 2022) and recompute score tiles in the backward.

    Args:
        q: [M, d] queries (float32, bfloat16 or float16; float64 for the torch and naive backends).
        p: [N, d] candidates, typically the M positives followed by hard negatives. q and p are promoted to a
            common dtype; under autocast they are cast to the autocast dtype.
        labels: [M] int64 index of each query's positive in ``p``; default ``arange(M)`` (needs N ≥ M).
        temperature: finite τ > 0: a Python or numpy number, or a one-element floating tensor that receives a
            gradient (learnable temperature). A CPU tensor is checked on the host; a CUDA tensor by a device-side
            assert (no host sync), which fails at the next synchronizing call.
        group_ids: optional (``[M]`` query groups, ``[N]`` candidate groups): candidate j leaves query i's
            denominator when both share a group and j ≠ labels[i] (false-negative masking of parallel data).
        symmetric: also the candidate → query direction over each query's positive column, with the same mask
            read by columns (query k leaves column c's denominator when it shares c's group and c is not its own
            positive); the per-query loss is the mean of both directions. Queries sharing a positive each keep
            their own term and stay in each other's column denominator.
        reduction: "mean", "sum" or "none" (the [M] per-query losses).
        backend: "triton" (fused; CUDA, or CPU under TRITON_INTERPRET=1), "torch" (row-chunked PyTorch, the
            CPU path), "naive" (materializes the logits: reference and baseline), "auto" (on CUDA: naive up to
            ``AUTO_NAIVE_MAX_LOGITS`` = 2^25 logits M·N, where launch latency dominates the fused path, triton
            above; torch elsewhere).
        allow_tf32: let the triton backend use TF32 dot products for float32 inputs (faster, ~1e-3 relative).

    Returns:
        The reduced loss (0-dim) or the [M] per-query losses, float32 (float64 for float64 inputs).

    Raises:
        ValueError: shapes, dtypes, devices, labels, groups, temperature, reduction or backend are invalid.

    Example:
        >>> q = torch.nn.functional.normalize(torch.randn(8, 32), dim=-1)
        >>> p = torch.nn.functional.normalize(torch.randn(24, 32), dim=-1)
        >>> loss = contrastive_loss(q, p, temperature=0.05, backend="torch")
    """
    q, p = _check_inputs(q, p)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    m, n = q.shape[0], p.shape[0]
    device = q.device
    if labels is None:
        if n < m:
            raise ValueError(f"labels=None means labels = arange(M), which needs N ≥ M; got M={m}, N={n}")
        labels = torch.arange(m, device=device)
    else:
        # The range check syncs the host with the device; arange(M) with N >= M needs none.
        labels = _check_index("labels", labels, m, device)
        if bool(((labels < 0) | (labels >= n)).any()):
            raise ValueError(f"labels must lie in [0, N) = [0, {n}); got values from {int(labels.min())} to "
                             f"{int(labels.max())}")
    group_q = group_p = None
    if group_ids is not None:
        if not isinstance(group_ids, (tuple, list)) or len(group_ids) != 2:
            raise ValueError("group_ids must be a pair (query groups [M], candidate groups [N])")
        group_q = _check_index("group_ids[0] (query groups)", group_ids[0], m, device)
        group_p = _check_index("group_ids[1] (candidate groups)", group_ids[1], n, device)
    tau = _temperature(temperature, device)
    if torch.is_autocast_enabled(device.type):
        dtype = torch.get_autocast_dtype(device.type)
    else:
        dtype = torch.promote_types(q.dtype, p.dtype)
    q = q.to(dtype).contiguous()
    p = p.to(dtype).contiguous()
    backend = _resolve_backend(backend, q, n)
    problem = Problem(q, p, labels, group_q, group_p, bool(symmetric), bool(allow_tf32))
    with torch.autocast(device.type, enabled=False):
        if backend == "naive":
            losses = contrastive_losses_naive(problem, tau)
        else:
            losses = ContrastiveLossFunction.apply(q, p, tau, problem, backend == "triton")
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses
