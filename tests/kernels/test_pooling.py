"""Fused masked pooling (`pool`, `pool_varlen`) against a float64 reference, on every backend.

The triton backend runs on CPU tensors under TRITON_INTERPRET=1 (CI) and on CUDA when a GPU is present and the
interpreter is off (there with larger shapes, and once past the autotuning threshold).
"""

from __future__ import annotations

import os

import pytest
import torch
import triton
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hybridfast.kernels import pooling
from hybridfast.kernels.pooling import MODES, pool, pool_varlen

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
CUDA = torch.cuda.is_available() and not INTERPRET
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Elementwise tolerance on outputs (rounding to the output dtype dominates) and by norm on gradients.
OUT_TOL = {torch.float32: 2e-6, torch.bfloat16: 1e-2, torch.float16: 2e-3}
GRAD_TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def _backend_params() -> list:
    params = []
    if INTERPRET:
        params.append(pytest.param(("triton", "cpu"), id="triton-interpret"))
    if CUDA:
        params.append(pytest.param(("triton", "cuda"), id="triton-cuda"))
        params.append(pytest.param(("torch", "cuda"), id="torch-cuda"))
    if not params:
        params.append(
            pytest.param(
                ("triton", "cpu"),
                id="triton",
                marks=pytest.mark.skip(reason="triton backend needs CUDA or TRITON_INTERPRET=1"),
            )
        )
    params += [pytest.param(("torch", "cpu"), id="torch-cpu"), pytest.param(("naive", "cpu"), id="naive-cpu")]
    return params


BACKENDS = _backend_params()
TRITON_BACKENDS = [p for p in BACKENDS if p.values[0][0] == "triton"]


def _shape(device: str) -> tuple[int, int, int]:
    """B, L, D: tiny for the interpreter; on CUDA long enough to span several chunks and tiles."""
    return (6, 300, 100) if device == "cuda" else (6, 21, 48)


def _poison(device: str, numel: int) -> None:
    """Leave NaNs in memory the allocator hands out next, so unwritten output elements show up."""
    junk = torch.full((numel,), float("nan"), device=device)
    del junk


def _ragged_mask(batch: int, length: int, device: str) -> torch.Tensor:
    """Row 0 full, row 1 one token, row 2 fully padded, row 3 left-padded with a hole, the rest random."""
    mask = (torch.rand(batch, length) < 0.7).long()
    mask[0] = 1
    mask[1] = 0
    mask[1, 0] = 1
    mask[2] = 0
    mask[3, : length // 2] = 0
    mask[3, length // 2 :] = 1
    mask[3, -2] = 0
    return mask.to(device)


def reference(hidden: torch.Tensor, mask: torch.Tensor, mode: str, normalize: bool) -> torch.Tensor:
    """The definition in float64: masked mean / first token / masked max (first index on ties), then L2."""
    x = hidden.double()
    valid = mask != 0
    count = valid.sum(dim=1, keepdim=True)
    if mode == "mean":
        pooled = (x * valid.unsqueeze(-1)).sum(dim=1) / count.clamp_min(1)
    elif mode == "cls":
        pooled = x[:, 0] * valid[:, :1]
    else:
        first = x.masked_fill(~valid.unsqueeze(-1), float("-inf")).argmax(dim=1, keepdim=True)
        pooled = torch.where(count > 0, x.gather(1, first).squeeze(1), 0.0)
    if normalize:
        pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return pooled


def _check_out(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    assert not actual.isnan().any(), "output has NaN: elements left unwritten"
    tol = OUT_TOL[dtype]
    torch.testing.assert_close(actual.double(), expected.detach(), rtol=tol, atol=tol)


def _check_grad(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    assert not actual.isnan().any(), "gradient has NaN: elements left unwritten"
    # Norms below 1 are compared absolutely: with d = 1 and normalize the gradient is zero in exact arithmetic,
    # and the kernel's fp32 rounding (~1e-7 of the upstream gradient) is not a relative error of 1e-16 values.
    error = (actual.double() - expected).norm() / expected.norm().clamp_min(1.0)
    assert error <= GRAD_TOL[dtype], f"gradient relative error {error:.3g} > {GRAD_TOL[dtype]}"


def _run(
    hidden: torch.Tensor, mask: torch.Tensor, mode: str, normalize: bool, backend: str, out_dtype=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward and backward of `pool` and of the reference with the same random output gradient."""
    hidden = hidden.detach().requires_grad_(True)
    _poison(hidden.device.type, hidden.numel() * 2)
    out = pool(hidden, mask, mode=mode, normalize=normalize, out_dtype=out_dtype, backend=backend)
    g = torch.randn(out.shape, device=out.device).to(out.dtype)
    _poison(hidden.device.type, hidden.numel() * 2)
    (grad,) = torch.autograd.grad(out, hidden, g)
    ref_hidden = hidden.detach().double().requires_grad_(True)
    ref = reference(ref_hidden, mask, mode, normalize)
    (ref_grad,) = torch.autograd.grad(ref, ref_hidden, g.double())
    return out, grad, ref, ref_grad


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("normalize", [True, False], ids=["norm", "raw"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend_device", BACKENDS)
def test_pool_matches_reference(backend_device, mode: str, normalize: bool, dtype: torch.dtype) -> None:
    backend, device = backend_device
    b, length, d = _shape(device)
    hidden = torch.randn(b, length, d, device=device).to(dtype)
    mask = _ragged_mask(b, length, device)
    out, grad, ref, ref_grad = _run(hidden, mask, mode, normalize, backend)
    assert out.shape == (b, d) and out.dtype == dtype and grad.dtype == dtype
    _check_out(out, ref, dtype)
    _check_grad(grad, ref_grad, dtype)
    assert (grad[mask == 0] == 0).all(), "masked positions must get an exact zero gradient"
    assert (out[2] == 0).all(), "a row without valid tokens pools to zeros"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend_device", BACKENDS)
def test_max_ties_go_to_first_index(backend_device, dtype: torch.dtype) -> None:
    """Values from {-2, ..., 2}: most maxima are tied, and the gradient goes to the first valid maximal token."""
    backend, device = backend_device
    b, length, d = _shape(device)
    hidden = torch.randint(-2, 3, (b, length, d), device=device).to(dtype)
    mask = _ragged_mask(b, length, device)
    out, grad, ref, ref_grad = _run(hidden, mask, "max", False, backend)
    _check_out(out, ref, dtype)
    assert (grad.double() == ref_grad).all()
    assert ((grad != 0).sum(dim=1) <= 1).all(), "one token per feature receives the gradient"


@pytest.mark.parametrize("d", [32, 48, 384, 768, 1000])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend_device", BACKENDS)
def test_pool_hidden_sizes(backend_device, mode: str, d: int) -> None:
    backend, device = backend_device
    b, length = (5, 130) if device == "cuda" else (4, 11)
    dtype = torch.bfloat16 if d == 768 else torch.float32
    hidden = torch.randn(b, length, d, device=device).to(dtype)
    mask = _ragged_mask(b, length, device)
    out, grad, ref, ref_grad = _run(hidden, mask, mode, True, backend)
    _check_out(out, ref, dtype)
    _check_grad(grad, ref_grad, dtype)


@pytest.mark.parametrize(
    ("dtype", "out_dtype"), [(torch.bfloat16, torch.float32), (torch.float32, torch.float16)]
)
@pytest.mark.parametrize("backend_device", BACKENDS)
def test_out_dtype(backend_device, dtype: torch.dtype, out_dtype: torch.dtype) -> None:
    backend, device = backend_device
    b, length, d = _shape(device)
    hidden = torch.randn(b, length, d, device=device).to(dtype)
    mask = _ragged_mask(b, length, device)
    out, grad, ref, ref_grad = _run(hidden, mask, "mean", True, backend, out_dtype=out_dtype)
    assert out.dtype == out_dtype and grad.dtype == dtype
    worst = max((dtype, out_dtype), key=OUT_TOL.__getitem__)
    _check_out(out, ref, worst)
    _check_grad(grad, ref_grad, worst)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_bool_mask_and_strided_hidden(backend_device) -> None:
    """A bool mask and a non-contiguous view give what an int mask and a contiguous copy give."""
    backend, device = backend_device
    b, length, d = _shape(device)
    base = torch.randn(length, b, 2 * d, device=device)
    hidden = base.transpose(0, 1)[..., ::2]
    mask = _ragged_mask(b, length, device)
    strided = pool(hidden, mask.bool(), mode="max", backend=backend)
    contiguous = pool(hidden.contiguous(), mask, mode="max", backend=backend)
    torch.testing.assert_close(strided, contiguous, rtol=0, atol=0)
    _check_out(strided, reference(hidden, mask, "max", True), torch.float32)


@pytest.mark.parametrize("d", [1, 768])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend_device", BACKENDS)
def test_single_token_batch(backend_device, mode: str, d: int) -> None:
    """B = L = 1 (and D = 1): the smallest problem, where Triton specializes the sizes equal to 1."""
    backend, device = backend_device
    hidden = torch.randn(1, 1, d, device=device)
    mask = torch.ones(1, 1, dtype=torch.bool, device=device)
    # With D = 1 the normalized output is ±1 and its exact gradient 0: no relative error to measure.
    out, grad, ref, ref_grad = _run(hidden, mask, mode, d > 1, backend)
    _check_out(out, ref, torch.float32)
    _check_grad(grad, ref_grad, torch.float32)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend_device", BACKENDS)
def test_all_rows_empty(backend_device, mode: str) -> None:
    """Zero valid tokens everywhere: zero vectors (normalization included) and zero gradients, no NaN."""
    backend, device = backend_device
    hidden = torch.randn(3, 5, 40, device=device, requires_grad=True)
    mask = torch.zeros(3, 5, dtype=torch.int32, device=device)
    out = pool(hidden, mask, mode=mode, normalize=True, backend=backend)
    (grad,) = torch.autograd.grad(out, hidden, torch.randn_like(out))
    assert (out == 0).all() and (grad == 0).all()


def _packed(lengths: list[int], d: int, device: str, dtype: torch.dtype):
    """Random sequences as (packed [T, D], cu_seqlens, padded [B, L, D], mask [B, L])."""
    batch, width = len(lengths), max(max(lengths), 1)
    hidden = torch.randn(sum(lengths), d, device=device).to(dtype)
    cu = torch.zeros(batch + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths).cumsum(0)
    mask = torch.arange(width) < torch.tensor(lengths).unsqueeze(1)
    padded = torch.randn(batch, width, d).to(dtype).to(device)
    padded[mask.to(device)] = hidden
    return hidden, cu.to(device), padded, mask.to(device)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("normalize", [True, False], ids=["norm", "raw"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend_device", BACKENDS)
def test_varlen_matches_padded(backend_device, mode: str, normalize: bool, dtype: torch.dtype) -> None:
    backend, device = backend_device
    lengths = [5, 0, 1, 17, 3, 9] if device == "cpu" else [150, 0, 1, 301, 64, 65, 7]
    d = 48 if device == "cpu" else 100
    packed, cu, padded, mask = _packed(lengths, d, device, dtype)
    packed.requires_grad_(True)
    padded.requires_grad_(True)
    _poison(device, packed.numel() * 2)
    out = pool_varlen(packed, cu, mode=mode, normalize=normalize, backend=backend)
    g = torch.randn(out.shape, device=device).to(dtype)
    _poison(device, packed.numel() * 2)
    (grad,) = torch.autograd.grad(out, packed, g)
    out_padded = pool(padded, mask, mode=mode, normalize=normalize, backend=backend)
    (grad_padded,) = torch.autograd.grad(out_padded, padded, g)
    torch.testing.assert_close(out, out_padded, rtol=0, atol=0)
    torch.testing.assert_close(grad, grad_padded[mask], rtol=0, atol=0)
    ref_hidden = padded.detach().double().requires_grad_(True)
    ref = reference(ref_hidden, mask, mode, normalize)
    (ref_grad,) = torch.autograd.grad(ref, ref_hidden, g.double())
    _check_out(out, ref, dtype)
    _check_grad(grad, ref_grad[mask], dtype)


@pytest.mark.skipif(
    not CUDA, reason="a host cu_seqlens differs from a device one only when hidden is on CUDA"
)
@pytest.mark.parametrize("backend", ["triton", "torch", "naive"])
def test_varlen_host_cu_seqlens(backend: str) -> None:
    """cu_seqlens built on the CPU (the serving loop's case) gives what a device copy gives."""
    packed, cu, _, _ = _packed([40, 0, 3, 77], 96, "cuda", torch.bfloat16)
    on_host = pool_varlen(packed, cu.cpu(), mode="mean", backend=backend)
    on_device = pool_varlen(packed, cu, mode="mean", backend=backend)
    torch.testing.assert_close(on_host, on_device, rtol=0, atol=0)


@pytest.mark.parametrize("backend_device", TRITON_BACKENDS)
@settings(max_examples=12, deadline=None)
@example(lengths=[12], d=1, mode="mean", normalize=True, seed=11)  # zero gradient in exact arithmetic
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    d=st.integers(1, 130),
    mode=st.sampled_from(MODES),
    normalize=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_shapes(
    backend_device, lengths: list[int], d: int, mode: str, normalize: bool, seed: int
) -> None:
    """Any shape: padded and packed triton pooling agree with the float64 reference, forward and backward."""
    _, device = backend_device
    torch.manual_seed(seed)
    packed, cu, padded, mask = _packed(lengths, d, device, torch.float32)
    out, grad, ref, ref_grad = _run(padded, mask, mode, normalize, "triton")
    _check_out(out, ref, torch.float32)
    _check_grad(grad, ref_grad, torch.float32)
    packed.requires_grad_(True)
    out_varlen = pool_varlen(packed, cu, mode=mode, normalize=normalize, backend="triton")
    (grad_varlen,) = torch.autograd.grad(out_varlen, packed, torch.ones_like(out_varlen))
    (grad_padded,) = torch.autograd.grad(
        pool(padded.requires_grad_(True), mask, mode=mode, normalize=normalize, backend="triton"),
        padded,
        torch.ones_like(out),
    )
    _check_out(out_varlen, ref, torch.float32)
    torch.testing.assert_close(grad_varlen, grad_padded[mask], rtol=0, atol=0)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_autocast_bf16(backend_device) -> None:
    """bf16 autocast leaves pooling alone: same values and gradients as without it."""
    backend, device = backend_device
    b, length, d = _shape(device)
    hidden = torch.randn(b, length, d, device=device, requires_grad=True)
    mask = _ragged_mask(b, length, device)
    weight = torch.randn(d, d, device=device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        states = hidden @ weight
        out = pool(states, mask, backend=backend)
        loss = out.float().square().sum()
    (grad,) = torch.autograd.grad(loss, hidden)
    assert states.dtype == torch.bfloat16 and out.dtype == torch.bfloat16
    expected = pool(states.detach(), mask, backend=backend)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.skipif(not CUDA, reason="the autotuned path runs on CUDA only")
@pytest.mark.parametrize("varlen", [False, True], ids=["padded", "varlen"])
def test_autotuned_path_cuda(varlen: bool) -> None:
    """Past 2**23 elements the launch goes through triton.autotune: every tried config must stay correct."""
    b, length, d = 24, 512, 768
    hidden = torch.randn(b, length, d, device="cuda", dtype=torch.bfloat16)
    mask = _ragged_mask(b, length, "cuda")
    if not varlen:
        out, grad, ref, ref_grad = _run(hidden, mask, "mean", True, "triton")
        _check_out(out, ref, torch.bfloat16)
        _check_grad(grad, ref_grad, torch.bfloat16)
        return
    packed, cu, padded, mask = _packed([length] * b, d, "cuda", torch.bfloat16)
    out = pool_varlen(packed, cu, mode="max", backend="triton")
    _check_out(out, reference(padded, mask, "max", True), torch.bfloat16)


@pytest.mark.skipif(not INTERPRET, reason="forces the autotuned launch among interpreter-sized configs")
@pytest.mark.parametrize("varlen", [False, True], ids=["padded", "varlen"])
@pytest.mark.parametrize("mode", MODES)
def test_first_call_of_a_retune_matches_reference(
    varlen: bool, mode: str, forced_tuning, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The autotuner launches every pooling config on the live output buffers before the winner's launch. The
    outputs must be the winner's alone, on the call that tuned (first) and on a cached call (second): every
    buffer the host allocates is NaN-filled, and the winner is the config benchmarked first, so the loser's
    writes come last."""
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def nan_fill(t: torch.Tensor) -> torch.Tensor:
        return t.fill_(float("nan")) if t.dtype.is_floating_point else t.fill_(-7)

    monkeypatch.setattr(torch, "empty", lambda *a, **k: nan_fill(real_empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: nan_fill(real_empty_like(*a, **k)))
    monkeypatch.setattr(pooling, "_tune", lambda elements: True)
    fwd = [triton.Config({"TILE": t}, num_warps=1) for t in (128, 512)]
    bwd = [triton.Config({"TILE": t, "CHUNK_L": c}, num_warps=1) for t, c in ((512, 4), (128, 16))]
    tuned = {}
    for name, plain, configs in (("_pool_fwd_tuned", pooling._pool_fwd, fwd), ("_pool_bwd_tuned", pooling._pool_bwd, bwd)):
        tuned[name] = triton.autotune(configs=configs, key=pooling._TUNING_KEY)(plain)
        monkeypatch.setattr(pooling, name, tuned[name])
        benchmarked = forced_tuning(tuned[name], configs, lambda config, first=configs[0]: config is first)
    lengths = [5, 0, 1, 17, 3, 9]
    packed, cu, padded, mask = _packed(lengths, 48, "cpu", torch.float32)
    ref_hidden = padded.detach().double().requires_grad_(True)
    for call in range(2):
        g = torch.randn(len(lengths), 48)
        ref = reference(ref_hidden, mask, mode, True)
        (ref_grad,) = torch.autograd.grad(ref, ref_hidden, g.double())
        x = (packed if varlen else padded).detach().requires_grad_(True)
        if varlen:
            out = pool_varlen(x, cu, mode=mode, backend="triton")
        else:
            out = pool(x, mask, mode=mode, backend="triton")
        (grad,) = torch.autograd.grad(out, x, g)
        _check_out(out, ref, torch.float32)
        _check_grad(grad, ref_grad[mask] if varlen else ref_grad, torch.float32)
        assert len(benchmarked) == 4, f"call {call + 1}: both kernels should have tuned once over two configs"
    assert tuned["_pool_fwd_tuned"].best_config is fwd[0] and tuned["_pool_bwd_tuned"].best_config is bwd[0]


def _bad_pool_calls() -> list:
    h = torch.randn(2, 5, 8)
    m = torch.ones(2, 5, dtype=torch.long)
    return [
        pytest.param(lambda: pool(h[0], m), "hidden must be", id="hidden-rank"),
        pytest.param(lambda: pool(h, m[0]), "attention_mask must be", id="mask-rank"),
        pytest.param(lambda: pool(h, m[:, :4]), "attention_mask must be", id="mask-shape"),
        pytest.param(lambda: pool(h, m.float()), "bool or integer", id="mask-dtype"),
        pytest.param(lambda: pool(h, m, mode="sum"), "mode", id="mode"),
        pytest.param(lambda: pool(h, m, backend="cuda"), "backend", id="backend"),
        pytest.param(lambda: pool(h.double(), m, backend="triton"), "float32, bfloat16 or float16", id="dtype"),
        pytest.param(lambda: pool(h.int(), m), "float32, bfloat16 or float16", id="int-dtype"),
        pytest.param(lambda: pool(h, m, out_dtype=torch.int32), "out_dtype", id="out-dtype"),
        pytest.param(lambda: pool(h[:0], m[:0]), "at least one", id="empty-batch"),
        pytest.param(lambda: pool(h[:, :0], m[:, :0]), "at least one", id="no-positions"),
        pytest.param(lambda: pool(h[..., :0], m), "D must be", id="no-features"),
        pytest.param(lambda: pool(h, m.to("meta")), "is on", id="device-mix"),
        pytest.param(lambda: pool_varlen(h, m), "hidden_packed must be", id="varlen-rank"),
        pytest.param(lambda: pool_varlen(h[0], torch.tensor([[0, 5]])), "cu_seqlens must be", id="cu-rank"),
        pytest.param(lambda: pool_varlen(h[0], torch.tensor([0])), "B ≥ 1", id="cu-empty"),
        pytest.param(lambda: pool_varlen(h[0], torch.tensor([0.0, 5.0])), "int32 or int64", id="cu-dtype"),
        pytest.param(lambda: pool_varlen(h[0], torch.tensor([1, 5])), "start at 0", id="cu-start"),
        pytest.param(
            lambda: pool_varlen(h[0], torch.tensor([0, 3, 2, 5])), "non-decreasing", id="cu-decreasing"
        ),
        pytest.param(lambda: pool_varlen(h[0], torch.tensor([0, 2, 4])), "end at T = 5", id="cu-end"),
        pytest.param(
            lambda: pool_varlen(h[0], torch.tensor([0, 5], device="meta")), "is on", id="cu-device-mix"
        ),
        pytest.param(
            lambda: pool_varlen(h[0].to("meta"), torch.tensor([0, 5])), "is on", id="cu-host-for-non-cuda"
        ),
        pytest.param(lambda: pool_varlen(h[0], torch.tensor([0, 5]), mode="mode"), "mode", id="varlen-mode"),
    ]


@pytest.mark.parametrize(("call", "message"), _bad_pool_calls())
def test_bad_input_raises(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_triton_backend_needs_cuda_or_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pooling, "_INTERPRET", False)
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        pool(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.long), backend="triton")


@pytest.mark.parametrize("backend", ["torch", "naive"])
def test_float64_reference_backends_stay_in_float64(backend: str) -> None:
    """float64 through the torch/naive backends (gradient checks of models built on `pool`) keeps full precision."""
    hidden = torch.randn(3, 5, 7, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    out = pool(hidden, mask, backend=backend)
    assert out.dtype == torch.float64
    expected = torch.nn.functional.normalize((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
