"""`nn.Module` wrappers: `Pooler` and `ContrastiveLoss` give what the functions give."""

from __future__ import annotations

import math

import pytest
import torch

from hybridfast.kernels import contrastive_loss, pool, pool_varlen
from hybridfast.kernels.modules import ContrastiveLoss, Pooler


def test_pooler_matches_pool_and_pool_varlen() -> None:
    hidden = torch.randn(3, 6, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]])
    pooler = Pooler("max", normalize=False, backend="torch")
    torch.testing.assert_close(pooler(hidden, mask), pool(hidden, mask, mode="max", normalize=False))
    packed = hidden[mask.bool()]
    cu = torch.tensor([0, 6, 8, 12], dtype=torch.int32)
    expected = pool_varlen(packed, cu, mode="max", normalize=False)
    torch.testing.assert_close(pooler.forward_varlen(packed, cu), expected)
    torch.testing.assert_close(pooler.forward_varlen(packed, cu), pooler(hidden, mask))
    assert "mode='max'" in repr(pooler)


@pytest.mark.parametrize(("kwargs", "message"), [({"mode": "sum"}, "mode"), ({"backend": "cuda"}, "backend")])
def test_pooler_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Pooler(**kwargs)


@pytest.mark.parametrize("learnable", [False, True], ids=["fixed", "learnable"])
def test_contrastive_loss_module(learnable: bool) -> None:
    q = torch.nn.functional.normalize(torch.randn(5, 32), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(15, 32), dim=-1)
    labels = torch.randperm(15)[:5]
    loss_fn = ContrastiveLoss(0.07, learnable_temperature=learnable, symmetric=False, backend="torch")
    loss = loss_fn(q, p, labels=labels)
    expected = contrastive_loss(q, p, labels=labels, temperature=0.07, backend="torch")
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert math.isclose(float(loss_fn.temperature.detach()), 0.07, rel_tol=1e-6)
    assert len(list(loss_fn.parameters())) == int(learnable)
    if learnable:
        loss.backward()
        assert loss_fn.log_temperature.grad is not None and torch.isfinite(loss_fn.log_temperature.grad)


@pytest.mark.parametrize("temperature", [0.0, -0.05, math.nan, math.inf, True, "0.05", None],
                         ids=["zero", "negative", "nan", "inf", "bool", "string", "none"])
def test_contrastive_loss_module_rejects_bad_temperature(temperature: object) -> None:
    with pytest.raises(ValueError, match="temperature must be a positive finite number"):
        ContrastiveLoss(temperature)
