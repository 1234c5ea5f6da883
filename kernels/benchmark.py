"""`hybridfast bench kernels`: fused kernels vs naive and chunked-torch baselines.

Every contrastive row is forward + backward (gradients of q and p) at M = N (or N = 8·M with group masking for
the hard-negative rows), timed as the median of CUDA-event (GPU) or wall-clock (CPU) measurements after warm-up
(the warm-up includes Triton compilation and autotuning). Throughput counts the FLOP each backend executes
(``EXECUTED_FLOP``: 8·M·N·d for the fused and chunked paths, 6·M·N·d for naive), as TFLOP/s, as a fraction of a
square matmul measured in the same run (the ceiling: bf16 8192³ on a GPU, 1024³ of the benchmark dtype on CPU)
and as the compute-bound time at that ceiling (``roofline_ms``). Extra memory (CUDA only) is the peak allocated
during one step minus what was allocated before it, minus the two gradients the step returns. Pooling rows count
the bytes the fused kernels move (valid tokens read, outputs, saved statistics and gradients written; see
``pool_bytes_moved``) against a device-to-device copy measured in the same run.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import typer

GPU_SIZES = (4096, 16384, 32768, 65536)
CPU_SIZES = (256, 1024)
QUICK_GPU_SIZES = (4096, 16384)
DEFAULT_DIMS = (384, 768)
# Naive InfoNCE holds ~12 bytes per logit at its peak (fp32 logits, softmax, gradient): 48 GiB at 65,536².
NAIVE_BYTES_PER_LOGIT = 12
GIB = 1024**3
# Triton rows with M·N up to this are also checked against float64 (the autotuned configs' correctness).
CHECK_MAX_MN = 4096 * 4096
# Larger rows are checked on a case whose longer side is this (same autotune key, so the same configs).
CHECK_SIDE = 2048
# Rows with M·N up to this also get a queued (back-to-back) timing: launch-bound sizes.
QUEUED_MAX_MN = 16384 * 16384
# FLOP per M·N·d that each backend executes for forward + backward (gradients of q and p):
# naive: logits q·pᵀ (2) and autograd's dQ = dL·P, dP = dLᵀ·Q (2 + 2); no recomputation.
# torch (chunked) and triton: scores forward (2), recomputed in the backward (2), then dQ and dP (2 + 2).
EXECUTED_FLOP = {"naive": 6, "torch": 8, "triton": 8}
# Shapes (M = N, d) that get a per-stage breakdown on a GPU: the targets.
BREAKDOWN_CASES = ((65536, 768), (32768, 768), (65536, 384), (4096, 768))
# The breakdown also times the fused path with this dS row-chunk buffer (the default is 256 MiB).
BREAKDOWN_BUFFER_BYTES = 384 * 1024**2


@dataclass
class KernelBenchConfig:
    """What to run: sizes are M (= N for the main sweep), dims are d."""

    sizes: tuple[int, ...]
    dims: tuple[int, ...]
    dtype: str
    repeats: int
    backends: tuple[str, ...]
    out_dir: Path
    device: str
    extras: bool
    time_budget_s: float
    breakdown: bool = False


def _torch():
    import torch

    return torch


def _sync(device: str) -> None:
    if device == "cuda":
        _torch().cuda.synchronize()


def time_ms_queued(fn: Callable[[], object], device: str, repeats: int) -> float:
    """Milliseconds per call of ``repeats`` calls queued back to back (one CUDA-event pair around all of them,
    one warm-up call first): the steady-state cost in a training loop, where the host launches the next call
    while the GPU runs the previous one. ``time_ms`` instead waits for each call, so its per-call times also
    hold the host's launch latency (which dominates sub-millisecond calls)."""
    torch = _torch()
    fn()
    _sync(device)
    if device != "cuda":
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t0) * 1e3 / repeats
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / repeats


def time_ms(fn: Callable[[], object], device: str, repeats: int, max_seconds: float = 3.0) -> list[float]:
    """Milliseconds of ``repeats`` calls after one warm-up call (at least 3 timed, stopping after max_seconds)."""
    torch = _torch()
    fn()
    _sync(device)
    times: list[float] = []
    start = time.monotonic()
    while len(times) < repeats and (len(times) < 3 or time.monotonic() - start < max_seconds):
        if device == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def peak_extra_bytes(fn: Callable[[], object], device: str, returned_bytes: int) -> int | None:
    """Peak memory one call allocates beyond what existed before it, minus the bytes it returns (CUDA only)."""
    if device != "cuda":
        return None
    torch = _torch()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base - returned_bytes
    del out
    return max(0, peak)


def _dtype(name: str):
    torch = _torch()
    table = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
             "float32": torch.float32, "fp32": torch.float32}
    if name not in table:
        raise typer.BadParameter(f"dtype must be one of {sorted(table)}, got {name!r}")
    return table[name]


def matmul_ceiling(device: str, dtype_name: str) -> dict[str, Any]:
    """TFLOP/s of one square matmul (8192³ bf16 on GPU, 1024³ of the benchmark dtype on CPU)."""
    torch = _torch()
    size = 8192 if device == "cuda" else 1024
    dtype = torch.bfloat16 if device == "cuda" else _dtype(dtype_name)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    ms = statistics.median(time_ms(lambda: a @ b, device, 20))
    return {"op": "matmul", "size": size, "dtype": str(dtype).removeprefix("torch."), "ms": ms,
            "tflops": 2 * size**3 / ms / 1e9}


def copy_bandwidth(device: str, nbytes: int) -> dict[str, Any]:
    """Bytes read + written per second by a device copy of ``nbytes``."""
    torch = _torch()
    src = torch.empty(nbytes // 2, device=device, dtype=torch.bfloat16).normal_()
    dst = torch.empty_like(src)
    ms = statistics.median(time_ms(lambda: dst.copy_(src), device, 20))
    return {"op": "copy", "bytes": nbytes, "ms": ms, "gbps": 2 * nbytes / ms / 1e6}


def _loss_case(
    m: int, n: int, d: int, dtype, device: str, grouped: bool, seed: int
) -> tuple[Any, Any, tuple[Any, Any] | None]:
    """Row-normalized q [m, d], p [n, d] (requiring grad) and, if grouped, parallel-data group ids."""
    torch = _torch()
    gen = torch.Generator(device=device).manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(m, d, device=device, generator=gen), dim=1).to(dtype)
    p = torch.nn.functional.normalize(torch.randn(n, d, device=device, generator=gen), dim=1).to(dtype)
    groups = None
    if grouped:
        # Parallel-data shape: 4 language versions per question; hard negatives from random questions.
        group_q = torch.arange(m, device=device) // 4
        group_p = torch.cat([group_q, torch.randint(0, max(1, m // 4), (n - m,), device=device, generator=gen)])
        groups = (group_q, group_p)
    return q.requires_grad_(), p.requires_grad_(), groups


def _tuned_keys() -> set[tuple[str, Any]]:
    """(kernel, autotune key) pairs the fused loss's autotuned kernels have tuned so far."""
    from hybridfast.kernels import contrastive

    return {(name, key) for name, kernel in (("forward", contrastive._forward_kernel),
                                             ("dS", contrastive._grad_scores_kernel))
            for key in getattr(kernel, "cache", {})}


def _chosen_configs() -> dict[str, str]:
    """The configs the autotuner last picked for the fused forward and dS kernels."""
    from hybridfast.kernels import contrastive

    return {name: str(getattr(kernel, "best_config", None))
            for name, kernel in (("forward", contrastive._forward_kernel), ("dS", contrastive._grad_scores_kernel))}


def _rel_diffs(first: tuple[Any, ...], later: tuple[Any, ...]) -> dict[str, float]:
    """Relative norm differences of (loss, dq, dp) of one call against another (or a reference), on the same inputs."""
    diffs = {}
    for name, a, b in zip(("loss", "dq", "dp"), first, later, strict=True):
        a, b = a.detach().double(), b.detach().double()
        diffs[name] = float((a - b).norm() / b.norm().clamp_min(1e-30))
    return diffs


def _check_against_float64(q: Any, p: Any, groups: Any, symmetric: bool) -> dict[str, Any]:
    """Relative errors of the triton loss and gradients against the naive backend in float64."""
    torch = _torch()
    from hybridfast.kernels import contrastive_loss

    loss = contrastive_loss(q, p, temperature=0.05, group_ids=groups, symmetric=symmetric, backend="triton")
    grads = torch.autograd.grad(loss, (q, p))
    q64 = q.detach().double().requires_grad_()
    p64 = p.detach().double().requires_grad_()
    ref = contrastive_loss(q64, p64, temperature=0.05, group_ids=groups, symmetric=symmetric, backend="naive")
    errs = _rel_diffs((loss, *grads), (ref, *torch.autograd.grad(ref, (q64, p64))))
    tol = 1e-4 if q.dtype == torch.float32 else 2e-2
    return {"check": "pass" if max(errs.values()) <= tol else "FAIL", "check_rel_err": errs}


def time_ms_graphed(step: Callable[[], tuple[Any, ...]], repeats: int) -> tuple[float, dict[str, float]]:
    """Milliseconds per replay of ``step`` captured in a CUDA graph (no host launch cost at all: the GPU-side
    floor of a training loop that graphs its step), and the replay's relative differences to an eager call."""
    torch = _torch()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (autotuning, compiles, allocator) outside the capture
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    eager = step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    graph.replay()
    torch.cuda.synchronize()
    diffs = _rel_diffs(captured, eager)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(repeats):
        graph.replay()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / repeats, diffs


def bench_loss(
    backend: str, m: int, n: int, d: int, dtype, device: str, repeats: int, *,
    symmetric: bool = False, grouped: bool = False, ceiling_tflops: float | None = None,
) -> dict[str, Any]:
    """One forward+backward row of ``contrastive_loss``."""
    torch = _torch()
    from hybridfast.kernels import contrastive_loss

    row: dict[str, Any] = {"op": "contrastive_loss", "backend": backend, "m": m, "n": n, "d": d,
                           "dtype": str(dtype).removeprefix("torch."), "symmetric": symmetric, "grouped": grouped}
    if backend == "naive" and device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        need = NAIVE_BYTES_PER_LOGIT * m * n
        if need > 0.85 * free:
            row["status"] = f"skipped: naive needs ~{need / GIB:.0f} GiB, {free / GIB:.0f} GiB free"
            return row
    q, p, groups = _loss_case(m, n, d, dtype, device, grouped, seed=m + n + d)

    def step() -> tuple[Any, ...]:
        loss = contrastive_loss(q, p, temperature=0.05, group_ids=groups, symmetric=symmetric,
                                backend=backend)
        return (loss.detach(), *torch.autograd.grad(loss, (q, p)))

    try:
        first = None
        if backend == "triton" and device == "cuda":
            # The first call of a new autotune key runs every config on the live buffers before the winner: kept
            # here and compared with a later call below (the float64 check further down runs after warm-up).
            tuned_keys = _tuned_keys()
            first = step()
            row["first_call_tuned"] = _tuned_keys() != tuned_keys
        times = time_ms(step, device, repeats)
        extra = peak_extra_bytes(step, device, (m + n) * d * q.element_size())
        if first is not None:
            diffs = _rel_diffs(first, step())
            del first
            tol = 1e-5 if dtype == torch.float32 else 1e-3
            row["first_call_vs_later"] = {"check": "pass" if max(diffs.values()) <= tol else "FAIL", **diffs}
    except torch.OutOfMemoryError as err:
        row["status"] = f"out of memory: {str(err).splitlines()[0]}"
        return row
    except Exception as err:  # one failing row must not end a sweep that costs GPU time
        row["status"] = f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        return row
    ms = statistics.median(times)
    flops = EXECUTED_FLOP[backend] * m * n * d
    row.update(status="ok", ms=ms, times_ms=times, flop=flops, flop_formula=f"{EXECUTED_FLOP[backend]}·M·N·d",
               tflops=flops / ms / 1e9, extra_gib=None if extra is None else extra / GIB)
    if backend == "triton" and device == "cuda":
        row["configs"] = _chosen_configs()
        # The sweep runs the autotuned configs (the CUDA tests pin one): check them against float64. Larger rows
        # are checked on a smaller case with the same autotune key (d, groups, symmetric, dtype), which runs the
        # same cached configs.
        try:
            if m * n <= CHECK_MAX_MN:
                row.update(_check_against_float64(q, p, groups, symmetric))
            else:
                small_m = max(1, m * CHECK_SIDE // max(m, n))
                small = _loss_case(small_m, n * CHECK_SIDE // max(m, n), d, dtype, device, grouped, seed=m)
                row.update(_check_against_float64(*small, symmetric), check_shape=[small[0].shape[0], small[1].shape[0]])
        except Exception as err:
            row["check"] = f"error: {type(err).__name__}: {err}"
    if device == "cuda" and m * n <= QUEUED_MAX_MN:
        # Cheap rows: also the back-to-back cost, where the host's launch latency overlaps the GPU's work, and
        # the replay of a CUDA graph of the step (no host launches at all).
        try:
            row["ms_queued"] = time_ms_queued(step, device, max(repeats, 10))
        except Exception as err:  # a second timing must not lose the row
            row["ms_queued_error"] = f"{type(err).__name__}: {err}"
        try:
            row["ms_graphed"], row["graphed_vs_eager"] = time_ms_graphed(step, max(repeats, 10))
        except Exception as err:
            row["ms_graphed_error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if ceiling_tflops:
        row["fraction_of_ceiling"] = row["tflops"] / ceiling_tflops
        row["roofline_ms"] = flops / ceiling_tflops / 1e9
    return row


def bench_breakdown(
    m: int, d: int, dtype, device: str, repeats: int, ceiling_tflops: float | None, *, dp_variants: bool = True,
) -> list[dict[str, Any]]:
    """Per-stage CUDA-event times of the triton backend's forward+backward at M = N = m (``--breakdown``).

    Stages: forward (kernel + split merge), backward setup (gradient coefficients, buffers), dS kernel, dQ
    matmul, dP (one matmul for a single row chunk, else the fp32 accumulation) and backward finish; each matmul
    stage does 2·M·N·d FLOP, shown as TFLOP/s. ``other`` is the step's time outside these spans (autograd, the
    mean). With several row chunks, the dP accumulation is also timed with the other variant
    (``HYBRIDFAST_DP_ACCUMULATE=triton`` or ``cublas``) after checking its dP against the default's.
    """
    torch = _torch()
    from hybridfast.kernels import contrastive as cmod
    from hybridfast.kernels import contrastive_loss

    q, p, _ = _loss_case(m, m, d, dtype, device, False, seed=m + d)

    def step() -> tuple[Any, ...]:
        loss = contrastive_loss(q, p, temperature=0.05, backend="triton")
        return torch.autograd.grad(loss, (q, p))

    def measure(variant: str) -> dict[str, Any]:
        reps = max(1, min(repeats, 5))
        ref = step()
        _sync(device)
        step_ms = statistics.median(time_ms(step, device, reps, max_seconds=1.0))
        with cmod.stage_timing() as timer:
            for _ in range(reps):
                step()
            stages = {k: v / reps for k, v in timer.totals().items()}
        row: dict[str, Any] = {"op": "breakdown", "backend": "triton", "variant": f"dP {variant}", "m": m, "n": m,
                               "d": d, "dtype": str(dtype).removeprefix("torch."), "status": "ok", "ms": step_ms,
                               "stages_ms": stages, "other_ms": step_ms - sum(stages.values())}
        matmul_flops = 2 * m * m * d
        row["stage_tflops"] = {k: matmul_flops / v / 1e9 for k, v in stages.items()
                               if k in ("forward", "dS kernel", "dQ matmul", "dP matmul", "dP accumulate") and v > 0}
        if ceiling_tflops:
            row["stage_fraction_of_ceiling"] = {k: v / ceiling_tflops for k, v in row["stage_tflops"].items()}
        row["_grads"] = ref
        return row

    rows = []
    try:
        base = measure(cmod.DP_ACCUMULATE)
        ref = base.pop("_grads")
        rows.append(base)
        if dp_variants and "dP accumulate" in base["stages_ms"]:
            saved = cmod.DP_ACCUMULATE
            other = "triton" if saved == "cublas" else "cublas"
            cmod.DP_ACCUMULATE = other
            try:
                alt = measure(other)
                grads = alt.pop("_grads")
                alt["dp_rel_diff_vs_default"] = float((grads[1].float() - ref[1].float()).norm()
                                                      / ref[1].float().norm())
                alt["dq_rel_diff_vs_default"] = float((grads[0].float() - ref[0].float()).norm()
                                                      / ref[0].float().norm())
                rows.append(alt)
            except Exception as err:  # the variant is an experiment: record it, keep the default's row
                rows.append({"op": "breakdown", "variant": f"dP {other}", "m": m, "n": m, "d": d,
                             "status": f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"})
            finally:
                cmod.DP_ACCUMULATE = saved
        if dp_variants and "dP accumulate" in base["stages_ms"]:
            # A larger dS row-chunk buffer: fewer fp32 read-modify-writes of dP (one per chunk), more memory.
            saved_bytes = cmod.BUFFER_BYTES
            cmod.BUFFER_BYTES = BREAKDOWN_BUFFER_BYTES
            try:
                big = measure(cmod.DP_ACCUMULATE)
                big["variant"] += f", dS buffer {BREAKDOWN_BUFFER_BYTES >> 20} MiB"
                grads = big.pop("_grads")
                big["dp_rel_diff_vs_default"] = float((grads[1].float() - ref[1].float()).norm()
                                                      / ref[1].float().norm())
                extra = peak_extra_bytes(step, device, 2 * m * d * q.element_size())
                big["extra_gib"] = None if extra is None else extra / GIB
                rows.append(big)
            except Exception as err:
                rows.append({"op": "breakdown", "variant": f"dS buffer {BREAKDOWN_BUFFER_BYTES >> 20} MiB", "m": m,
                             "n": m, "d": d, "status": f"error: {type(err).__name__}: {err}"})
            finally:
                cmod.BUFFER_BYTES = saved_bytes
    except Exception as err:
        rows.append({"op": "breakdown", "m": m, "n": m, "d": d,
                     "status": f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"})
    return rows


def pool_bytes_moved(
    layout: str, phase: str, batch: int, length: int, d: int, valid_tokens: int, itemsize: int, mask_itemsize: int = 1,
) -> int:
    """Bytes the fused pooling kernels move for mean pooling with normalization (the benchmark's case).

    Forward: the valid tokens' states (padded tokens are never loaded), the mask [B, L] (padded) or cu_seqlens and
    the launch order (varlen) read; the output [B, D], the fp32 pre-normalization rows [B, D] and 1/|V_b| [B]
    written. Backward adds: the output gradient, the saved rows and scales (and the mask, or cu_seqlens) read and
    the input gradient written, all of [B, L, D] for the padded layout (the padded positions get their zeros),
    [T, D] packed.
    """
    if layout not in ("padded", "varlen") or phase not in ("forward", "forward+backward"):
        raise ValueError(f"unknown pooling layout {layout!r} or phase {phase!r}")
    index = batch * length * mask_itemsize if layout == "padded" else (batch + 1) * 4 + batch * 4
    saved = batch * d * 4 + batch * 4
    forward = valid_tokens * d * itemsize + index + batch * d * itemsize + saved
    if phase == "forward":
        return forward
    grad_in = (batch * length if layout == "padded" else valid_tokens) * d * itemsize
    return forward + batch * d * itemsize + saved + (index if layout == "padded" else (batch + 1) * 4) + grad_in


def bench_pooling(
    device: str, dtype, backends: tuple[str, ...], copy_gbps: float | None, repeats: int
) -> list[dict[str, Any]]:
    """pool / pool_varlen forward and forward+backward on [B, L, d] with random lengths in [L/8, L]: GB/s on the
    bytes the fused kernels move (``pool_bytes_moved``), against the copy bandwidth of the same run. The torch
    rows (the unfused baseline) are credited with the same bytes, though they move more (an fp32 copy)."""
    torch = _torch()
    from hybridfast.kernels import pool, pool_varlen

    b, seq, d = (1024, 512, 768) if device == "cuda" else (16, 64, 128)
    gen = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(b, seq, d, device=device, dtype=dtype, generator=gen)
    lengths = torch.randint(seq // 8, seq + 1, (b,), device=device, generator=gen)
    mask = torch.arange(seq, device=device)[None, :] < lengths[:, None]
    packed = hidden[mask].contiguous()
    # On the host, as a serving loop builds it: pool_varlen validates it there without waiting for the GPU
    # (a device cu_seqlens costs a device-to-host copy that waits for the queue on every call).
    cu_seqlens = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32).cpu()
    valid_tokens = packed.shape[0]
    rows = []
    for name, layout, x, call in (
        ("pool", "padded", hidden, lambda x, be: pool(x, mask, backend=be)),
        ("pool_varlen", "varlen", packed, lambda x, be: pool_varlen(x, cu_seqlens, backend=be)),
    ):
        for backend in backends:
            if backend == "naive" or (backend == "triton" and device != "cuda"):
                continue
            xg = x.detach().clone().requires_grad_()
            fwd = statistics.median(time_ms(lambda x=x, be=backend, call=call: call(x, be), device, repeats))
            grad_out = torch.randn(b, d, device=device, dtype=dtype)

            def fwd_bwd(xg=xg, be=backend, call=call, grad_out=grad_out) -> Any:
                return torch.autograd.grad(call(xg, be), xg, grad_out)

            both = statistics.median(time_ms(fwd_bwd, device, repeats))
            queued = {"forward": None, "forward+backward": None}
            if device == "cuda":
                queued["forward"] = time_ms_queued(lambda x=x, be=backend, call=call: call(x, be), device, 20)
                queued["forward+backward"] = time_ms_queued(fwd_bwd, device, 20)
            for phase, ms in (("forward", fwd), ("forward+backward", both)):
                moved = pool_bytes_moved(layout, phase, b, seq, d, valid_tokens, x.element_size(),
                                         mask.element_size())
                gbps = moved / ms / 1e6
                row = {"op": name, "backend": backend, "phase": phase, "shape": [b, seq, d],
                       "valid_tokens": valid_tokens, "dtype": str(dtype).removeprefix("torch."), "ms": ms,
                       "bytes_moved": moved, "gbps": gbps,
                       "fraction_of_copy": gbps / copy_gbps if copy_gbps else None, "status": "ok"}
                if name == "pool":
                    # Not bytes moved: what a kernel reading every padded position would move (kept to compare
                    # with earlier runs, which reported this as "effective" bandwidth).
                    padded = moved + (b * seq - valid_tokens) * d * x.element_size()
                    row.update(padded_tensor_bytes=padded, padded_tensor_gbps=padded / ms / 1e6)
                if queued[phase]:
                    row["ms_queued"] = queued[phase]
                    row["gbps_queued"] = moved / queued[phase] / 1e6
                    row["fraction_of_copy_queued"] = row["gbps_queued"] / copy_gbps if copy_gbps else None
                rows.append(row)
    return rows


def _main_cases(cfg: KernelBenchConfig) -> list[tuple[int, int]]:
    """(size, d) in the order that matters most first: the issue's target shapes, then the rest."""
    targets = [(65536, 768), (32768, 768), (65536, 384), (4096, 768), (4096, 384)]
    cases = [(s, d) for s, d in targets if s in cfg.sizes and d in cfg.dims]
    cases += [(s, d) for s in sorted(cfg.sizes) for d in cfg.dims if (s, d) not in cases]
    return cases


def _extra_cases(cfg: KernelBenchConfig) -> list[tuple[str, int, int, int]]:
    """(kind, M, N, d) for the symmetric and hard-negative (N = 8·M, grouped) rows."""
    d = 768 if 768 in cfg.dims else cfg.dims[-1]
    if cfg.device == "cuda":
        sym = [s for s in (16384, 32768) if s in cfg.sizes or not cfg.sizes]
        return ([("symmetric", s, s, d) for s in sym]
                + [("one-direction-grouped", s, s, d) for s in (16384, 32768)]
                + [("hard-negatives", m, 8 * m, d) for m in (2048, 4096, 8192)])
    small = min(cfg.sizes)
    return [("symmetric", small, small, d), ("hard-negatives", small // 4, 2 * small, d)]


def run_kernel_benchmark(cfg: KernelBenchConfig) -> dict[str, Any]:
    """Run the sweep, write ``kernels-<card>-<time>.json`` and ``.png`` under cfg.out_dir; return the record."""
    torch = _torch()
    import triton

    started = time.monotonic()
    dtype = _dtype(cfg.dtype)
    device = cfg.device
    card = torch.cuda.get_device_name() if device == "cuda" else f"cpu ({platform.processor() or platform.machine()})"
    ceiling = matmul_ceiling(device, cfg.dtype)
    copy = copy_bandwidth(device, 1 * GIB if device == "cuda" else 64 * 1024**2)
    record: dict[str, Any] = {
        "card": card, "device": device, "torch": torch.__version__, "triton": triton.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "config": {
            **{k: v for k, v in asdict(cfg).items() if k != "out_dir"}},
        "matmul_ceiling": ceiling, "copy": copy, "rows": [],
    }
    rows: list[dict[str, Any]] = record["rows"]

    def over_budget() -> bool:
        return time.monotonic() - started > cfg.time_budget_s

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "times_ms"}
        typer.echo(json.dumps(shown))

    backends = [b for b in cfg.backends if b != "triton" or device == "cuda"]
    for size, d in _main_cases(cfg):
        for backend in backends:
            if over_budget():
                add({"op": "contrastive_loss", "backend": backend, "m": size, "n": size, "d": d,
                     "status": "skipped: time budget"})
                continue
            add(bench_loss(backend, size, size, d, dtype, device, cfg.repeats, ceiling_tflops=ceiling["tflops"]))
    if cfg.breakdown and device == "cuda" and "triton" in backends:
        for size, d in BREAKDOWN_CASES:
            if size not in cfg.sizes or d not in cfg.dims:
                continue
            if over_budget():
                add({"op": "breakdown", "m": size, "n": size, "d": d, "status": "skipped: time budget"})
                continue
            for row in bench_breakdown(size, d, dtype, device, cfg.repeats, ceiling["tflops"]):
                add(row)
    if cfg.extras and not over_budget():
        # Pooling before the contrastive extras: cheap, and one of the targets.
        pool_backends = tuple(b for b in ("triton", "torch") if b in backends)
        try:
            for row in bench_pooling(device, dtype, pool_backends, copy["gbps"], max(cfg.repeats, 10)):
                add(row)
        except Exception as err:  # pooling is another module's kernel: record, keep the loss rows
            add({"op": "pool", "status": f"error: {type(err).__name__}: {err}"})
    if cfg.extras:
        fused = "triton" if "triton" in backends else "torch"
        for kind, m, n, d in _extra_cases(cfg):
            if over_budget():
                add({"op": "contrastive_loss", "kind": kind, "m": m, "n": n, "d": d,
                     "status": "skipped: time budget"})
                continue
            row = bench_loss(fused, m, n, d, dtype, device, cfg.repeats, symmetric=kind == "symmetric",
                             grouped=kind != "symmetric", ceiling_tflops=ceiling["tflops"])
            row["kind"] = kind
            add(row)
    record["elapsed_s"] = time.monotonic() - started
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"kernels-{_slug(card)}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    json_path = cfg.out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(record, indent=2))
    png_path = cfg.out_dir / f"{stem}.png"
    plot_kernel_benchmark(record, png_path)
    md_path = cfg.out_dir / f"{stem}.md"
    md_path.write_text(markdown_summary(record))
    record["files"] = [str(json_path), str(png_path), str(md_path)]
    return record


def _fmt(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _sig(value: float | None, digits: int = 3) -> str:
    """``digits`` significant digits without an exponent: 0.0123, 4.56, 787 (a CPU's 0.05 TFLOP/s is not 0)."""
    if value is None:
        return "–"
    if value == 0 or abs(value) >= 10 ** (digits - 1):
        return f"{value:.0f}"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    return f"{value:.{decimals}f}"


def markdown_summary(record: dict[str, Any]) -> str:
    """Markdown tables of one run: the main sweep (with speed-up over naive), extras and pooling."""
    ceiling = record["matmul_ceiling"]
    lines = [
        f"{record['card']}, torch {record['torch']}, triton {record['triton']}, {record['date']}; "
        f"matmul ceiling {_sig(ceiling['tflops'])} TFLOP/s ({ceiling['dtype']} {ceiling['size']}³), "
        f"copy {_sig(record['copy']['gbps'])} GB/s (both measured in this run).",
        "",
        "TFLOP/s count the FLOP each backend executes: 8·M·N·d fused and torch-chunked (the backward recomputes the "
        "scores), 6·M·N·d naive. Roofline: that work at the matmul ceiling above.",
        "",
        "| M = N | d | backend | ms | TFLOP/s | of ceiling | roofline ms | extra GiB | vs naive |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    loss_rows = [r for r in record["rows"] if r.get("op") == "contrastive_loss"]
    main = [r for r in loss_rows if "kind" not in r]
    naive = {(r["m"], r["d"]): r.get("ms") for r in main if r["backend"] == "naive" and r.get("status") == "ok"}
    for r in sorted(main, key=lambda r: (r["d"], r["m"], r["backend"])):
        if r.get("status") != "ok":
            lines.append(f"| {r['m']} | {r['d']} | {r['backend']} | {r.get('status')} | | | | | |")
            continue
        base = naive.get((r["m"], r["d"]))
        speedup = f"{base / r['ms']:.2f}×" if base else "–"
        lines.append(f"| {r['m']} | {r['d']} | {r['backend']} | {_sig(r['ms'])} | {_sig(r['tflops'])} | "
                     f"{_sig(r.get('fraction_of_ceiling'), 2)} | {_sig(r.get('roofline_ms'))} | "
                     f"{_fmt(r.get('extra_gib'), 3)} | {speedup} |")
    checks = [r for r in loss_rows if r.get("check")]
    if checks:
        lines += ["", "Autotuned triton configs against float64: " + "; ".join(
            f"{r['m']}×{r['n']} d={r['d']}{' ' + r['kind'] if 'kind' in r else ''}: {r['check']}"
            + (" (max rel. err {:.1e})".format(max(r["check_rel_err"].values())) if "check_rel_err" in r else "")
            + (" at {}×{}".format(*r["check_shape"]) if "check_shape" in r else "")
            for r in checks)]
    first_calls = [r for r in loss_rows if r.get("first_call_vs_later")]
    if first_calls:
        lines += ["", "First call (the one that autotunes a new key) against a later call: " + "; ".join(
            f"{r['m']}×{r['n']} d={r['d']}{' ' + r['kind'] if 'kind' in r else ''}"
            f"{' (tuned)' if r.get('first_call_tuned') else ''}: {r['first_call_vs_later']['check']} (max rel. diff "
            f"{max(v for k, v in r['first_call_vs_later'].items() if k != 'check'):.1e})" for r in first_calls)]
    picked = [r for r in loss_rows if r.get("configs")]
    if picked:
        lines += ["", "Autotuned configs (forward / dS): " + "; ".join(
            f"{r['m']}×{r['n']} d={r['d']}{' ' + r['kind'] if 'kind' in r else ''}: "
            f"{r['configs']['forward']} / {r['configs']['dS']}" for r in picked)]
    queued = [r for r in main if r.get("ms_queued")]
    if queued:
        lines += ["", "Launch-bound sizes, also timed back to back (host launch latency overlapped) and as a CUDA "
                  "graph replay (no host launches: the GPU's own time; rel. diff of the replay to an eager call); "
                  "ms per call:", "",
                  "| M = N | d | backend | ms (one call, synced) | ms (queued) | ms (graph replay) | graph rel. diff |",
                  "|---|---|---|---|---|---|---|"]
        for r in sorted(queued, key=lambda r: (r["d"], r["m"], r["backend"])):
            graph_diff = max(r["graphed_vs_eager"].values()) if r.get("graphed_vs_eager") else None
            graphed = _fmt(r.get("ms_graphed"), 3) if "ms_graphed" in r else r.get("ms_graphed_error", "–")[:60]
            lines.append(f"| {r['m']} | {r['d']} | {r['backend']} | {r['ms']:.3f} | {r['ms_queued']:.3f} | "
                         f"{graphed} | {'–' if graph_diff is None else f'{graph_diff:.1e}'} |")
    breakdown = [r for r in record["rows"] if r.get("op") == "breakdown"]
    if breakdown:
        lines += ["", "Per-stage breakdown of the triton forward+backward (CUDA events, ms per step; TFLOP/s for "
                  "the 2·M·N·d stages):", "", "| M = N | d | variant | step ms | stage: ms (TFLOP/s) | other ms |",
                  "|---|---|---|---|---|---|"]
        for r in breakdown:
            if r.get("status") != "ok":
                lines.append(f"| {r['m']} | {r['d']} | {r.get('variant', '')} | {r.get('status')} | | |")
                continue
            tf = r.get("stage_tflops", {})
            parts = "; ".join(f"{k}: {v:.2f}" + (f" ({tf[k]:.0f})" if k in tf else "")
                              for k, v in r["stages_ms"].items())
            diff = f" (dP rel. diff {r['dp_rel_diff_vs_default']:.1e})" if "dp_rel_diff_vs_default" in r else ""
            diff += f" (extra {r['extra_gib']:.3f} GiB)" if r.get("extra_gib") is not None else ""
            lines.append(f"| {r['m']} | {r['d']} | {r['variant']}{diff} | {r['ms']:.2f} | {parts} | "
                         f"{r['other_ms']:.2f} |")
    one_way = {(r["m"], r["d"], r["backend"]): r.get("ms") for r in main if r.get("status") == "ok"}
    extras = [r for r in loss_rows if "kind" in r]
    if extras:
        lines += ["", "| kind | M | N | d | backend | ms | TFLOP/s | extra GiB | ratio to one direction |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in extras:
            if r.get("status") != "ok":
                lines.append(f"| {r['kind']} | {r['m']} | {r['n']} | {r['d']} | | {r.get('status')} | | | |")
                continue
            base = one_way.get((r["m"], r["d"], r["backend"])) if r["m"] == r["n"] else None
            ratio = f"{r['ms'] / base:.2f}×" if base else "–"
            lines.append(f"| {r['kind']} | {r['m']} | {r['n']} | {r['d']} | {r['backend']} | {r['ms']:.2f} | "
                         f"{r['tflops']:.3g} | {_fmt(r.get('extra_gib'), 3)} | {ratio} |")
    pools = [r for r in record["rows"] if r.get("op") in ("pool", "pool_varlen")]
    if pools:
        lines += ["", "Pooling, GB/s on the bytes the fused kernels move (valid tokens read; outputs, saved "
                  "statistics and, forward+backward, the input gradient written; the torch rows are credited with "
                  "the same bytes), against the copy bandwidth above:", "",
                  "| op | backend | phase | MB moved | ms | GB/s | of copy | ms queued | GB/s queued | of copy queued |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in pools:
            if r.get("status") != "ok":
                lines.append(f"| {r['op']} | | | | {r.get('status')} | | | | | |")
                continue
            lines.append(f"| {r['op']} | {r['backend']} | {r['phase']} | {_sig(r['bytes_moved'] / 1e6)} | "
                         f"{_sig(r['ms'])} | {_sig(r['gbps'])} | {_sig(r.get('fraction_of_copy'), 2)} | "
                         f"{_sig(r.get('ms_queued'))} | {_sig(r.get('gbps_queued'))} | "
                         f"{_sig(r.get('fraction_of_copy_queued'), 2)} |")
    return "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40]


def plot_kernel_benchmark(record: dict[str, Any], path: Path) -> None:
    """Time and (where measured: CUDA) extra memory against M = N, one line per (backend, d), from the main sweep's
    rows. Without memory measurements (CPU) the plot has the time panel only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = [r for r in record["rows"] if r.get("op") == "contrastive_loss" and r.get("status") == "ok"
            and "kind" not in r]
    has_memory = any(r.get("extra_gib") is not None for r in main)
    fig, axes = plt.subplots(1, 2 if has_memory else 1, figsize=(12, 4.5) if has_memory else (6.5, 4.5),
                             squeeze=False)
    ax_t = axes[0][0]
    panels = [(ax_t, "forward+backward (ms)")]
    if has_memory:
        panels.append((axes[0][1], "extra memory (GiB)"))
    for backend, d in sorted({(r["backend"], r["d"]) for r in main}):
        pts = sorted((r["m"], r["ms"], r.get("extra_gib")) for r in main if r["backend"] == backend and r["d"] == d)
        ax_t.plot([x for x, _, _ in pts], [t for _, t, _ in pts], marker="o", label=f"{backend}, d={d}")
        mem = [(x, g) for x, _, g in pts if g is not None]
        if mem:
            axes[0][1].plot([x for x, _ in mem], [g for _, g in mem], marker="o", label=f"{backend}, d={d}")
    for ax, label in panels:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("M = N")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(f"contrastive_loss, {record['card']} (torch {record['torch']}, triton {record['triton']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ints(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as err:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from err


def bench_kernels_command(
    sizes: str = typer.Option("", "--sizes", help="Comma-separated M = N sizes. Default: 4096,16384,32768,65536 "
                              "on a GPU (4096,16384 with --quick), 256,1024 on CPU."),
    dims: str = typer.Option("384,768", "--dims", help="Comma-separated embedding sizes d."),
    dtype: str = typer.Option("auto", "--dtype", help="bfloat16 | float16 | float32; auto: bfloat16 on a GPU, "
                              "float32 on CPU."),
    repeats: int = typer.Option(10, "--repeats", min=1, help="Timed calls per row after one warm-up call "
                                "(fewer for rows slower than ~1 s)."),
    out_dir: Path = typer.Option(Path("benchmarks/results"), "--out-dir", help="Where the JSON and PNG go."),
    backends: str = typer.Option("triton,naive,torch", "--backends", help="Comma-separated contrastive_loss "
                                 "backends to compare (triton runs only on a GPU)."),
    device: str = typer.Option("auto", "--device", help="cuda | cpu | auto (cuda when available)."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes and 3 repeats: a smoke run."),
    extras: bool = typer.Option(True, "--extras/--no-extras", help="Also symmetric, hard-negative (N = 8·M, "
                                "group-masked) and pooling rows."),
    time_budget: float = typer.Option(420.0, "--time-budget", help="Seconds; rows that would start later are "
                                      "recorded as skipped."),
    breakdown: bool = typer.Option(True, "--breakdown/--no-breakdown", help="On a GPU: per-stage CUDA-event "
                                   "times (forward, dS kernel, dQ matmul, dP) of the triton backend at the target "
                                   "shapes in the sweep."),
) -> None:
    """Benchmark the fused contrastive loss and pooling against naive and chunked-torch baselines.

    Times forward+backward (median after warm-up), peak extra memory (CUDA) and TFLOP/s of the work each backend
    executes against a matmul measured in the same run; pooling as GB/s on the bytes actually moved against a
    device copy of the same run. On a GPU also: the first (autotuning) call against a later one, float64 checks,
    back-to-back and CUDA-graph timings of the small shapes. Writes JSON, a PNG plot and a Markdown table.
    """
    torch = _torch()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cuda", "cpu"):
        raise typer.BadParameter(f"device must be cuda, cpu or auto, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter("--device cuda but no CUDA device is available")
    size_list = _ints(sizes) or (CPU_SIZES if device == "cpu" else QUICK_GPU_SIZES if quick else GPU_SIZES)
    names = tuple(b.strip() for b in backends.split(",") if b.strip())
    unknown = set(names) - {"triton", "naive", "torch"}
    if unknown:
        raise typer.BadParameter(f"unknown backends {sorted(unknown)}; choose from triton, naive, torch")
    cfg = KernelBenchConfig(
        sizes=size_list, dims=_ints(dims) or DEFAULT_DIMS,
        dtype=("bfloat16" if device == "cuda" else "float32") if dtype == "auto" else dtype,
        repeats=3 if quick else repeats, backends=names, out_dir=out_dir, device=device, extras=extras,
        time_budget_s=time_budget, breakdown=breakdown,
    )
    record = run_kernel_benchmark(cfg)
    typer.echo(f"wrote {', '.join(record['files'])} in {record['elapsed_s']:.0f} s")
