"""CPU int8 inference (hybridfast.quantization): per-token activation x per-channel weight scales."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hybridfast import quantization
from hybridfast.encoder import FusedEncoder
from hybridfast.errors import HybridfastError
from hybridfast.quantization import Int8Linear, int8_linear_reference, quantize_int8
from hybridfast.serve.baseline import UnfusedEncoder

TEXTS = [
    "Where is the river Rhine?",
    "Der Rhein fließt durch Deutschland und die Niederlande in die Nordsee.",
    "莱茵河在哪里？",
    "Где находится река Рейн? Она течёт через Германию и Нидерланды. " * 3,
    "x",
]


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def _float64_bound(x: torch.Tensor, linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 y = x·Wᵀ + b and the rounding bound of per-token × per-channel int8: each operand element is off
    by at most half a step (max|row| / 254), so |Δy| ≤ Σ_k (|x|·δw + δx·|w| + δx·δw)."""
    x64, w64 = x.double().reshape(-1, x.shape[-1]), linear.weight.double()
    reference = x64 @ w64.t() + (0 if linear.bias is None else linear.bias.double())
    dx = x64.abs().amax(dim=1, keepdim=True) / 254
    dw = w64.abs().amax(dim=1) / 254
    bound = x64.abs().sum(1, keepdim=True) * dw + dx * w64.abs().sum(1) + dx * dw * x.shape[-1]
    return reference, bound * 1.01 + 1e-5


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 3, 40])
def test_int8_linear_within_rounding_bound_of_float64(bias, rows):
    torch.manual_seed(rows)
    linear = nn.Linear(48, 20, bias=bias)
    x = torch.randn(rows, 2, 48) * torch.rand(rows, 2, 1) * 10  # rows of very different scale
    x[0, 0, 5] = 40.0  # an outlier token: per-token scales keep the other rows fine
    out = torch.full((rows, 2, 20), float("nan"))
    out.copy_(Int8Linear(linear)(x))
    reference, bound = _float64_bound(x, linear)
    assert out.dtype == torch.float32 and out.shape == (rows, 2, 20)
    assert bool(((out.reshape(-1, 20).double() - reference).abs() <= bound).all())
    assert not torch.equal(out, linear(x))  # really quantized


def test_compiled_and_eager_int8_agree():
    torch.manual_seed(0)
    linear = Int8Linear(nn.Linear(32, 16))
    x = torch.randn(5, 7, 32)
    eager = int8_linear_reference(x, linear.weight_int8_t, linear.weight_scale, linear.bias)
    torch.testing.assert_close(linear(x), eager, rtol=1e-5, atol=1e-5)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(quantization, "_compiled", broken)
    linear = Int8Linear(nn.Linear(8, 4))
    x = torch.randn(3, 8)
    with pytest.warns(UserWarning, match="eagerly"):
        out = linear(x)
    torch.testing.assert_close(out, int8_linear_reference(x, linear.weight_int8_t, linear.weight_scale, linear.bias))


def test_quantized_encoder_layers_and_closeness(tiny_model_dir):
    reference = UnfusedEncoder.from_pretrained(tiny_model_dir).encode(TEXTS, "passage")
    encoder = FusedEncoder.from_pretrained(tiny_model_dir, device="cpu", quantize="int8")
    assert encoder.quantized == "int8" and encoder.quantization == quantization.SCHEME
    assert not any(isinstance(m, nn.Linear) for m in encoder.model.modules())
    assert isinstance(encoder.model.encoder.layer[0].output.dense, Int8Linear)
    out = encoder.encode_passages(TEXTS)
    assert _min_cosine(out, reference) >= 0.999
    with pytest.raises(HybridfastError, match="cannot be saved"):
        encoder.save_pretrained("/nonexistent/never-written")


def test_quantized_and_compiled_encoder(tiny_model_dir):
    reference = UnfusedEncoder.from_pretrained(tiny_model_dir).encode(TEXTS, "passage")
    encoder = FusedEncoder.from_pretrained(tiny_model_dir, device="cpu", quantize="int8", compile=True)
    assert _min_cosine(encoder.encode_passages(TEXTS), reference) >= 0.999


def test_quantize_int8_rejects_non_float32(tiny_model_dir):
    encoder = FusedEncoder.from_pretrained(tiny_model_dir, device="cpu", dtype="bfloat16")
    with pytest.raises(HybridfastError, match="float32"):
        quantize_int8(encoder.model)
