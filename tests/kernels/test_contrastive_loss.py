"""contrastive_loss against an independent float64 reference, on every backend and dtype.

Triton runs on CPU tensors under TRITON_INTERPRET=1 (CI) and compiled on CUDA when a GPU is present.
Output and gradient buffers are poisoned with NaN beforehand (every ``torch.empty``/``empty_like`` the kernels'
host code makes is NaN-filled, and on CUDA the caching allocator is first filled with NaN blocks), so any
element a kernel forgets to write shows up as a NaN in the result.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # a dev extra: GPU images without it still run every other test
    given = settings = st = None
from hybridfast.kernels import contrastive as contrastive_module
from hybridfast.kernels import contrastive_loss

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
HAS_CUDA = torch.cuda.is_available()

DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA and not INTERPRET else [])
BACKENDS = ["naive", "torch", "triton"]
# (loss relative error, gradient relative error by norm)
TOLERANCE = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (2e-2, 2e-2), torch.float16: (1e-2, 2e-2)}


def _skip_unsupported(backend: str, device: str) -> None:
    if backend == "triton" and device == "cpu" and not INTERPRET:
        pytest.skip("triton on CPU tensors needs TRITON_INTERPRET=1 (set before import)")


def reference_losses(
    q: torch.Tensor,
    p: torch.Tensor,
    labels: torch.Tensor,
    tau: torch.Tensor,
    group_ids: tuple[torch.Tensor, torch.Tensor] | None,
    symmetric: bool,
) -> torch.Tensor:
    """Per-query losses in float64, straight from the definitions (independent of the library's naive path)."""
    logits = (q.double() @ p.double().t()) / tau
    m = q.shape[0]
    rows = torch.arange(m, device=q.device)
    kept = torch.ones_like(logits, dtype=torch.bool)
    if group_ids is not None:
        kept = group_ids[0][:, None] != group_ids[1][None, :]
        kept[rows, labels] = True
    positive = logits[rows, labels]
    row_loss = torch.logsumexp(logits.masked_fill(~kept, float("-inf")), dim=1) - positive
    if not symmetric:
        return row_loss
    column_values = logits[:, labels].masked_fill(~kept[:, labels], float("-inf"))
    col_loss = torch.logsumexp(column_values, dim=0) - positive
    return 0.5 * (row_loss + col_loss)


def _inputs(m: int, n: int, d: int, dtype: torch.dtype, device: str, normalized: bool, seed: int):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(m, d, generator=gen, dtype=torch.float64)
    p = torch.randn(n, d, generator=gen, dtype=torch.float64)
    if normalized:
        q = torch.nn.functional.normalize(q, dim=1)
        p = torch.nn.functional.normalize(p, dim=1)
    else:
        q = q * 0.4
        p = p * 0.4
    labels = torch.randperm(n, generator=gen)[:m] if n >= m else torch.randint(0, n, (m,), generator=gen)
    return q.to(device, dtype), p.to(device, dtype), labels.to(device), gen


@pytest.fixture
def poison(monkeypatch: pytest.MonkeyPatch):
    """NaN-fill every buffer the host code allocates with torch.empty / torch.empty_like; on CUDA also the
    caching allocator's free blocks."""
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def nan_fill(t: torch.Tensor) -> torch.Tensor:
        if t.dtype.is_floating_point:
            t.fill_(float("nan"))
        return t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: nan_fill(real_empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: nan_fill(real_empty_like(*a, **k)))
    if HAS_CUDA and not INTERPRET:
        blocks = [torch.full((1 << 20,), float("nan"), device="cuda") for _ in range(64)]
        del blocks
    return nan_fill


def _check(
    q: torch.Tensor,
    p: torch.Tensor,
    labels: torch.Tensor,
    *,
    backend: str,
    temperature: float = 0.5,
    group_ids: tuple[torch.Tensor, torch.Tensor] | None = None,
    symmetric: bool = False,
    reduction: str = "none",
    tolerance: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Loss and gradients (q, p, τ) of one call against the float64 reference; returns the losses."""
    loss_tol, grad_tol = tolerance or TOLERANCE[q.dtype]
    qx = q.detach().clone().requires_grad_()
    px = p.detach().clone().requires_grad_()
    tau = torch.tensor(temperature, device=q.device, requires_grad=True)
    out = contrastive_loss(qx, px, labels=labels, temperature=tau, group_ids=group_ids,
                           symmetric=symmetric, reduction=reduction, backend=backend)
    q64 = q.detach().double().requires_grad_()
    p64 = p.detach().double().requires_grad_()
    tau64 = torch.tensor(temperature, dtype=torch.float64, device=q.device, requires_grad=True)
    ref = reference_losses(q64, p64, labels, tau64, group_ids, symmetric)
    ref = {"mean": ref.mean(), "sum": ref.sum(), "none": ref}[reduction]
    assert out.shape == ref.shape
    assert torch.isfinite(out).all()
    weights = torch.rand(ref.shape, dtype=torch.float64, device=q.device) + 0.5
    grads = torch.autograd.grad((out.double() * weights).sum(), [qx, px, tau])
    ref_grads = torch.autograd.grad((ref * weights).sum(), [q64, p64, tau64])
    scale = ref.abs().max().clamp_min(1.0)
    assert ((out.double() - ref).abs().max() / scale).item() <= loss_tol
    for name, g, r in zip(("dq", "dp", "dtau"), grads, ref_grads, strict=True):
        assert torch.isfinite(g).all(), f"{name} has NaN/inf (unwritten buffer?)"
        err = ((g.double() - r).norm() / r.norm().clamp_min(1e-12)).item()
        assert err <= grad_tol, f"{name}: relative error {err:.2e} > {grad_tol:.0e}"
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("symmetric", [False, True])
def test_matches_reference(backend: str, device: str, dtype: torch.dtype, symmetric: bool, poison) -> None:
    _skip_unsupported(backend, device)
    m, n, d = (37, 45, 48) if device == "cpu" else (300, 1024, 384)
    normalized = dtype != torch.float32
    q, p, labels, _ = _inputs(m, n, d, dtype, device, normalized, seed=hash((backend, str(dtype), symmetric)) % 997)
    tolerance = TOLERANCE[dtype]
    if backend == "naive" and dtype != torch.float32:
        # The naive baseline rounds the logits to the input dtype before the softmax.
        tolerance = (5e-2, 5e-2)
    _check(q, p, labels, backend=backend, temperature=0.5 if not normalized else 0.05,
           symmetric=symmetric, tolerance=tolerance)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("d", [32, 48, 384, 768, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_embedding_sizes(backend: str, device: str, d: int, dtype: torch.dtype, poison) -> None:
    _skip_unsupported(backend, device)
    shapes = [(5, 9)] if device == "cpu" else [(1, 1), (37, 300), (1024, 1024)]
    for i, (m, n) in enumerate(shapes):
        q, p, labels, _ = _inputs(m, n, d, dtype, device, normalized=True, seed=d + i)
        _check(q, p, labels, backend=backend, temperature=0.05)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("grouping", ["random", "lonely"])
def test_hard_negatives_with_group_masking(
    backend: str, device: str, symmetric: bool, grouping: str, poison
) -> None:
    """N = 3M + 1 candidates and random labels. "lonely": every candidate is in group 0, so queries of group 0
    keep only their positive (loss 0 one-directionally) while the others keep everything."""
    _skip_unsupported(backend, device)
    m = 13 if device == "cpu" else 300
    n, d = 3 * m + 1, 40
    q, p, labels, gen = _inputs(m, n, d, torch.float32, device, normalized=False, seed=7)
    group_q = torch.randint(0, 4, (m,), generator=gen)
    group_p = torch.randint(0, 4, (n,), generator=gen)
    if grouping == "lonely":
        group_p.zero_()
        group_q[:3] = 0
        group_q[3:] = torch.randint(1, 4, (m - 3,), generator=gen)
    groups = (group_q.to(device), group_p.to(device))
    losses = _check(q, p, labels, backend=backend, group_ids=groups, symmetric=symmetric)
    if grouping == "lonely" and not symmetric:
        assert losses[:3].abs().max().item() <= 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_tf32_mode(device: str, poison) -> None:
    """allow_tf32 trades float32 dot-product precision for speed in the fused kernels: ≤ 1e-3 relative."""
    _skip_unsupported("triton", device)
    m, n, d = (9, 21, 40) if device == "cpu" else (300, 1024, 768)
    q, p, labels, _ = _inputs(m, n, d, torch.float32, device, normalized=True, seed=31)
    out = contrastive_loss(q, p, labels=labels, backend="triton", allow_tf32=True, reduction="none")
    ref = reference_losses(q, p, labels, torch.tensor(0.05, dtype=torch.float64), None, False)
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions(backend: str, reduction: str, poison) -> None:
    _skip_unsupported(backend, "cpu")
    q, p, labels, _ = _inputs(17, 20, 24, torch.float32, "cpu", normalized=False, seed=3)
    out = _check(q, p, labels, backend=backend, reduction=reduction)
    assert out.dim() == (1 if reduction == "none" else 0)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_single_query_and_default_labels(backend: str, poison) -> None:
    _skip_unsupported(backend, "cpu")
    q, p, _, _ = _inputs(1, 19, 33, torch.float32, "cpu", normalized=False, seed=11)
    _check(q, p, torch.zeros(1, dtype=torch.int64), backend=backend)
    q, p, _, _ = _inputs(6, 6, 16, torch.float32, "cpu", normalized=False, seed=12)
    default = contrastive_loss(q, p, backend=backend)
    explicit = contrastive_loss(q, p, labels=torch.arange(6), backend=backend)
    assert torch.equal(default, explicit)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_several_row_chunks_and_column_splits(
    backend: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch, poison
) -> None:
    """A tiny buffer budget forces several backward row chunks (and the torch forward's chunks)."""
    _skip_unsupported(backend, "cpu")
    m, n = 40, 70
    monkeypatch.setattr(contrastive_module, "BUFFER_BYTES", contrastive_module.ROW_ALIGN * n * 2)
    q, p, labels, gen = _inputs(m, n, 24, dtype, "cpu", normalized=True, seed=5)
    groups = (torch.randint(0, 3, (m,), generator=gen), torch.randint(0, 3, (n,), generator=gen))
    _check(q, p, labels, backend=backend, temperature=0.05, group_ids=groups, symmetric=True)


@pytest.mark.skipif(not INTERPRET, reason="swaps the interpreter's single config; compiled kernels autotune")
@pytest.mark.parametrize(("grouped", "symmetric"), [(False, False), (True, False), (False, True), (True, True)])
def test_taller_row_block(grouped: bool, symmetric: bool, monkeypatch: pytest.MonkeyPatch, poison) -> None:
    """A row block twice the row alignment (the 256-row GPU configs' case, scaled to the interpreter): the grids
    follow the config's BLOCK_M, half-filled symmetric column statistics merge correctly, and row tails stay
    unstored. Several row chunks and column splits as well."""
    config = contrastive_module._config(2 * contrastive_module.ROW_ALIGN, 16, 16, 4, 1)
    for kernel in (contrastive_module._forward_kernel, contrastive_module._grad_scores_kernel):
        monkeypatch.setattr(kernel, "configs", [config])
        monkeypatch.setattr(kernel, "cache", {})
    m, n = 100, 70  # three full 32-row blocks and a 4-row tail; fp32 backward row chunks of 64 rows
    monkeypatch.setattr(contrastive_module, "BUFFER_BYTES", 4 * contrastive_module.ROW_ALIGN * n * 4)
    q, p, labels, gen = _inputs(m, n, 24, torch.float32, "cpu", normalized=True, seed=31)
    groups = (torch.randint(0, 3, (m,), generator=gen), torch.randint(0, 3, (n,), generator=gen)) if grouped else None
    _check(q, p, labels, backend="triton", temperature=0.05, group_ids=groups, symmetric=symmetric)


def test_new_configs_fall_back_to_proven_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config newer than the GPU runs so far that fails to compile is dropped with a warning; a failure with only
    proven configs is raised."""
    proven = contrastive_module._config(128, 128, 64, 8, 3)
    new = [contrastive_module._config(256, 128, 64, 16, 3), contrastive_module._config(128, 128, 64, 8, 3, 128)]

    class Kernel:
        configs = [proven, *new]
        cache = {"key": "stale"}

    calls = []

    def launch() -> None:
        calls.append(list(Kernel.configs))
        if len(Kernel.configs) > 1:
            raise RuntimeError("ptxas: too many resources")

    with pytest.warns(RuntimeWarning, match="dropping the configs"):
        contrastive_module._launch_falling_back(Kernel, launch)
    assert Kernel.configs == [proven] and Kernel.cache == {} and len(calls) == 2

    def always_fails() -> None:
        raise RuntimeError("broken kernel")

    with pytest.raises(RuntimeError, match="broken kernel"):
        contrastive_module._launch_falling_back(Kernel, always_fails)


def test_repeated_labels_symmetric(poison) -> None:
    """Two queries sharing a positive: each keeps its own term and both stay in the column denominator."""
    q, p, _, _ = _inputs(8, 10, 16, torch.float32, "cpu", normalized=False, seed=21)
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 9, 4])
    for backend in BACKENDS:
        if backend == "triton" and not INTERPRET:
            continue
        _check(q, p, labels, backend=backend, symmetric=True)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_two_calls_in_one_step(backend: str) -> None:
    _skip_unsupported(backend, "cpu")
    q, p, labels, _ = _inputs(11, 15, 20, torch.float32, "cpu", normalized=False, seed=8)
    qx, px = q.clone().requires_grad_(), p.clone().requires_grad_()
    tau = torch.tensor(0.3, requires_grad=True)
    total = contrastive_loss(qx, px, labels=labels, temperature=tau, backend=backend)
    total = total + contrastive_loss(px[:11], qx, temperature=tau, symmetric=True, backend=backend)
    total.backward()
    q64, p64 = q.double().requires_grad_(), p.double().requires_grad_()
    tau64 = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    ref = reference_losses(q64, p64, labels, tau64, None, False).mean()
    ref = ref + reference_losses(p64[:11], q64, torch.arange(11), tau64, None, True).mean()
    ref.backward()
    assert abs(total.item() - ref.item()) <= 1e-5 * abs(ref.item())
    for g, r in ((qx.grad, q64.grad), (px.grad, p64.grad), (tau.grad, tau64.grad)):
        assert ((g.double() - r).norm() / r.norm()).item() <= 1e-4


@pytest.mark.parametrize("backend", ["naive", "torch", "triton"])
def test_bf16_autocast(backend: str) -> None:
    _skip_unsupported(backend, "cpu")
    q, p, labels, _ = _inputs(12, 18, 32, torch.float32, "cpu", normalized=True, seed=9)
    qx, px = q.clone().requires_grad_(), p.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = contrastive_loss(qx @ torch.eye(32), px, labels=labels, backend=backend)
    loss.backward()
    assert loss.dtype == torch.float32 and qx.grad is not None and qx.grad.dtype == torch.float32
    q64, p64 = q.bfloat16().double().requires_grad_(), p.bfloat16().double().requires_grad_()
    ref = reference_losses(q64, p64, labels, torch.tensor(0.05, dtype=torch.float64), None, False).mean()
    ref.backward()
    assert abs(loss.item() - ref.item()) <= 5e-2 * abs(ref.item())
    assert ((qx.grad.double() - q64.grad).norm() / q64.grad.norm()).item() <= 5e-2
    assert ((px.grad.double() - p64.grad).norm() / p64.grad.norm()).item() <= 5e-2


@pytest.mark.skipif(given is None, reason="hypothesis is not installed (pip install -e '.[dev]')")
def test_property_shapes() -> None:
    """Random shapes, labels, masks and directions against the float64 reference."""
    backend = "triton" if INTERPRET or HAS_CUDA else "torch"
    device = "cuda" if HAS_CUDA and not INTERPRET else "cpu"

    @settings(max_examples=6, deadline=None)
    @given(m=st.integers(1, 24), extra=st.integers(0, 16), d=st.integers(1, 40), symmetric=st.booleans(),
           grouped=st.booleans(), seed=st.integers(0, 2**16))
    def check(m: int, extra: int, d: int, symmetric: bool, grouped: bool, seed: int) -> None:
        n = m + extra
        q, p, labels, gen = _inputs(m, n, d, torch.float32, device, normalized=False, seed=seed)
        groups = None
        if grouped:
            groups = (torch.randint(0, 3, (m,), generator=gen).to(device),
                      torch.randint(0, 3, (n,), generator=gen).to(device))
        _check(q, p, labels, backend=backend, group_ids=groups, symmetric=symmetric)

    check()


def _bad_cases() -> list[tuple[str, dict]]:
    q, p = torch.randn(4, 8), torch.randn(6, 8)
    return [
        ("mismatched d", {"q": q, "p": torch.randn(6, 7)}),
        ("1-D q", {"q": torch.randn(8), "p": p}),
        ("3-D p", {"q": q, "p": torch.randn(2, 3, 8)}),
        ("empty batch", {"q": torch.randn(0, 8), "p": p}),
        ("empty d", {"q": torch.randn(4, 0), "p": torch.randn(6, 0)}),
        ("integer inputs", {"q": q.long(), "p": p.long()}),
        ("labels out of range", {"q": q, "p": p, "labels": torch.tensor([0, 1, 2, 6])}),
        ("negative label", {"q": q, "p": p, "labels": torch.tensor([0, -1, 2, 3])}),
        ("labels wrong shape", {"q": q, "p": p, "labels": torch.tensor([0, 1, 2])}),
        ("float labels", {"q": q, "p": p, "labels": torch.tensor([0.0, 1.0, 2.0, 3.0])}),
        ("default labels with N < M", {"q": torch.randn(7, 8), "p": p}),
        ("group ids not a pair", {"q": q, "p": p, "group_ids": torch.zeros(4, dtype=torch.long)}),
        ("query groups wrong shape", {"q": q, "p": p, "group_ids": (torch.zeros(3).long(), torch.zeros(6).long())}),
        ("candidate groups wrong shape",
         {"q": q, "p": p, "group_ids": (torch.zeros(4).long(), torch.zeros(5).long())}),
        ("zero temperature", {"q": q, "p": p, "temperature": 0.0}),
        ("negative temperature", {"q": q, "p": p, "temperature": -0.1}),
        ("nan temperature", {"q": q, "p": p, "temperature": float("nan")}),
        ("inf temperature", {"q": q, "p": p, "temperature": float("inf")}),
        ("bool temperature", {"q": q, "p": p, "temperature": True}),
        ("numpy bool temperature", {"q": q, "p": p, "temperature": np.bool_(True)}),
        ("numpy negative temperature", {"q": q, "p": p, "temperature": np.float32(-0.05)}),
        ("numpy array temperature", {"q": q, "p": p, "temperature": np.array([0.05, 0.1])}),
        ("string temperature", {"q": q, "p": p, "temperature": "0.05"}),
        ("vector temperature", {"q": q, "p": p, "temperature": torch.ones(2)}),
        ("zero tensor temperature", {"q": q, "p": p, "temperature": torch.tensor(0.0)}),
        ("negative tensor temperature", {"q": q, "p": p, "temperature": torch.tensor(-0.05)}),
        ("nan tensor temperature", {"q": q, "p": p, "temperature": torch.tensor(float("nan"))}),
        ("inf tensor temperature", {"q": q, "p": p, "temperature": torch.tensor(float("inf"))}),
        ("bool tensor temperature", {"q": q, "p": p, "temperature": torch.tensor(True)}),
        ("integer tensor temperature", {"q": q, "p": p, "temperature": torch.tensor(1)}),
        ("complex tensor temperature", {"q": q, "p": p, "temperature": torch.tensor(0.05 + 0j)}),
        ("bad reduction", {"q": q, "p": p, "reduction": "max"}),
        ("bad backend", {"q": q, "p": p, "backend": "cuda"}),
        ("not a tensor", {"q": [[1.0]], "p": p}),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_raises_value_error(case: tuple[str, dict]) -> None:
    name, kwargs = case
    q, p = kwargs.pop("q"), kwargs.pop("p")
    with pytest.raises(ValueError, match="temperature" if "temperature" in name else None):
        contrastive_loss(q, p, backend=kwargs.pop("backend", "torch"), **kwargs)


@pytest.mark.parametrize("temperature", [np.float32(0.25), np.float64(0.25), np.int64(1), torch.tensor([0.25]),
                                         torch.tensor(0.25, dtype=torch.float64)], ids=repr)
def test_temperature_forms(temperature: object) -> None:
    """numpy scalars count by value; a one-element floating tensor of any shape or precision is a scalar."""
    q, p, labels, _ = _inputs(5, 9, 16, torch.float32, "cpu", normalized=False, seed=2)
    expected = contrastive_loss(q, p, labels=labels, temperature=float(temperature), backend="torch")
    assert torch.equal(contrastive_loss(q, p, labels=labels, temperature=temperature, backend="torch"), expected)


@pytest.mark.skipif(not HAS_CUDA or INTERPRET, reason="the device-side temperature check runs on CUDA")
@pytest.mark.parametrize("value", ["0.0", "-0.05", "float('nan')", "float('inf')"])
def test_cuda_tensor_temperature_fails_on_device(value: str) -> None:
    """A CUDA temperature is checked by a device assert (no host sync); it fails at the next sync, in a child
    process because a failed device assert leaves the CUDA context unusable."""
    import subprocess
    import sys

    code = ("import torch\nfrom hybridfast.kernels import contrastive_loss\n"
            "q = torch.randn(8, 16, device='cuda'); p = torch.randn(8, 16, device='cuda')\n"
            f"tau = torch.tensor({value}, device='cuda')\n"
            "loss = contrastive_loss(q, p, temperature=tau, backend='triton')\n"
            "torch.cuda.synchronize()\nprint('NO ERROR', loss.item())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "NO ERROR" not in done.stdout
    assert "temperature must be finite and positive" in done.stderr or "device-side assert" in done.stderr


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device to mix devices")
def test_device_mix_raises_value_error() -> None:
    with pytest.raises(ValueError, match="on"):
        contrastive_loss(torch.randn(4, 8, device="cuda"), torch.randn(6, 8))
    with pytest.raises(ValueError, match="labels"):
        contrastive_loss(torch.randn(4, 8, device="cuda"), torch.randn(6, 8, device="cuda"), labels=torch.arange(4))


def test_auto_backend_policy() -> None:
    from hybridfast.kernels import functional

    class FakeCuda:
        is_cuda = True

        def __init__(self, rows: int) -> None:
            self.shape = (rows, 8)

    limit = functional.AUTO_NAIVE_MAX_LOGITS
    assert functional._resolve_backend("auto", torch.randn(4, 8), 6) == "torch"
    assert functional._resolve_backend("auto", FakeCuda(4096), limit // 4096) == "naive"
    assert functional._resolve_backend("auto", FakeCuda(4096), limit // 4096 + 1) == "triton"
    if HAS_CUDA:  # a small problem under "auto" is the naive path, bit for bit
        q, p = torch.randn(6, 8, device="cuda"), torch.randn(9, 8, device="cuda")
        assert torch.equal(contrastive_loss(q, p, backend="naive"), contrastive_loss(q, p, backend="auto"))


def test_triton_on_cpu_without_interpreter_raises() -> None:
    if INTERPRET:
        pytest.skip("the interpreter runs triton on CPU tensors")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        contrastive_loss(torch.randn(4, 8), torch.randn(6, 8), backend="triton")


@pytest.mark.skipif(not HAS_CUDA or INTERPRET, reason="CUDA events time the compiled kernels")
@pytest.mark.parametrize("buffer_bytes", [None, 1 << 20], ids=["one-chunk", "chunks"])
def test_stage_breakdown_cuda(buffer_bytes: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench kernels --breakdown`: every backward stage is timed; the one-chunk path has no dP accumulation."""
    from hybridfast.kernels.benchmark import bench_breakdown

    if buffer_bytes:
        monkeypatch.setattr(contrastive_module, "BUFFER_BYTES", buffer_bytes)
    default = contrastive_module.DP_ACCUMULATE
    rows = bench_breakdown(1024, 64, torch.bfloat16, "cuda", 2, 700.0)
    base = rows[0]
    assert base["status"] == "ok", base
    stages = base["stages_ms"]
    assert {"forward", "dS kernel", "dQ matmul"} <= stages.keys()
    assert ("dP accumulate" in stages) == bool(buffer_bytes)
    assert ("dP matmul" in stages) == (not buffer_bytes)
    assert all(v >= 0 for v in stages.values())
    assert contrastive_module.DP_ACCUMULATE == default  # the variant run restores the default


@pytest.mark.skipif(not (INTERPRET or HAS_CUDA), reason="triton needs CUDA or TRITON_INTERPRET=1")
@pytest.mark.parametrize(("grouped", "symmetric"), [(False, True), (True, True), (True, False)])
def test_first_call_of_a_retune_picking_the_taller_row_block(
    grouped: bool, symmetric: bool, forced_tuning, poison
) -> None:
    """Triton's autotuner runs every config on the live buffers before the winner's launch. Two configs differing
    only in the row block, the shorter one benchmarked first and the taller one made to win: the FIRST call (the
    one that tuned) must already match float64, so no config may leave state the winner does not overwrite.
    On CUDA with the GPU configs (128 and 256 rows over four warpgroups) at bf16, d = 768."""
    align = contrastive_module.ROW_ALIGN
    if INTERPRET:
        short, tall = (contrastive_module._config(rows, 16, 16, 4, 1) for rows in (align, 2 * align))
        m, n, d, dtype, device = 100, 70, 24, torch.float32, "cpu"  # 7 statistics slots; 32-row blocks own 4
    else:
        short, tall = contrastive_module._config(128, 128, 64, 8, 3), contrastive_module._config(256, 128, 64, 16, 3)
        m, n, d, dtype, device = 700, 1500, 768, torch.bfloat16, "cuda"  # 6 slots; 256-row blocks own 3
    kernels = (contrastive_module._forward_kernel, contrastive_module._grad_scores_kernel)
    for kernel in kernels:
        benchmarked = forced_tuning(kernel, [short, tall], lambda config: config is tall)
    q, p, labels, gen = _inputs(m, n, d, dtype, device, normalized=True, seed=41)
    groups = None
    if grouped:
        groups = (torch.randint(0, 3, (m,), generator=gen).to(device), torch.randint(0, 3, (n,), generator=gen).to(device))
    _check(q, p, labels, backend="triton", temperature=0.05, group_ids=groups, symmetric=symmetric)
    assert benchmarked == [short, tall] * 2, "both kernels should have tuned over both configs"
    assert all(kernel.best_config is tall for kernel in kernels)
    # The second call runs the cached winner alone, on fresh (poisoned) buffers.
    _check(q, p, labels, backend="triton", temperature=0.05, group_ids=groups, symmetric=symmetric)
    assert len(benchmarked) == 4


@pytest.mark.skipif(not INTERPRET, reason="counts the interpreter's kernel launches")
@pytest.mark.parametrize(("symmetric", "budget"), [(False, 10), (True, 20)])
def test_launch_budget_of_a_fused_step(symmetric: bool, budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused step is host-bound at small shapes (each launch costs the host ~5-40 µs): one forward + backward
    with a float temperature, default labels and a mean must stay within a fixed number of device operations
    (ATen ops that launch work, Triton launches), and the temperature must not be copied from the host."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from triton.runtime import interpreter

    metadata_only = {"empty", "empty_like", "empty_strided", "view", "reshape", "_reshape_alias", "t", "transpose",
                     "expand", "as_strided", "detach", "alias", "slice", "select", "unsqueeze", "squeeze",
                     "_unsafe_view", "lift_fresh", "promote_types"}
    device_ops: list[str] = []
    in_kernel = []

    class CountOps(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name not in metadata_only and not in_kernel:  # the interpreter's own copies are no launches
                device_ops.append(name)
            return func(*args, **(kwargs or {}))

    real_run = interpreter.InterpretedFunction.run

    def run(self, *args, **kwargs):
        device_ops.append(self.fn.__name__)
        in_kernel.append(True)
        try:
            return real_run(self, *args, **kwargs)
        finally:
            in_kernel.pop()

    monkeypatch.setattr(interpreter.InterpretedFunction, "run", run)
    q, p, _, _ = _inputs(40, 40, 16, torch.float32, "cpu", normalized=True, seed=3)
    q.requires_grad_()
    p.requires_grad_()
    with CountOps():
        loss = contrastive_loss(q, p, temperature=0.05, symmetric=symmetric, backend="triton")
        torch.autograd.grad(loss, (q, p))
    assert "_forward_kernel" in device_ops and "_grad_scores_kernel" in device_ops
    assert "copy_" not in device_ops and "_to_copy" not in device_ops, device_ops
    assert len(device_ops) <= budget, f"{len(device_ops)} device operations: {device_ops}"
