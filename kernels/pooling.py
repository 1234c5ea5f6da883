"""Fused masked pooling of token states into one vector per sequence, with optional L2 normalization.

For a sequence b with hidden states h[b, l, :] and valid tokens V_b = {l : mask[b, l] != 0}:

    mean:  p_b = (1 / max(|V_b|, 1)) · Σ_{l ∈ V_b} h[b, l, :]
    cls:   p_b = h[b, 0, :] if 0 ∈ V_b else 0          (the first token: [CLS] / <s>)
    max:   p_b[d] = max_{l ∈ V_b} h[b, l, d]            (0 when V_b is empty)
    normalize:  y_b = p_b / max(‖p_b‖₂, ε),  ε = 1e-12   (as `torch.nn.functional.normalize`)

A row without valid tokens pools to the zero vector (and stays zero after normalization, no NaN).

Gradients, with g = ∂ℒ/∂y_b and n = ‖p_b‖₂:

    normalize:  ∂ℒ/∂p_b = (g − y_b (y_b · g)) / n   if n > ε,   g / ε otherwise
    mean:       ∂ℒ/∂h[b, l, :] = [l ∈ V_b] / max(|V_b|, 1) · ∂ℒ/∂p_b
    cls:        ∂ℒ/∂h[b, l, :] = [l = 0 ∈ V_b] · ∂ℒ/∂p_b
    max:        ∂ℒ/∂h[b, l, d] = [l = a_b[d]] · ∂ℒ/∂p_b[d],  a_b[d] the first (lowest) l ∈ V_b reaching the max

Every masked position gets an exact zero gradient. Ties in max mode go to the first index, as `torch.argmax`.

The padding-free layout (`pool_varlen`) concatenates the sequences into hidden_packed[T, D]; sequence b holds
rows cu_seqlens[b] .. cu_seqlens[b+1] − 1, all of them valid. It pools exactly as the padded layout does.

Triton design (memory-bound: the [B, L, D] states are read once, their gradient written once):
- forward: one program per sequence covering the whole row of D (BLOCK_D = next_power_of_2(D)), looping over
  the tokens in [BLOCK_L, BLOCK_D] tiles with an fp32 accumulator tile, so the L2 norm is taken in the epilogue of
  the same pass. Padded tokens are never loaded. It saves, per row, the fp32 pre-normalization vector (when
  normalizing: B·D·4 bytes), 1/|V_b| (mean) or the validity of token 0 (cls), and the int32 argmax (max).
- backward: a grid of (sequence, chunk of CHUNK_L tokens). Each program rebuilds ∂ℒ/∂p_b from the saved vector
  (a few KB, from L2) and writes its chunk of the gradient, zeros included, so every element is written exactly once.
On CUDA, problems of at least 2**23 elements pick their tile size and warps with `triton.autotune` (keyed on D,
mode, layout and dtypes); smaller ones, launch-bound anyway, use a fixed configuration that needs one compilation.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

MODES = ("mean", "cls", "max")
BACKENDS = ("auto", "triton", "torch", "naive")
EPS = 1e-12
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_TRITON_D = 8192
"""Widest row the Triton kernels hold in one program (the normalization needs the whole row)."""

_MODE_MEAN = tl.constexpr(0)
_MODE_CLS = tl.constexpr(1)
_MODE_MAX = tl.constexpr(2)
_MODE_IDS = {"mean": 0, "cls": 1, "max": 2}

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_AUTOTUNE_MIN_ELEMENTS = 2**23
# The interpreter runs programs one after another: tiles small enough that the test shapes cross tile and
# chunk boundaries. On a GPU: 8K-element tiles (32 values per thread with 8 warps) and 64-token chunks.
_FWD_DEFAULT = {"TILE": 512, "num_warps": 1} if _INTERPRET else {"TILE": 8192, "num_warps": 8}
_BWD_DEFAULT = (
    {"TILE": 512, "CHUNK_L": 8, "num_warps": 1}
    if _INTERPRET
    else {"TILE": 8192, "CHUNK_L": 64, "num_warps": 8}
)
# Values per thread (TILE / (32·num_warps)) between 32 and 64: the fp32 accumulator tile lives in registers.
_FWD_CONFIGS = [
    triton.Config({"TILE": t}, num_warps=w) for t, w in ((4096, 4), (8192, 4), (8192, 8), (16384, 8))
]
_BWD_CONFIGS = [
    triton.Config({"TILE": t, "CHUNK_L": c}, num_warps=w)
    for t in (4096, 8192)
    for c in (32, 128)
    for w in (4, 8)
]
_TUNING_KEY = ["D", "MODE", "NORMALIZE", "VARLEN"]


def _fwd_block_l(args: dict) -> int:
    return max(1, args["TILE"] // args["BLOCK_D"])


def _bwd_block_l(args: dict) -> int:
    return min(args["CHUNK_L"], max(1, args["TILE"] // args["BLOCK_D"]))


@triton.jit
def _pool_fwd_kernel(
    h_ptr,
    mask_ptr,
    cu_ptr,
    order_ptr,
    out_ptr,
    pooled_ptr,
    scale_ptr,
    arg_ptr,
    L,
    D,
    stride_hb,
    stride_hl,
    stride_mb,
    stride_ml,
    MODE: tl.constexpr,
    NORMALIZE: tl.constexpr,
    VARLEN: tl.constexpr,
    EPS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    TILE: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """One sequence per program: pool its valid tokens over [BLOCK_L, BLOCK_D] tiles, then normalize.

    Padding-free batches visit the sequences longest first (``order``): the scheduler hands out programs in
    launch order, so the short ones fill the last wave instead of one long sequence running alone at the end.
    """
    if VARLEN:
        row = tl.load(order_ptr + tl.program_id(0)).to(tl.int64)
    else:
        row = tl.program_id(0).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    offs_l = tl.arange(0, BLOCK_L)
    if VARLEN:
        start = tl.load(cu_ptr + row).to(tl.int64)
        n = tl.load(cu_ptr + row + 1).to(tl.int64) - start
        h_row = h_ptr + start * stride_hl
    else:
        n = L
        h_row = h_ptr + row * stride_hb

    if MODE == _MODE_CLS:
        if VARLEN:
            first_ok = n > 0
        else:
            first_ok = tl.load(mask_ptr + row * stride_mb) != 0
        # A scalar bool in a load mask trips the interpreter: fold it into the bound on d instead.
        d_end = D * first_ok.to(tl.int32)
        pooled = tl.load(h_row + offs_d, mask=offs_d < d_end, other=0.0).to(tl.float32)
        tl.store(scale_ptr + row, first_ok.to(tl.float32))
    else:
        if MODE == _MODE_MEAN:
            acc = tl.zeros([BLOCK_L, BLOCK_D], dtype=tl.float32)
        else:
            acc = tl.full([BLOCK_L, BLOCK_D], float("-inf"), dtype=tl.float32)
            arg = tl.zeros([BLOCK_L, BLOCK_D], dtype=tl.int32)
        count = tl.zeros([BLOCK_L], dtype=tl.float32)
        for l0 in range(0, n, BLOCK_L):
            ls = l0 + offs_l
            if VARLEN:
                ok = ls < n
            else:
                ok = tl.load(mask_ptr + row * stride_mb + ls * stride_ml, mask=ls < n, other=0) != 0
            count += ok.to(tl.float32)
            x = tl.load(
                h_row + ls[:, None] * stride_hl + offs_d[None, :],
                mask=ok[:, None] & d_ok[None, :],
                other=0.0,
            ).to(tl.float32)
            if MODE == _MODE_MEAN:
                acc += x
            else:
                # Strictly greater: within a lane the earlier token keeps a tie.
                better = ok[:, None] & (x > acc)
                acc = tl.where(better, x, acc)
                arg = tl.where(better, ls[:, None].to(tl.int32), arg)
        total = tl.sum(count, axis=0)
        if MODE == _MODE_MEAN:
            inv_count = 1.0 / tl.maximum(total, 1.0)
            pooled = tl.sum(acc, axis=0) * inv_count
            tl.store(scale_ptr + row, inv_count)
        else:
            best = tl.max(acc, axis=0)
            first = tl.min(tl.where(acc == best[None, :], arg, 2147483647), axis=0)
            pooled = tl.where(total > 0, best, 0.0)
            tl.store(arg_ptr + row * D + offs_d, tl.where(total > 0, first, -1), mask=d_ok)

    if NORMALIZE:
        tl.store(pooled_ptr + row * D + offs_d, pooled, mask=d_ok)
        norm = tl.sqrt(tl.sum(pooled * pooled, axis=0))
        pooled = pooled / tl.maximum(norm, EPS)
    tl.store(out_ptr + row * D + offs_d, pooled.to(out_ptr.dtype.element_ty), mask=d_ok)


@triton.jit
def _pool_bwd_kernel(
    grad_out_ptr,
    pooled_ptr,
    scale_ptr,
    arg_ptr,
    mask_ptr,
    cu_ptr,
    grad_h_ptr,
    L,
    D,
    stride_gb,
    stride_mb,
    stride_ml,
    MODE: tl.constexpr,
    NORMALIZE: tl.constexpr,
    VARLEN: tl.constexpr,
    EPS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    TILE: tl.constexpr,
    CHUNK_L: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """Program (b, c): ∂ℒ/∂p_b from the saved row, broadcast to tokens c·CHUNK_L .. (c+1)·CHUNK_L − 1."""
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    offs_l = tl.arange(0, BLOCK_L)

    g = tl.load(grad_out_ptr + row * stride_gb + offs_d, mask=d_ok, other=0.0).to(tl.float32)
    if NORMALIZE:
        p = tl.load(pooled_ptr + row * D + offs_d, mask=d_ok, other=0.0)
        norm = tl.sqrt(tl.sum(p * p, axis=0))
        inv_norm = 1.0 / tl.maximum(norm, EPS)
        y = p * inv_norm
        g = tl.where(norm > EPS, (g - y * tl.sum(y * g, axis=0)) * inv_norm, g * inv_norm)
    if MODE == _MODE_MAX:
        arg = tl.load(arg_ptr + row * D + offs_d, mask=d_ok, other=-1)
    else:
        g = g * tl.load(scale_ptr + row)

    if VARLEN:
        start = tl.load(cu_ptr + row).to(tl.int64)
        n = tl.load(cu_ptr + row + 1).to(tl.int64) - start
        gh_row = grad_h_ptr + start * D
    else:
        n = L
        gh_row = grad_h_ptr + row * L * D
    l_begin = chunk * CHUNK_L
    l_end = tl.minimum(l_begin + CHUNK_L, n)
    for l0 in range(l_begin, l_end, BLOCK_L):
        ls = l0 + offs_l
        in_chunk = ls < l_end
        if MODE == _MODE_MEAN:
            if VARLEN:
                hit = in_chunk[:, None] & d_ok[None, :]
            else:
                ok = tl.load(mask_ptr + row * stride_mb + ls * stride_ml, mask=in_chunk, other=0) != 0
                hit = ok[:, None] & d_ok[None, :]
        elif MODE == _MODE_CLS:
            hit = (ls == 0)[:, None] & d_ok[None, :]
        else:
            hit = ls[:, None] == arg[None, :]
        tl.store(
            gh_row + ls[:, None] * D + offs_d[None, :],
            tl.where(hit, g[None, :], 0.0).to(grad_h_ptr.dtype.element_ty),
            mask=in_chunk[:, None] & d_ok[None, :],
        )


_pool_fwd = triton.heuristics({"BLOCK_L": _fwd_block_l})(_pool_fwd_kernel)
_pool_fwd_tuned = triton.autotune(configs=_FWD_CONFIGS, key=_TUNING_KEY)(_pool_fwd)
_pool_bwd = triton.heuristics({"BLOCK_L": _bwd_block_l})(_pool_bwd_kernel)
_pool_bwd_tuned = triton.autotune(configs=_BWD_CONFIGS, key=_TUNING_KEY)(_pool_bwd)


def _tune(elements: int) -> bool:
    return not _INTERPRET and elements >= _AUTOTUNE_MIN_ELEMENTS


def _on_device(t: torch.Tensor) -> AbstractContextManager:
    """Launch on the tensor's GPU, whichever device is current."""
    return torch.cuda.device(t.device) if t.is_cuda else nullcontext()


class PoolFunction(torch.autograd.Function):
    """Triton masked pooling, padded (`mask` given) or padding-free (`cu_seqlens` given)."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        cu_seqlens: torch.Tensor | None,
        max_seqlen: int,
        mode: str,
        normalize: bool,
        out_dtype: torch.dtype,
        order: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden [B, L, D] with mask [B, L], or [T, D] with cu_seqlens [B + 1] → pooled [B, D].

        ``order`` (varlen only): int32 [B], the sequences in launch order (longest first); default 0..B-1."""
        varlen = cu_seqlens is not None
        if hidden.stride(-1) != 1:
            hidden = hidden.contiguous()
        if varlen:
            batch, d = cu_seqlens.numel() - 1, hidden.shape[1]
            stride_hb, stride_hl, stride_mb, stride_ml = 0, hidden.stride(0), 0, 0
            mask_arg = cu_seqlens
        else:
            batch, length, d = hidden.shape
            max_seqlen = length
            stride_hb, stride_hl = hidden.stride(0), hidden.stride(1)
            mask_arg = mask.view(torch.uint8) if mask.dtype == torch.bool else mask
            stride_mb, stride_ml = mask_arg.stride()
        device = hidden.device
        out = torch.empty(batch, d, device=device, dtype=out_dtype)
        scale = torch.empty(batch, device=device, dtype=torch.float32)
        pooled = torch.empty(batch, d, device=device, dtype=torch.float32) if normalize else scale
        arg = torch.empty(batch, d, device=device, dtype=torch.int32) if mode == "max" else scale
        meta = {
            "MODE": _MODE_IDS[mode],
            "NORMALIZE": normalize,
            "VARLEN": varlen,
            "EPS": EPS,
            "BLOCK_D": triton.next_power_of_2(d),
        }
        if varlen and order is None:
            order = torch.arange(batch, device=device, dtype=torch.int32)
        order_arg = order if varlen else scale
        args = (hidden, mask_arg, cu_seqlens if varlen else scale, order_arg, out, pooled, scale, arg, max_seqlen, d)
        strides = (stride_hb, stride_hl, stride_mb, stride_ml)
        with _on_device(hidden):
            if _tune(hidden.numel()):
                _pool_fwd_tuned[(batch,)](*args, *strides, **meta)
            else:
                _pool_fwd[(batch,)](*args, *strides, **meta, **_FWD_DEFAULT)

        ctx.save_for_backward(pooled, scale, arg, mask_arg, cu_seqlens if varlen else scale)
        ctx.meta = meta
        ctx.varlen = varlen
        ctx.hidden_shape = hidden.shape
        ctx.hidden_dtype = hidden.dtype
        ctx.max_seqlen = max_seqlen
        return out

    @staticmethod
    @once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        """Gradient w.r.t. hidden only; every element of it, masked positions included, is written once."""
        if not ctx.needs_input_grad[0]:
            return (None,) * 8
        pooled, scale, arg, mask_arg, cu = ctx.saved_tensors
        if grad_out.stride(-1) != 1:
            grad_out = grad_out.contiguous()
        grad_hidden = torch.empty(ctx.hidden_shape, device=grad_out.device, dtype=ctx.hidden_dtype)
        batch, d = grad_out.shape
        stride_mb, stride_ml = (0, 0) if ctx.varlen else mask_arg.stride()
        args = (grad_out, pooled, scale, arg, mask_arg, cu, grad_hidden, ctx.max_seqlen, d)
        strides = (grad_out.stride(0), stride_mb, stride_ml)

        def grid(meta: dict) -> tuple[int, int]:
            return (batch, triton.cdiv(ctx.max_seqlen, meta["CHUNK_L"]))

        if ctx.max_seqlen > 0:
            with _on_device(grad_hidden):
                if _tune(grad_hidden.numel()):
                    _pool_bwd_tuned[grid](*args, *strides, **ctx.meta)
                else:
                    _pool_bwd[grid](*args, *strides, **ctx.meta, **_BWD_DEFAULT)
        return (grad_hidden,) + (None,) * 7


def _check_common(
    hidden: torch.Tensor, mode: str, out_dtype: torch.dtype | None, backend: str
) -> torch.dtype:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    # float64 is for references and gradient checks: the torch and naive backends accumulate in it.
    reference = backend in ("torch", "naive") or (backend == "auto" and not hidden.is_cuda)
    allowed = FLOAT_DTYPES + ((torch.float64,) if reference else ())
    if hidden.dtype not in allowed:
        raise ValueError(f"hidden states must be float32, bfloat16 or float16 (or float64 with the torch and naive "
                         f"backends), not {hidden.dtype}")
    if out_dtype is not None and out_dtype not in allowed:
        raise ValueError(f"out_dtype must be float32, bfloat16 or float16, not {out_dtype}")
    if hidden.shape[-1] == 0:
        raise ValueError("hidden size D must be at least 1")
    return hidden.dtype if out_dtype is None else out_dtype


def _resolve_backend(backend: str, hidden: torch.Tensor) -> str:
    d = hidden.shape[-1]
    if backend == "auto":
        return "triton" if hidden.is_cuda and d <= MAX_TRITON_D else "torch"
    if backend == "triton":
        if not (hidden.is_cuda or (_INTERPRET and hidden.device.type == "cpu")):
            raise ValueError(
                f"backend='triton' needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), got {hidden.device}"
            )
        if d > MAX_TRITON_D:
            raise ValueError(f"backend='triton' handles D ≤ {MAX_TRITON_D}, got D = {d}; use backend='torch'")
    return backend


def _normalize_and_cast(pooled: torch.Tensor, normalize: bool, out_dtype: torch.dtype) -> torch.Tensor:
    if normalize:
        pooled = F.normalize(pooled, dim=-1, eps=EPS)
    return pooled.to(out_dtype)


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _pool_torch(
    hidden: torch.Tensor, valid: torch.Tensor, mode: str, normalize: bool, out_dtype: torch.dtype
) -> torch.Tensor:
    """Vectorized PyTorch pooling in fp32 (materializes an fp32 copy of `hidden`): the unfused baseline."""
    with torch.autocast(hidden.device.type, enabled=False):
        x = hidden.to(_accumulation_dtype(hidden.dtype))
        count = valid.sum(dim=1, keepdim=True)
        if mode == "mean":
            pooled = (x * valid.unsqueeze(-1)).sum(dim=1) / count.clamp_min(1)
        elif mode == "cls":
            pooled = x[:, 0] * valid[:, :1]
        else:
            first_max = x.masked_fill(~valid.unsqueeze(-1), float("-inf")).argmax(dim=1, keepdim=True)
            pooled = torch.where(count > 0, x.gather(1, first_max).squeeze(1), 0.0)
        return _normalize_and_cast(pooled, normalize, out_dtype)


def _pool_naive_row(tokens: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool the [n, D] valid tokens of one sequence (n may be 0) in fp32 (float64 stays float64)."""
    x = tokens.to(_accumulation_dtype(tokens.dtype))
    if x.shape[0] == 0:
        return x.sum(dim=0)
    if mode == "mean":
        return x.mean(dim=0)
    if mode == "cls":
        return x[0]
    return x.gather(0, x.argmax(dim=0, keepdim=True)).squeeze(0)


def _pool_naive(
    sequences: list[torch.Tensor], mode: str, normalize: bool, out_dtype: torch.dtype
) -> torch.Tensor:
    """The reference: one sequence of valid tokens at a time."""
    with torch.autocast(sequences[0].device.type, enabled=False):
        pooled = torch.stack([_pool_naive_row(tokens, mode) for tokens in sequences])
        return _normalize_and_cast(pooled, normalize, out_dtype)


def pool(
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    mode: str = "mean",
    normalize: bool = True,
    out_dtype: torch.dtype | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Masked pooling of padded token states, optionally L2-normalized in the same pass (see module docstring).

    Args:
        hidden: [B, L, D] float32 / bfloat16 / float16 token states (B ≥ 1, L ≥ 1).
        attention_mask: [B, L] bool or integer; nonzero marks a valid token. Any padding side works for "mean"
            and "max"; "cls" takes position 0 and gives zeros when it is masked.
        mode: "mean", "cls" or "max" (gradient to the first maximal token on ties).
        normalize: divide by max(‖p‖₂, 1e-12).
        out_dtype: dtype of the result (default: hidden's); accumulation is always fp32.
        backend: "triton" (CUDA, or CPU under TRITON_INTERPRET=1), "torch" (vectorized PyTorch, the CPU path and
            the unfused baseline), "naive" (per-sequence reference), "auto" (triton on CUDA, torch elsewhere).

    Returns:
        [B, D] pooled vectors; rows without valid tokens are zero.

    Example:
        >>> h = torch.randn(2, 5, 8)
        >>> m = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
        >>> pool(h, m, mode="mean").shape
        torch.Size([2, 8])
    """
    out_dtype = _check_common(hidden, mode, out_dtype, backend)
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be [B, L, D], got shape {tuple(hidden.shape)}")
    if attention_mask.dim() != 2 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"attention_mask must be [B, L] = {tuple(hidden.shape[:2])}, got shape {tuple(attention_mask.shape)}"
        )
    if attention_mask.dtype.is_floating_point or attention_mask.dtype.is_complex:
        raise ValueError(f"attention_mask must be bool or integer, not {attention_mask.dtype}")
    if attention_mask.device != hidden.device:
        raise ValueError(f"attention_mask is on {attention_mask.device} but hidden is on {hidden.device}")
    if hidden.shape[0] == 0 or hidden.shape[1] == 0:
        raise ValueError(
            f"hidden must hold at least one sequence and one position, got {tuple(hidden.shape)}"
        )
    backend = _resolve_backend(backend, hidden)
    if backend == "triton":
        return PoolFunction.apply(hidden, attention_mask, None, 0, mode, normalize, out_dtype)
    valid = attention_mask != 0
    if backend == "torch":
        return _pool_torch(hidden, valid, mode, normalize, out_dtype)
    # "cls" looks at position 0 only: the row's tokens are then position 0 if it is valid, else none.
    width = 1 if mode == "cls" else hidden.shape[1]
    rows = [hidden[b, :width][valid[b, :width]] for b in range(hidden.shape[0])]
    return _pool_naive(rows, mode, normalize, out_dtype)


def pool_varlen(
    hidden_packed: torch.Tensor,
    cu_seqlens: torch.Tensor,
    *,
    mode: str = "mean",
    normalize: bool = True,
    out_dtype: torch.dtype | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Masked pooling of a padding-free batch: `pool` of the same sequences, without the padding.

    Args:
        hidden_packed: [T, D] token states of B sequences, concatenated.
        cu_seqlens: [B + 1] int32 (or int64) cumulative lengths: 0, then non-decreasing, last = T. Empty
            sequences are allowed and pool to zeros. It may sit on hidden_packed's device or on the CPU.
            Validation reads it on the host: from the GPU that is a small copy that waits for the queued work;
            a CPU cu_seqlens (as a serving loop builds it) is checked there and sent over without any wait.
        mode, normalize, out_dtype, backend: as in `pool`.

    Returns:
        [B, D] pooled vectors.
    """
    out_dtype = _check_common(hidden_packed, mode, out_dtype, backend)
    if hidden_packed.dim() != 2:
        raise ValueError(f"hidden_packed must be [T, D], got shape {tuple(hidden_packed.shape)}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens must be [B + 1] with B ≥ 1, got shape {tuple(cu_seqlens.shape)}")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"cu_seqlens must be int32 or int64, not {cu_seqlens.dtype}")
    on_host = cu_seqlens.device.type == "cpu" and hidden_packed.is_cuda
    if cu_seqlens.device != hidden_packed.device and not on_host:
        raise ValueError(
            f"cu_seqlens is on {cu_seqlens.device} but hidden_packed is on {hidden_packed.device} "
            "(cu_seqlens may be on the same device, or on the CPU for CUDA states)"
        )
    # Validation and the launch order in numpy on the host: a few µs, where each small torch op costs several.
    bounds = cu_seqlens.to("cpu", torch.int64).numpy()
    lengths = np.diff(bounds)
    total = hidden_packed.shape[0]
    if bounds[0] != 0:
        raise ValueError(f"cu_seqlens must start at 0, got {int(bounds[0])}")
    decreasing = np.flatnonzero(lengths < 0)
    if decreasing.size:
        b = int(decreasing[0])
        raise ValueError(
            f"cu_seqlens must be non-decreasing: cu_seqlens[{b}] = {int(bounds[b])} > "
            f"cu_seqlens[{b + 1}] = {int(bounds[b + 1])}"
        )
    if bounds[-1] != total:
        raise ValueError(f"cu_seqlens must end at T = {total} (rows of hidden_packed), got {int(bounds[-1])}")
    backend = _resolve_backend(backend, hidden_packed)
    max_seqlen = int(lengths.max())
    if backend == "triton":
        # Longest sequences first (see _pool_fwd_kernel), ties in input order.
        order = np.argsort(-lengths, kind="stable")
        if on_host:
            # cu_seqlens and the order in one pinned buffer, sent by one asynchronous copy: no wait for the work
            # queued on the GPU, one copy instead of two.
            index_dtype = np.int32 if total < 2**31 else np.int64
            both = torch.from_numpy(np.concatenate([bounds, order]).astype(index_dtype)).pin_memory()
            both = both.to(hidden_packed.device, non_blocking=True)
            cu_seqlens, order_t = both[: bounds.size], both[bounds.size :]
        else:
            order_t = torch.from_numpy(order.astype(np.int32)).to(hidden_packed.device)
        return PoolFunction.apply(hidden_packed, None, cu_seqlens, max_seqlen, mode, normalize, out_dtype, order_t)
    lengths_t = torch.from_numpy(lengths)
    if backend == "torch":
        batch = lengths_t.numel()
        positions = torch.arange(max(max_seqlen, 1), device=hidden_packed.device)
        valid = positions < lengths_t.to(hidden_packed.device).unsqueeze(1)
        padded = hidden_packed.new_zeros(batch, positions.numel(), hidden_packed.shape[1])
        padded = padded.index_put((valid,), hidden_packed)
        return _pool_torch(padded, valid, mode, normalize, out_dtype)
    return _pool_naive(list(hidden_packed.split(lengths.tolist())), mode, normalize, out_dtype)
