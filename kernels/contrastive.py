"""Fused InfoNCE contrastive loss: Triton kernels, a chunked PyTorch path and the autograd Function.

For queries ``q`` [M, d], candidates ``p`` [N, d], scores ``s_ij = q_i · p_j``, temperature τ and the positive
column ``l_i`` of each query, the InfoNCE loss (van den Oord et al., 2018, arXiv 1807.03748) is

    loss_i = -s(i, l_i)/τ + log Σ_{j kept} exp(s(i, j)/τ),

where candidate j is *kept* for query i unless both carry the same group id and j ≠ l_i (false-negative masking).
The symmetric (candidate → query) direction uses the same kept-mask read by columns: for the positive column
``c = l_i`` of query i

    loss'_i = -s(i, c)/τ + log Σ_{k kept for column c} exp(s(k, c)/τ),

where query k is kept for column c unless it shares c's group and c is not its own positive. When several queries
share one positive column they all stay in that column's denominator and each contributes its own term, as a
multi-positive softmax counted per query. The symmetric per-query loss is ``(loss_i + loss'_i) / 2``.

Forward (the FlashAttention online softmax, Dao et al., 2022, arXiv 2205.14135): a grid over row blocks × column
splits computes score tiles ``tl.dot(q_tile, p_tileᵀ)`` over K-chunks of d in fp32, then keeps a running maximum
``m`` and sum ``l`` of ``exp2(s·log2(e)/τ - m)`` per row, so nothing of size M×N is stored. Each program writes
its split's (m, l) (and with groups the positive's score); one epilogue kernel merges the splits into the row
log-sum-exp (base 2), computes the positive's score and the per-query loss. For ``symmetric=True`` the same tiles
also give partial column (max, sum) pairs, one slot per 128 query rows, into a [ceil(M/128), N] fp32 buffer that
one more small kernel merges into the column log-sum-exp: no second pass over the scores.

Backward: with upstream gradient g_i of loss_i, ``dS_ij = ∂L/∂s_ij = (g_i/τ)·(P_ij - 1[j = l_i])``
(plus, when symmetric, ``(w_j/τ)·Pᶜ_ij - (g'_i/τ)·1[j = l_i]`` with ``w_j = Σ_{i: l_i = j} g'_i`` and the column
softmax Pᶜ). For row chunks that fit a bounded buffer, a Triton kernel recomputes the score tiles and writes dS in
the input dtype (tensor-core friendly; the row factors g_i/τ come from g and τ inside the kernel), then two
cuBLAS matmuls form ``dQ[chunk] = dS·P`` and ``dP += dSᵀ·Q[chunk]`` with fp32 accumulation. FLOPs: 2·M·N·d
forward + 6·M·N·d backward = 8·M·N·d. One forward + backward is five launches (score pass, epilogue, dS, two
matmuls; symmetric adds the column merge and the column factors). The temperature gradient needs no extra pass: logits are s/τ, so
``∂L/∂τ = -(1/τ)·Σ_ij dS_ij·s_ij = -(1/τ)·Σ_i q_i·dQ_i``.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

LOG2E = math.log2(math.e)
LN2 = math.log(2.0)
_LOG2E: tl.constexpr = tl.constexpr(LOG2E)
_LN2: tl.constexpr = tl.constexpr(LN2)
# Finite stand-in for -inf as the start of a running maximum: exp2(-inf - NEG_BIG) is 0, never NaN.
NEG_BIG = -1.0e30

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
# HYBRIDFAST_AUTOTUNE=0 pins one config on the GPU (tests: many shapes, few compiles).
AUTOTUNE = os.environ.get("HYBRIDFAST_AUTOTUNE", "1") != "0" and not INTERPRET

# Bytes of the backward's dS row-chunk buffer (and of the torch path's score chunk): the memory bound.
BUFFER_BYTES = 256 * 1024**2
# HYBRIDFAST_WIDE_TILES=0 drops the 128×256 score-tile config from the autotuned set (the first GPU run's set).
WIDE_TILES = os.environ.get("HYBRIDFAST_WIDE_TILES", "1") != "0"
# How the backward accumulates dP += dSᵀ·Q[chunk] over several row chunks: "cublas" (torch.addmm into the fp32
# accumulator with out_dtype, CUDA only; the default: 619 TFLOP/s against the Triton kernel's 162 on an H200, which
# took d=768, 65,536² from 81.2 to 55.5 ms) or "triton" (in-place fp32 accumulate kernel; also the fallback where
# torch's addmm lacks out_dtype). A single row chunk always takes one cuBLAS matmul straight into dP.
DP_ACCUMULATE = os.environ.get("HYBRIDFAST_DP_ACCUMULATE", "cublas")
# Row alignment of the backward's row chunks and of the column splits; the kernels' own row block (BLOCK_M) is a
# tuned meta-parameter: 128, or 256 over four warpgroups.
ROW_ALIGN = 16 if INTERPRET else 128
SPLIT_ALIGN = ROW_ALIGN


def _config(block_m: int, block_n: int, block_k: int, warps: int, stages: int, maxnreg: int | None = None):
    return triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k}, num_warps=warps,
                         num_stages=stages, maxnreg=maxnreg)


def _configs(kernel: str) -> list[triton.Config]:
    """Score-tile configs of the forward ("forward") or the dS kernel ("grad").

    Register and spill counts below are from local sm_90 compiles (triton 3.9, 16-byte divisibility hints, bf16,
    d = 768); the autotuner times every config on the device and keeps the fastest per key.
    """
    if not AUTOTUNE:
        if INTERPRET:
            return [_config(16, 16, 16, 4, 1)]
        return [_config(128, 128, 32, 8, 3)]
    configs = [
        _config(128, 128, 64, 8, 3),
        _config(128, 128, 64, 8, 4),
        _config(128, 64, 64, 4, 4),
        _config(128, 128, 32, 8, 4),
        # 256 query rows over four warpgroups (64 accumulator registers per thread): each streamed q and p byte
        # feeds 85 FLOP instead of 64 at 128×128, for the forward and dS kernels that run from L2 at ~340-380
        # TFLOP/s. Forward 122 registers, dS 128, no spills (symmetric forward: 224 B of stack).
        _config(256, 128, 64, 16, 3),
    ]
    if kernel == "forward":
        # Capped at 128 registers (124 used, no spills, 96 KiB shared memory): two blocks per SM, so one block's
        # exp2/online-softmax epilogue overlaps the other's MMAs. Uncapped it takes 135 and runs one block per SM.
        configs.append(_config(128, 128, 64, 8, 3, maxnreg=128))
    if kernel == "grad" and WIDE_TILES:
        # 128×256 on two warpgroups: 255 registers, no spills, 144 KiB shared memory in the dS kernel (the forward's
        # softmax state makes it spill there).
        configs.append(_config(128, 256, 64, 8, 3))
    return configs


def _is_first_run_config(config: triton.Config) -> bool:
    """The configs every GPU run so far compiled (128-row, at most 128-column tiles, no register cap)."""
    return config.kwargs["BLOCK_M"] == 128 and config.kwargs["BLOCK_N"] <= 128 and not config.maxnreg


def _launch_falling_back(kernel, launch) -> None:
    """Launch; if a config newer than the first GPU runs fails to compile in a way the autotuner does not skip,
    drop the new configs (with a RuntimeWarning) and tune again among the proven ones."""
    try:
        launch()
    except torch.OutOfMemoryError:
        raise
    except Exception as err:
        configs = getattr(kernel, "configs", None) or []
        proven = [c for c in configs if _is_first_run_config(c)]
        if not proven or len(proven) == len(configs):
            raise
        warnings.warn(f"contrastive kernel: dropping the configs {[str(c) for c in configs if c not in proven]} "
                      f"after {type(err).__name__}: {err}", RuntimeWarning, stacklevel=3)
        kernel.configs = proven
        getattr(kernel, "cache", {}).clear()
        launch()


_HEURISTICS = {"EVEN_K": lambda args: args["D"] % args["BLOCK_K"] == 0}


@triton.jit
def _score_tile(
    q_ptr, p_ptr, rows, cols, row_ok, col_ok, D, stride_q, stride_p,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr, INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """s[BLOCK_M, BLOCK_N] = q[rows] · p[cols]ᵀ in fp32, over K-chunks of d (tail masked).

    UPCAST converts the tiles to fp32 before the dot: the interpreter (triton 3.9) computes bf16 ``tl.dot``
    wrongly, and a bf16 product is exact in fp32, so the result is the tensor-core result.
    """
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    ks = tl.arange(0, BLOCK_K)
    q_rows = q_ptr + rows.to(tl.int64)[:, None] * stride_q
    p_rows = p_ptr + cols.to(tl.int64)[:, None] * stride_p
    for k0 in range(0, D, BLOCK_K):
        kk = k0 + ks
        if EVEN_K:
            a = tl.load(q_rows + kk[None, :], mask=row_ok[:, None], other=0.0)
            b = tl.load(p_rows + kk[None, :], mask=col_ok[:, None], other=0.0)
        else:
            k_ok = kk < D
            a = tl.load(q_rows + kk[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(p_rows + kk[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, tl.trans(b), acc, input_precision=INPUT_PRECISION)
    return acc


@triton.autotune(configs=_configs("forward"), key=["D", "HAS_GROUPS", "SYMMETRIC", "INPUT_PRECISION"])
@triton.heuristics(_HEURISTICS)
@triton.jit(do_not_specialize=["M", "N", "cols_per_split"])
def _forward_kernel(
    q_ptr, p_ptr, labels_ptr, gq_ptr, gp_ptr, tau_ptr,
    m_part_ptr, l_part_ptr, pos_part_ptr, col_m_ptr, col_l_ptr,
    M, N, D, stride_q, stride_p, cols_per_split,
    HAS_GROUPS: tl.constexpr, SYMMETRIC: tl.constexpr, INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    STATS_ROWS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr,
):
    """Per (row block, column split): online base-2 softmax statistics, and with groups the positive's score.

    Rows past M load zeros and their statistics are never stored, so only the symmetric column statistics mask
    them. Without groups the positive's score comes from ``_positive_scores_kernel``: no per-element label
    compare here (``_finish_rows_kernel`` computes it), which with the row mask took the 128×128 tile from 232 to
    135 registers.

    Symmetric column statistics have one slot per STATS_ROWS query rows, whatever BLOCK_M is: a block of
    BLOCK_M = k·STATS_ROWS rows writes its (max, sum) into its first slot and the neutral (NEG_BIG, 0) into the
    other k − 1. Every slot is written by every config, so the kernel's outputs depend on its inputs only.
    That matters because the autotuner runs every config on the live buffers before the winner's launch: with
    slots written only by the blocks that exist, a 256-row winner left the 128-row config's statistics in the
    slots it does not own, counted twice on the first call of each tuning key. Restoring the buffers instead
    (``restore_value``) would clone 2·⌈M/128⌉·N fp32 (256 MiB at 65,536²) inside every timed tuning call, and
    the host would still pre-fill them on every call. Writing every slot costs the 256-row config ⌈M/128⌉·N·4
    more bytes of stores (134 MB at 65,536², ~0.04 ms of HBM time against a ~17 ms forward) and removes the
    host's two fill launches (268 MB written at 65,536²)."""
    tl.static_assert(BLOCK_M % STATS_ROWS == 0)
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < M
    if HAS_GROUPS:
        labels = tl.load(labels_ptr + rows, mask=row_ok, other=-1)
        gq = tl.load(gq_ptr + rows, mask=row_ok, other=0)
    scale2 = _LOG2E / tl.load(tau_ptr)  # log2(e)/τ
    m_i = tl.full((BLOCK_M,), -1.0e30, dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    pos = tl.zeros((BLOCK_M,), dtype=tl.float32)
    n_lo = pid_s * cols_per_split
    n_hi = tl.minimum(n_lo + cols_per_split, N)
    for n0 in range(n_lo, n_hi, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < n_hi
        s = _score_tile(q_ptr, p_ptr, rows, cols, row_ok, col_ok, D, stride_q, stride_p,
                        BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, INPUT_PRECISION, UPCAST)
        # col_ok too: a column past this split's end may be a row's positive (counted by the next split).
        kept = col_ok[None, :]
        if SYMMETRIC:
            kept = kept & row_ok[:, None]
        if HAS_GROUPS:
            is_pos = (cols[None, :] == labels[:, None]) & col_ok[None, :]
            pos += tl.sum(tl.where(is_pos, s, 0.0), axis=1)
            gp = tl.load(gp_ptr + cols, mask=col_ok, other=0)
            kept = kept & ((gq[:, None] != gp[None, :]) | is_pos)
        z = tl.where(kept, s * scale2, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(z, axis=1))
        l_i = l_i * tl.exp2(m_i - m_new) + tl.sum(tl.exp2(z - m_new[:, None]), axis=1)
        m_i = m_new
        if SYMMETRIC:
            cm = tl.maximum(tl.max(z, axis=0), -1.0e30)
            cl = tl.sum(tl.exp2(z - cm[None, :]), axis=0)
            slot = pid_m * (BLOCK_M // STATS_ROWS)
            col_off = slot.to(tl.int64) * N + cols
            tl.store(col_m_ptr + col_off, cm, mask=col_ok)
            tl.store(col_l_ptr + col_off, cl, mask=col_ok)
            for extra in tl.static_range(1, BLOCK_M // STATS_ROWS):
                # A scalar bool in a store mask trips the interpreter: fold the slot bound into the column bound.
                neutral_ok = cols < n_hi * (slot + extra < tl.cdiv(M, STATS_ROWS)).to(tl.int32)
                tl.store(col_m_ptr + col_off + extra * N, tl.full((BLOCK_N,), -1.0e30, tl.float32), mask=neutral_ok)
                tl.store(col_l_ptr + col_off + extra * N, tl.zeros((BLOCK_N,), tl.float32), mask=neutral_ok)
    part = pid_s.to(tl.int64) * M + rows
    tl.store(m_part_ptr + part, m_i, mask=row_ok)
    tl.store(l_part_ptr + part, l_i, mask=row_ok)
    if HAS_GROUPS:
        tl.store(pos_part_ptr + part, pos, mask=row_ok)


@triton.jit
def _merge_lse2(m_ptrs, l_ptrs, ok, count, stride, BLOCK: tl.constexpr):
    """Base-2 log-sum-exp from ``count`` partial (max, sum) pairs ``stride`` elements apart: each pair is rescaled to
    the running maximum, ``l ← l·2^(m − m') + l_k·2^(m_k − m')`` with ``m' = max(m, m_k)``. The pointers advance by
    ``stride`` per pair (64-bit pointer arithmetic, no int32 product)."""
    top = tl.full((BLOCK,), -1.0e30, dtype=tl.float32)
    total = tl.zeros((BLOCK,), dtype=tl.float32)
    for _ in range(0, count):
        m = tl.load(m_ptrs, mask=ok, other=-1.0e30)
        l_ = tl.load(l_ptrs, mask=ok, other=1.0)
        new = tl.maximum(top, m)
        total = total * tl.exp2(top - new) + l_ * tl.exp2(m - new)
        top = new
        m_ptrs += stride
        l_ptrs += stride
    return top + tl.log2(total)


@triton.jit
def _merge_columns_kernel(col_m_ptr, col_l_ptr, col_lse2_ptr, N, SLOTS, BLOCK_C: tl.constexpr):
    """Symmetric: the column log-sum-exp (base 2) [N] from the per-slot partial (max, sum) pairs [SLOTS, N]."""
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < N
    lse2 = _merge_lse2(col_m_ptr + cols, col_l_ptr + cols, col_ok, SLOTS, N, BLOCK_C)
    tl.store(col_lse2_ptr + cols, lse2, mask=col_ok)


@triton.jit
def _finish_rows_kernel(
    q_ptr, p_ptr, labels_ptr, tau_ptr, m_part_ptr, l_part_ptr, pos_part_ptr, col_lse2_ptr, lse2_ptr, loss_ptr,
    M, D, SPLITS, stride_q, stride_p,
    HAS_GROUPS: tl.constexpr, SYMMETRIC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """For a block of rows, the forward's epilogue in one launch: the row log-sum-exp (base 2) merged over the
    column splits, the positive's score s(i, l_i) (the splits' sums with groups, else q_i · p_{l_i} in fp32,
    O(M·d)) and the per-query loss ``ln 2 · (lse2_i − s(i, l_i)·log2(e)/τ)``, averaged with the column
    direction's when symmetric."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < M
    lse2 = _merge_lse2(m_part_ptr + rows, l_part_ptr + rows, row_ok, SPLITS, M, BLOCK_R)
    pos = tl.zeros((BLOCK_R,), dtype=tl.float32)
    labels = tl.load(labels_ptr + rows, mask=row_ok, other=0)
    if HAS_GROUPS:
        pos_ptrs = pos_part_ptr + rows
        for _ in range(0, SPLITS):
            pos += tl.load(pos_ptrs, mask=row_ok, other=0.0)
            pos_ptrs += M
    else:
        q_rows = q_ptr + rows.to(tl.int64)[:, None] * stride_q
        p_rows = p_ptr + labels.to(tl.int64)[:, None] * stride_p
        for k0 in range(0, D, BLOCK_K):
            kk = k0 + tl.arange(0, BLOCK_K)
            ok = row_ok[:, None] & (kk < D)[None, :]
            a = tl.load(q_rows + kk[None, :], mask=ok, other=0.0).to(tl.float32)
            b = tl.load(p_rows + kk[None, :], mask=ok, other=0.0).to(tl.float32)
            pos += tl.sum(a * b, axis=1)
    pos2 = pos * (_LOG2E / tl.load(tau_ptr))
    loss = (lse2 - pos2) * _LN2
    if SYMMETRIC:
        col_lse2 = tl.load(col_lse2_ptr + labels, mask=row_ok, other=0.0)
        loss = 0.5 * (loss + (col_lse2 - pos2) * _LN2)
    tl.store(lse2_ptr + rows, lse2, mask=row_ok)
    tl.store(loss_ptr + rows, loss, mask=row_ok)


@triton.autotune(configs=_configs("grad"), key=["D", "HAS_GROUPS", "SYMMETRIC", "INPUT_PRECISION"])
@triton.heuristics(_HEURISTICS)
@triton.jit(do_not_specialize=["row0", "R", "N"])
def _grad_scores_kernel(
    q_ptr, p_ptr, labels_ptr, gq_ptr, gp_ptr, tau_ptr,
    lse2_ptr, grad_ptr, g_col_ptr, col_lse2_ptr, ds_scale_ptr, ds_ptr,
    row0, R, N, D, stride_q, stride_p,
    HAS_GROUPS: tl.constexpr, SYMMETRIC: tl.constexpr, HAS_DS_SCALE: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr,
):
    """One tile of σ·dS for rows [row0, row0 + R): recompute s, then the softmax gradient (σ: power of 2).

    The row factors come from the upstream gradient g and τ here (g_row = g/τ, halved when symmetric, and the
    positive's −g/τ): no host-side launches for them. The column factors of the symmetric direction (a scatter
    over the labels) and fp16's σ (a global maximum) come in as tensors."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    local = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = local < R
    rows = row0 + local
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    s = _score_tile(q_ptr, p_ptr, rows, cols, row_ok, col_ok, D, stride_q, stride_p,
                    BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, INPUT_PRECISION, UPCAST)
    tau = tl.load(tau_ptr)
    scale2 = _LOG2E / tau  # log2(e)/τ, as in the forward
    labels = tl.load(labels_ptr + rows, mask=row_ok, other=-1)
    lse2 = tl.load(lse2_ptr + rows, mask=row_ok, other=0.0)
    g = tl.load(grad_ptr + rows, mask=row_ok, other=0.0)
    if SYMMETRIC:
        g_row = (0.5 * g) * (1.0 / tau)
        g_diag = -2.0 * g_row
    else:
        g_row = g * (1.0 / tau)
        g_diag = -g_row
    is_pos = cols[None, :] == labels[:, None]
    kept = row_ok[:, None] & col_ok[None, :]
    if HAS_GROUPS:
        gq = tl.load(gq_ptr + rows, mask=row_ok, other=0)
        gp = tl.load(gp_ptr + cols, mask=col_ok, other=0)
        kept = kept & ((gq[:, None] != gp[None, :]) | is_pos)
    z = tl.where(kept, s * scale2, float("-inf"))
    ds = g_row[:, None] * tl.exp2(z - lse2[:, None])
    if SYMMETRIC:
        g_col = tl.load(g_col_ptr + cols, mask=col_ok, other=0.0)
        col_lse2 = tl.load(col_lse2_ptr + cols, mask=col_ok, other=float("inf"))
        ds += g_col[None, :] * tl.exp2(z - col_lse2[None, :])
    ds += tl.where(is_pos, g_diag[:, None], 0.0)
    if HAS_DS_SCALE:
        ds = ds * tl.load(ds_scale_ptr)
    out = ds_ptr + local.to(tl.int64)[:, None] * N + cols[None, :]
    tl.store(out, ds.to(ds_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


class StageTimer:
    """CUDA-event timings of the fused path's stages, summed over row chunks (``hybridfast bench kernels
    --breakdown``). Events are recorded on the current stream between stages; nothing synchronizes until
    ``totals()``."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []
        self._last: torch.cuda.Event | None = None

    def start(self) -> None:
        self._last = self._event()

    def lap(self, stage: str) -> None:
        """Close the span that began at the previous start/lap under ``stage`` and open the next one."""
        end = self._event()
        if self._last is not None:
            self.spans.append((stage, self._last, end))
        self._last = end

    @staticmethod
    def _event() -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def totals(self) -> dict[str, float]:
        """Milliseconds per stage (summed over its spans), after waiting for the recorded work."""
        torch.cuda.synchronize()
        out: dict[str, float] = {}
        for stage, begin, end in self.spans:
            out[stage] = out.get(stage, 0.0) + begin.elapsed_time(end)
        return out


_STAGE_TIMER: StageTimer | None = None


class stage_timing:  # noqa: N801 - a context manager used like a function
    """``with stage_timing() as timer: ...`` records the stages of every CUDA call of the fused path inside."""

    def __enter__(self) -> StageTimer:
        global _STAGE_TIMER
        self._previous = _STAGE_TIMER
        _STAGE_TIMER = StageTimer()
        return _STAGE_TIMER

    def __exit__(self, *exc: object) -> None:
        global _STAGE_TIMER
        _STAGE_TIMER = self._previous


def _timer(t: torch.Tensor) -> StageTimer | None:
    return _STAGE_TIMER if t.is_cuda else None


@dataclass
class Problem:
    """One validated loss problem: contiguous inputs, int64 labels, optional groups, a 0-dim τ."""

    q: torch.Tensor
    p: torch.Tensor
    labels: torch.Tensor
    group_q: torch.Tensor | None
    group_p: torch.Tensor | None
    symmetric: bool
    allow_tf32: bool

    @property
    def stats_dtype(self) -> torch.dtype:
        return torch.float64 if self.q.dtype == torch.float64 else torch.float32


@dataclass
class Stats:
    """What the forward keeps for the backward: base-2 log-sum-exps (rows [M]; columns [N] if symmetric)."""

    lse2: torch.Tensor
    col_lse2: torch.Tensor | None


def _kept(problem: Problem, r0: int, r1: int) -> torch.Tensor | None:
    """Kept-mask [r1 - r0, N] of the rows' denominators, or None when nothing is masked."""
    if problem.group_q is None:
        return None
    n = problem.p.shape[0]
    same = problem.group_q[r0:r1, None] == problem.group_p[None, :]
    is_pos = torch.arange(n, device=problem.p.device)[None, :] == problem.labels[r0:r1, None]
    return ~same | is_pos


def _mm_accumulating(a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """a @ b with the output in ``out_dtype`` and accumulation at least that precise."""
    if a.dtype == out_dtype:
        return a @ b
    if a.is_cuda:
        return torch.mm(a, b, out_dtype=out_dtype)
    return a.to(out_dtype) @ b.to(out_dtype)


def _addmm_torch(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc += a @ b in acc's (wider) dtype, with PyTorch ops."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
    else:
        acc.add_(_mm_accumulating(a, b, acc.dtype))


def _accumulate_configs() -> list[triton.Config]:
    if not AUTOTUNE:
        if INTERPRET:
            return [triton.Config({"BLOCK_N": 16, "BLOCK_D": 16, "BLOCK_R": 16}, num_warps=4, num_stages=1)]
        return [triton.Config({"BLOCK_N": 128, "BLOCK_D": 128, "BLOCK_R": 32}, num_warps=8, num_stages=3)]
    return [
        triton.Config({"BLOCK_N": 128, "BLOCK_D": 128, "BLOCK_R": 64}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_N": 128, "BLOCK_D": 128, "BLOCK_R": 64}, num_warps=8, num_stages=4),
        triton.Config({"BLOCK_N": 128, "BLOCK_D": 64, "BLOCK_R": 64}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_N": 64, "BLOCK_D": 128, "BLOCK_R": 64}, num_warps=4, num_stages=4),
    ]


@triton.autotune(configs=_accumulate_configs(), key=["D", "INPUT_PRECISION"], restore_value=["acc_ptr"])
@triton.jit(do_not_specialize=["R", "N"])
def _accumulate_grad_p_kernel(
    ds_ptr, q_ptr, acc_ptr, R, N, D, stride_q,
    INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """acc[N, D] (fp32) += dS[R, N]ᵀ · q[R, D]: the dP update of one row chunk, accumulated in place in fp32."""
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    dims = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    col_ok = cols < N
    dim_ok = dims < D
    out = acc_ptr + cols.to(tl.int64)[:, None] * D + dims[None, :]
    out_ok = col_ok[:, None] & dim_ok[None, :]
    acc = tl.load(out, mask=out_ok, other=0.0)
    rs = tl.arange(0, BLOCK_R)
    for r0 in range(0, R, BLOCK_R):
        r = r0 + rs
        r_ok = r < R
        a = tl.load(ds_ptr + r.to(tl.int64)[:, None] * N + cols[None, :], mask=r_ok[:, None] & col_ok[None, :],
                    other=0.0)
        b = tl.load(q_ptr + r.to(tl.int64)[:, None] * stride_q + dims[None, :],
                    mask=r_ok[:, None] & dim_ok[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(tl.trans(a), b, acc, input_precision=INPUT_PRECISION)
    tl.store(out, acc, mask=out_ok)


def _addmm_triton(acc: torch.Tensor, ds: torch.Tensor, q_chunk: torch.Tensor, problem: Problem) -> None:
    """acc += dsᵀ @ q_chunk with the fused in-place fp32 accumulation kernel."""
    r, n = ds.shape
    d = q_chunk.shape[1]

    def grid(meta: dict) -> tuple[int, int]:
        return triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(d, meta["BLOCK_D"])

    _accumulate_grad_p_kernel[grid](
        ds, q_chunk, acc, r, n, d, q_chunk.stride(0),
        INPUT_PRECISION=_input_precision(problem), UPCAST=_upcast(problem),
    )


def _chunk_rows(m: int, n: int, bytes_per_elem: int, multiple: int) -> int:
    rows = max(1, BUFFER_BYTES // (n * bytes_per_elem))
    if rows >= m:
        return m
    return max(multiple, rows // multiple * multiple)


def forward_torch(problem: Problem, tau: torch.Tensor) -> tuple[torch.Tensor, Stats]:
    """Chunked PyTorch forward: the per-query losses [M] and the LSE state, as ``forward_triton``. Holds one
    [rows, N] chunk."""
    q, p = problem.q, problem.p
    m, n = q.shape[0], p.shape[0]
    sd = problem.stats_dtype
    scale2 = LOG2E / tau.to(sd)
    lse2 = torch.empty(m, dtype=sd, device=q.device)
    pos = torch.empty(m, dtype=sd, device=q.device)
    col_m = torch.full((n,), NEG_BIG, dtype=sd, device=q.device) if problem.symmetric else None
    col_l = torch.zeros(n, dtype=sd, device=q.device) if problem.symmetric else None
    rows = _chunk_rows(m, n, torch.finfo(sd).bits // 8, 1)
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        s = _mm_accumulating(q[r0:r1], p.t(), sd)
        pos[r0:r1] = s.gather(1, problem.labels[r0:r1, None]).squeeze(1)
        z = s * scale2
        kept = _kept(problem, r0, r1)
        if kept is not None:
            z = z.masked_fill(~kept, float("-inf"))
        top = z.amax(dim=1, keepdim=True)
        lse2[r0:r1] = (top + torch.log2(torch.exp2(z - top).sum(dim=1, keepdim=True))).squeeze(1)
        if col_m is not None and col_l is not None:
            cm = z.amax(dim=0).clamp_min(NEG_BIG)
            cl = torch.exp2(z - cm).sum(dim=0)
            top = torch.maximum(col_m, cm)
            col_l = col_l * torch.exp2(col_m - top) + cl * torch.exp2(cm - top)
            col_m = top
    col_lse2 = col_m + torch.log2(col_l) if col_m is not None and col_l is not None else None
    pos2 = pos * scale2
    losses = (lse2 - pos2) * LN2
    if col_lse2 is not None:
        losses = 0.5 * (losses + (col_lse2[problem.labels] - pos2) * LN2)
    return losses, Stats(lse2, col_lse2)


def _upcast(problem: Problem) -> bool:
    return INTERPRET and problem.q.dtype == torch.bfloat16


def _input_precision(problem: Problem) -> str:
    if problem.q.dtype == torch.float32 and not problem.allow_tf32:
        return "ieee"
    if INTERPRET and problem.q.dtype == torch.bfloat16:
        return "ieee"
    return "tf32"


def _num_splits(problem: Problem, row_blocks: int) -> tuple[int, int]:
    """Column splits so that row blocks × splits fill the device: (splits, columns per split)."""
    n = problem.p.shape[0]
    if problem.q.is_cuda:
        units = 2 * torch.cuda.get_device_properties(problem.q.device).multi_processor_count
    else:
        units = 4
    splits = max(1, min(triton.cdiv(units, row_blocks), triton.cdiv(n, SPLIT_ALIGN)))
    per_split = triton.cdiv(triton.cdiv(n, splits), SPLIT_ALIGN) * SPLIT_ALIGN
    return triton.cdiv(n, per_split), per_split


def _group_args(problem: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    if problem.group_q is None or problem.group_p is None:
        return problem.labels, problem.labels
    return problem.group_q, problem.group_p


def forward_triton(problem: Problem, tau: torch.Tensor) -> tuple[torch.Tensor, Stats]:
    """Fused forward (see the module docstring): the per-query losses [M] and the LSE state, in two launches (three
    when symmetric): the score pass and the epilogue that merges splits and forms the losses."""
    q, p = problem.q, problem.p
    m, n = q.shape[0], p.shape[0]
    dev = q.device
    grouped = problem.group_q is not None
    splits, per_split = _num_splits(problem, triton.cdiv(m, ROW_ALIGN))
    m_part = torch.empty(splits, m, dtype=torch.float32, device=dev)
    l_part = torch.empty_like(m_part)
    pos_part = torch.empty_like(m_part) if grouped else m_part
    if problem.symmetric:
        # One slot of column statistics per ROW_ALIGN query rows, each written by the kernel whatever its row
        # block (see _forward_kernel): no fill here.
        col_m = torch.empty((triton.cdiv(m, ROW_ALIGN), n), dtype=torch.float32, device=dev)
        col_l = torch.empty_like(col_m)
    else:
        col_m = col_l = m_part
    gq, gp = _group_args(problem)

    def grid(meta: dict) -> tuple[int, int]:
        return triton.cdiv(m, meta["BLOCK_M"]), splits

    def launch() -> None:
        _forward_kernel[grid](
            q, p, problem.labels, gq, gp, tau,
            m_part, l_part, pos_part, col_m, col_l,
            m, n, q.shape[1], q.stride(0), p.stride(0), per_split,
            HAS_GROUPS=grouped, SYMMETRIC=problem.symmetric,
            INPUT_PRECISION=_input_precision(problem), UPCAST=_upcast(problem), STATS_ROWS=ROW_ALIGN,
        )

    _launch_falling_back(_forward_kernel, launch)
    col_lse2 = None
    if problem.symmetric:
        col_lse2 = torch.empty(n, dtype=torch.float32, device=dev)
        block_c = 16 if INTERPRET else 256
        _merge_columns_kernel[(triton.cdiv(n, block_c),)](col_m, col_l, col_lse2, n, col_m.shape[0], BLOCK_C=block_c)
    lse2 = torch.empty(m, dtype=torch.float32, device=dev)
    losses = torch.empty(m, dtype=torch.float32, device=dev)
    block_r = 16 if INTERPRET else 32
    _finish_rows_kernel[(triton.cdiv(m, block_r),)](
        q, p, problem.labels, tau, m_part, l_part, pos_part, col_lse2 if col_lse2 is not None else lse2, lse2,
        losses, m, q.shape[1], splits, q.stride(0), p.stride(0),
        HAS_GROUPS=grouped, SYMMETRIC=problem.symmetric, BLOCK_R=block_r, BLOCK_K=16 if INTERPRET else 128,
    )
    return losses, Stats(lse2, col_lse2)


@dataclass
class GradCoefficients:
    """Factors of σ·dS (σ = ds_scale, a power of two that keeps fp16 dS in range; None means σ = 1).

    The row factors (g_row, and g_diag at the positive) are None where the Triton dS kernel computes them from
    the upstream gradient and τ itself."""

    g_row: torch.Tensor | None
    g_diag: torch.Tensor | None
    g_col: torch.Tensor | None
    col_lse2: torch.Tensor | None
    ds_scale: torch.Tensor | None


def _grad_coefficients(
    problem: Problem, stats: Stats, grad: torch.Tensor, tau: torch.Tensor, rows_in_kernel: bool
) -> GradCoefficients:
    """The factors the dS pass reads. With ``rows_in_kernel`` (the Triton dS kernel) the row factors are left to the
    kernel and formed here only where fp16's σ needs their maximum."""
    sd = problem.stats_dtype
    g = grad.to(sd)
    g_col = col_lse2 = None
    if problem.symmetric and stats.col_lse2 is not None:
        g_col = torch.zeros(problem.p.shape[0], dtype=sd, device=g.device)
        g_col.index_add_(0, problem.labels, g)
        g_col = g_col * (0.5 / tau.to(sd))
        col_lse2 = torch.where(g_col != 0, stats.col_lse2, torch.full_like(stats.col_lse2, float("inf")))
    scaled = _needs_ds_scale(problem)
    if rows_in_kernel and not scaled:
        return GradCoefficients(None, None, g_col, col_lse2, None)
    g_row = (0.5 * g if problem.symmetric else g) * (1.0 / tau.to(sd))
    g_diag = -2.0 * g_row if problem.symmetric else -g_row
    ds_scale = None
    if scaled:
        if g_col is not None:
            biggest = torch.maximum(g_row.abs().max() + g_diag.abs().max(), g_col.abs().max())
        else:
            biggest = 2.0 * g_row.abs().max()
        ds_scale = torch.where(biggest > 0, torch.exp2(-torch.ceil(torch.log2(biggest))), torch.ones_like(biggest))
    if rows_in_kernel:
        return GradCoefficients(None, None, g_col, col_lse2, ds_scale)
    return GradCoefficients(g_row, g_diag, g_col, col_lse2, ds_scale)


def _needs_ds_scale(problem: Problem) -> bool:
    """Only fp16 dS needs the power-of-two rescaling: bf16 and fp32 share fp32's exponent range, where σ = 1
    gives the same values (a power-of-two scale changes no mantissa) without ~12 small launches, a pass over dQ
    and one over dP."""
    return problem.q.dtype == torch.float16


def grad_scores_torch(
    problem: Problem, stats: Stats, coef: GradCoefficients, tau: torch.Tensor, r0: int, r1: int, out: torch.Tensor
) -> None:
    """σ·dS for rows [r0, r1) into ``out`` (PyTorch path)."""
    sd = problem.stats_dtype
    s = _mm_accumulating(problem.q[r0:r1], problem.p.t(), sd)
    z = s * (LOG2E / tau.to(sd))
    kept = _kept(problem, r0, r1)
    if kept is not None:
        z = z.masked_fill(~kept, float("-inf"))
    assert coef.g_row is not None and coef.g_diag is not None
    ds = coef.g_row[r0:r1, None] * torch.exp2(z - stats.lse2[r0:r1, None])
    if coef.g_col is not None and coef.col_lse2 is not None:
        ds += coef.g_col[None, :] * torch.exp2(z - coef.col_lse2[None, :])
    ds.scatter_add_(1, problem.labels[r0:r1, None], coef.g_diag[r0:r1, None])
    out.copy_(ds if coef.ds_scale is None else ds * coef.ds_scale)


def grad_scores_triton(
    problem: Problem, stats: Stats, coef: GradCoefficients, tau: torch.Tensor, grad: torch.Tensor, r0: int, r1: int,
    out: torch.Tensor,
) -> None:
    """σ·dS for rows [r0, r1) into ``out`` (fused kernel: recomputes the score tiles; ``grad`` is the upstream
    gradient of the per-query losses, fp32 [M])."""
    n, d = problem.p.shape
    gq, gp = _group_args(problem)
    # Unused pointers (the constexpr flags skip them) get any fp32 tensor.
    g_col = coef.g_col if coef.g_col is not None else grad
    col_lse2 = coef.col_lse2 if coef.col_lse2 is not None else grad
    ds_scale = coef.ds_scale if coef.ds_scale is not None else grad

    def grid(meta: dict) -> tuple[int, int]:
        return triton.cdiv(r1 - r0, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"])

    def launch() -> None:
        _grad_scores_kernel[grid](
            problem.q, problem.p, problem.labels, gq, gp, tau,
            stats.lse2, grad, g_col, col_lse2, ds_scale, out,
            r0, r1 - r0, n, d, problem.q.stride(0), problem.p.stride(0),
            HAS_GROUPS=problem.group_q is not None, SYMMETRIC=problem.symmetric,
            HAS_DS_SCALE=coef.ds_scale is not None,
            INPUT_PRECISION=_input_precision(problem), UPCAST=_upcast(problem),
        )

    _launch_falling_back(_grad_scores_kernel, launch)


@functools.cache
def _addmm_out_dtype_works(device: torch.device) -> bool:
    """Whether torch.addmm(..., out_dtype=float32) takes half-precision operands here (cuBLAS, fp32 accumulation)."""
    acc = torch.zeros(2, 2, device=device)
    try:
        a = torch.ones(2, 2, device=device, dtype=torch.bfloat16)
        torch.addmm(acc, a, a, out_dtype=torch.float32, out=acc)
    except (TypeError, RuntimeError):
        return False
    return bool((acc == 2).all())


def _accumulate_dp(acc: torch.Tensor, ds: torch.Tensor, q_chunk: torch.Tensor, problem: Problem,
                   use_triton: bool) -> None:
    """acc (fp32 [N, d]) += dsᵀ @ q_chunk."""
    if not use_triton:
        _addmm_torch(acc, ds.t(), q_chunk)
    elif DP_ACCUMULATE == "cublas" and acc.is_cuda and ds.dtype == acc.dtype:
        acc.addmm_(ds.t(), q_chunk)
    elif DP_ACCUMULATE == "cublas" and acc.is_cuda and _addmm_out_dtype_works(acc.device):
        torch.addmm(acc, ds.t(), q_chunk, out_dtype=acc.dtype, out=acc)
    else:
        _addmm_triton(acc, ds, q_chunk, problem)


def backward_chunked(
    problem: Problem,
    stats: Stats,
    tau: torch.Tensor,
    grad: torch.Tensor,
    use_triton: bool,
    need: tuple[bool, bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """dQ, dP and dτ from σ·dS row chunks: dQ[c] = dS[c]·P, dP += dS[c]ᵀ·Q[c] (fp32), dτ = -(1/τ)·Σ q·dQ.

    With a single row chunk (M·N·itemsize ≤ BUFFER_BYTES) dP = dSᵀ·Q is one cuBLAS matmul into the output
    (fp32 accumulation inside cuBLAS; through an fp32 result where fp16 needs σ removed): no fp32 [N, d]
    accumulator, no zero fill, no read-modify-write.
    """
    q, p = problem.q, problem.p
    m, n = q.shape[0], p.shape[0]
    sd = problem.stats_dtype
    need_q, need_p, need_tau = need
    timer = _timer(q)
    if timer is not None:
        timer.start()
    if use_triton:
        grad = grad.to(torch.float32)
    coef = _grad_coefficients(problem, stats, grad, tau, rows_in_kernel=use_triton)
    inv_scale = 1.0 / coef.ds_scale if coef.ds_scale is not None else None
    rows = _chunk_rows(m, n, q.element_size(), ROW_ALIGN)
    single = rows >= m
    buffer = torch.empty(rows, n, dtype=q.dtype, device=q.device)
    dq = torch.empty_like(q) if need_q or need_tau else None
    dp_acc = torch.zeros(n, q.shape[1], dtype=sd, device=q.device) if need_p and not single else None
    dp = None
    q_dot_dq = torch.zeros((), dtype=sd, device=q.device) if need_tau else None
    if timer is not None:
        timer.lap("backward setup")
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        ds = buffer[: r1 - r0]
        if use_triton:
            grad_scores_triton(problem, stats, coef, tau, grad, r0, r1, ds)
        else:
            grad_scores_torch(problem, stats, coef, tau, r0, r1, ds)
        if timer is not None:
            timer.lap("dS kernel")
        if dq is not None:
            dq_rows = dq[r0:r1]
            torch.mm(ds, p, out=dq_rows)
            if inv_scale is not None:
                dq_rows.mul_(inv_scale.to(q.dtype))
            if q_dot_dq is not None:
                q_dot_dq += (q[r0:r1].to(sd) * dq_rows.to(sd)).sum()
            if timer is not None:
                timer.lap("dQ matmul")
        if need_p and single:
            if inv_scale is None and q.is_cuda:
                dp = ds.t() @ q
            else:
                dp = _mm_accumulating(ds.t(), q, sd)
                if inv_scale is not None:
                    dp.mul_(inv_scale)
                dp = dp.to(p.dtype)
            if timer is not None:
                timer.lap("dP matmul")
        elif dp_acc is not None:
            _accumulate_dp(dp_acc, ds, q[r0:r1], problem, use_triton)
            if timer is not None:
                timer.lap("dP accumulate")
    del buffer, ds
    if dp_acc is not None:
        if inv_scale is not None:
            dp_acc.mul_(inv_scale)
        dp = dp_acc.to(p.dtype)
    dtau = -q_dot_dq / tau.to(sd) if q_dot_dq is not None else None
    if timer is not None:
        timer.lap("backward finish")
    return (dq if need_q else None), dp, dtau


class ContrastiveLossFunction(torch.autograd.Function):
    """Per-query InfoNCE losses [M] (fp32; fp64 for fp64 inputs) with a recomputing backward."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        q: torch.Tensor,
        p: torch.Tensor,
        tau: torch.Tensor,
        problem: Problem,
        use_triton: bool,
    ) -> torch.Tensor:
        timer = _timer(q)
        if timer is not None:
            timer.start()
        losses, stats = (forward_triton if use_triton else forward_torch)(problem, tau)
        if timer is not None:
            timer.lap("forward")
        ctx.problem = problem
        ctx.stats = stats
        ctx.use_triton = use_triton
        ctx.save_for_backward(tau)
        return losses

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None, None]:
        (tau,) = ctx.saved_tensors
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        with torch.autocast(ctx.problem.q.device.type, enabled=False):
            dq, dp, dtau = backward_chunked(ctx.problem, ctx.stats, tau, grad.contiguous(), ctx.use_triton, need)
        if dtau is not None:
            dtau = dtau.to(tau.dtype)
        return dq, dp, dtau, None, None


def contrastive_losses_naive(problem: Problem, tau: torch.Tensor) -> torch.Tensor:
    """Reference per-query losses: materializes the [M, N] logits, differentiable by autograd."""
    q, p = problem.q, problem.p
    sd = problem.stats_dtype
    logits = (q @ p.t()).to(sd) / tau.to(sd)
    kept = _kept(problem, 0, q.shape[0])
    if kept is not None:
        logits = logits.masked_fill(~kept, float("-inf"))
    losses = torch.nn.functional.cross_entropy(logits, problem.labels, reduction="none")
    if not problem.symmetric:
        return losses
    columns = logits.t()[problem.labels]
    targets = torch.arange(q.shape[0], device=q.device)
    return 0.5 * (losses + torch.nn.functional.cross_entropy(columns, targets, reduction="none"))
