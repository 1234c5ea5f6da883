"""The fused sentence-transformers losses against ST's own, in float64: MultipleNegativesRankingLoss on random
embeddings (value and gradients, with and without hard negatives, symmetric), CachedMultipleNegativesRankingLoss
on a tiny model (value and parameter gradients, dropout on), group masking against a reference written from the
definition, and the scale ↔ temperature conversion."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.util import cos_sim, dot_score
from st_helpers import load_st_model

from hybridfast.integrations.sentence_transformers import (
    CachedFusedMultipleNegativesRankingLoss,
    FusedMultipleNegativesRankingLoss,
)

TOL = {"rtol": 1e-12, "atol": 1e-12}
SYMMETRIC = {"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"}


@pytest.fixture(scope="module")
def model(st_model_dir):
    return load_st_model(st_model_dir)


def _columns(batch: int, negatives: int, dim: int = 16, seed: int = 0, norm: float = 1.0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [(norm * torch.randn(batch, dim, generator=gen, dtype=torch.float64)).requires_grad_()
            for _ in range(2 + negatives)]


def _value_and_grads(loss_fn, columns: list[torch.Tensor], labels=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves = [c.detach().clone().requires_grad_() for c in columns]
    value = loss_fn(leaves, labels)
    grads = torch.autograd.grad(value, leaves)
    return value.detach(), list(grads)


def _assert_same(ours, theirs) -> None:
    torch.testing.assert_close(ours[0], theirs[0], **TOL)
    for got, want in zip(ours[1], theirs[1], strict=True):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("negatives", [0, 2], ids=["pairs", "2-hard-negatives"])
@pytest.mark.parametrize("symmetric", [False, True], ids=["infonce", "symmetric"])
@pytest.mark.parametrize("scale", [20.0, 13.7])
def test_equals_st_mnrl_on_random_embeddings(model, negatives: int, symmetric: bool, scale: float) -> None:
    columns = _columns(batch=7, negatives=negatives, seed=negatives + 10 * symmetric)
    variant = SYMMETRIC if symmetric else {}
    theirs = MultipleNegativesRankingLoss(model, scale=scale, **variant)
    ours = FusedMultipleNegativesRankingLoss(model, scale=scale, **variant)
    _assert_same(_value_and_grads(ours.compute_loss_from_embeddings, columns),
                 _value_and_grads(theirs.compute_loss_from_embeddings, columns))
    # symmetric=True is the same loss as ST's directions spelling.
    if symmetric:
        short = FusedMultipleNegativesRankingLoss(model, scale=scale, symmetric=True)
        _assert_same(_value_and_grads(short.compute_loss_from_embeddings, columns),
                     _value_and_grads(theirs.compute_loss_from_embeddings, columns))


@pytest.mark.parametrize("backend", ["naive", "torch"])
def test_dot_score_equals_st_mnrl(model, backend: str) -> None:
    columns = _columns(batch=5, negatives=1, seed=3, norm=0.3)
    theirs = MultipleNegativesRankingLoss(model, scale=1.0, similarity_fct=dot_score)
    ours = FusedMultipleNegativesRankingLoss(model, scale=1.0, similarity_fct=dot_score, backend=backend)
    _assert_same(_value_and_grads(ours.compute_loss_from_embeddings, columns),
                 _value_and_grads(theirs.compute_loss_from_embeddings, columns))


@pytest.mark.parametrize("scale", [20.0, 1 / 0.07, 31.4159, 16.0])
def test_scale_and_temperature_convert_exactly(model, scale: float) -> None:
    by_scale = FusedMultipleNegativesRankingLoss(model, scale=scale)
    tau = 1.0 / scale
    by_temperature = FusedMultipleNegativesRankingLoss(model, temperature=tau)
    assert by_scale.scale == scale and by_scale.temperature == 1.0 / scale
    assert by_temperature.temperature == tau and by_temperature.scale == 1.0 / tau
    columns = _columns(batch=6, negatives=1, seed=int(scale))
    reference = MultipleNegativesRankingLoss(model, scale=scale)
    # The kernel keeps τ in float32; the loss still scores with the exact scale, in float64.
    for loss in (by_scale, by_temperature):
        _assert_same(_value_and_grads(loss.compute_loss_from_embeddings, columns),
                     _value_and_grads(reference.compute_loss_from_embeddings, columns))
    assert by_scale.get_config_dict()["scale"] == scale
    with pytest.raises(ValueError, match="not both"):
        FusedMultipleNegativesRankingLoss(model, scale=scale, temperature=tau)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive finite"):
            FusedMultipleNegativesRankingLoss(model, scale=bad)
        with pytest.raises(ValueError, match="positive finite"):
            FusedMultipleNegativesRankingLoss(model, temperature=bad)


def _masked_reference(columns: list[torch.Tensor], groups: torch.Tensor, scale: float, symmetric: bool) -> torch.Tensor:
    """InfoNCE over cosine similarities with same-group candidates (other than the positive) left out, straight
    from the definition; hard negatives (columns 2...) belong to no group."""
    queries = torch.nn.functional.normalize(columns[0], dim=-1)
    candidates = torch.nn.functional.normalize(torch.cat(columns[1:]), dim=-1)
    batch, total = queries.shape[0], candidates.shape[0]
    candidate_groups = torch.cat([groups, torch.full((total - batch,), -1)])
    losses = []
    for i in range(batch):
        kept = [j for j in range(total) if j == i or candidate_groups[j] != groups[i]]
        row = scale * candidates[kept] @ queries[i]
        forward = torch.logsumexp(row, 0) - scale * queries[i] @ candidates[i]
        if not symmetric:
            losses.append(forward)
            continue
        kept_queries = [k for k in range(batch) if k == i or groups[k] != groups[i]]
        column = scale * queries[kept_queries] @ candidates[i]
        backward = torch.logsumexp(column, 0) - scale * queries[i] @ candidates[i]
        losses.append((forward + backward) / 2)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("symmetric", [False, True], ids=["infonce", "symmetric"])
@pytest.mark.parametrize("negatives", [0, 2], ids=["pairs", "2-hard-negatives"])
def test_group_masking_equals_reference(model, symmetric: bool, negatives: int) -> None:
    columns = _columns(batch=8, negatives=negatives, seed=5)
    groups = torch.tensor([0, 0, 3, 1, 3, 3, 7, 2])
    ours = FusedMultipleNegativesRankingLoss(model, scale=20.0, symmetric=symmetric, mask_groups=True)
    _assert_same(
        _value_and_grads(ours.compute_loss_from_embeddings, columns, groups),
        _value_and_grads(lambda cols, g: _masked_reference(cols, g, 20.0, symmetric), columns, groups),
    )
    # Without shared groups the mask removes nothing: ST's loss.
    unique = torch.arange(8) + 100
    _assert_same(
        _value_and_grads(ours.compute_loss_from_embeddings, columns, unique),
        _value_and_grads(MultipleNegativesRankingLoss(model, **(SYMMETRIC if symmetric else {}))
                         .compute_loss_from_embeddings, columns),
    )


def test_labels_are_ignored_unless_asked(model) -> None:
    columns = _columns(batch=4, negatives=0, seed=9)
    loss = FusedMultipleNegativesRankingLoss(model)
    same = torch.zeros(4, dtype=torch.long)
    assert loss.compute_loss_from_embeddings(columns, same) == loss.compute_loss_from_embeddings(columns, None)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (None, "has none"),
        (torch.tensor([0.0, 1.0, 2.0, 3.0]), "integer group ids"),
        (torch.tensor([True, False, True, False]), "integer group ids"),
        (torch.tensor([0, 1, 2]), r"shape \[4\]"),
        (torch.tensor([0, 1, -1, 3]), ">= 0"),
    ],
    ids=["missing", "float", "bool", "short", "negative"],
)
def test_bad_group_labels_are_named(model, labels, message: str) -> None:
    loss = FusedMultipleNegativesRankingLoss(model, mask_groups=True)
    with pytest.raises(ValueError, match=message):
        loss.compute_loss_from_embeddings(_columns(batch=4, negatives=0), labels)


def manhattan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return -torch.cdist(a, b, p=1)


def test_bad_options_are_named(model) -> None:
    with pytest.raises(ValueError, match="similarity_fct=manhattan"):
        FusedMultipleNegativesRankingLoss(model, similarity_fct=manhattan)
    assert FusedMultipleNegativesRankingLoss(model, similarity_fct=cos_sim).normalize
    with pytest.raises(ValueError, match="query_to_query"):
        FusedMultipleNegativesRankingLoss(model, directions=("query_to_doc", "query_to_query"))
    with pytest.raises(ValueError, match="per_direction"):
        FusedMultipleNegativesRankingLoss(model, directions=("query_to_doc",), partition_mode="per_direction")
    with pytest.raises(ValueError, match="mini_batch_size"):
        CachedFusedMultipleNegativesRankingLoss(model, mini_batch_size=0)
    with pytest.raises(ValueError, match="mini_batch_num_tokens"):
        CachedFusedMultipleNegativesRankingLoss(model, mini_batch_num_tokens=-5)
    with pytest.raises(ValueError, match="anchor and a positive"):
        FusedMultipleNegativesRankingLoss(model)([{"input_ids": torch.ones(2, 3, dtype=torch.long)}], None)
    with pytest.raises(ValueError, match=r"column 1 .* \[3, D\]"):
        FusedMultipleNegativesRankingLoss(model).compute_loss_from_embeddings(
            [torch.randn(3, 8), torch.randn(2, 8)])


QUERIES = ["Wo ist der Rhein?", "Where is the river?", "¿Dónde está el río?", "Nehir nerede?", "Πού είναι;",
           "莱茵河在哪里？", "राइन नदी कहाँ है?"]
PASSAGES = ["Der Rhein fließt durch Deutschland und die Niederlande.", "It flows through Germany.",
            "Fluye por Alemania y los Países Bajos.", "Almanya ve Hollanda'dan akar.", "Ρέει μέσω της Γερμανίας.",
            "它流经德国和荷兰。", "यह जर्मनी और नीदरलैंड से होकर बहती है।"]
NEGATIVES = ["Sông Rhine ở đâu?", "Где находится река Рейн?", "what when who", "how many which year",
             "Nó chảy qua Đức và Hà Lan.", "Она течёт через Германию.", "ที่ไหนคือแม่น้ำไรน์"]


def _step(model, loss_fn, columns: list[list[str]], seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss and parameter gradients of one training step on the given text columns."""
    features = [model.preprocess(texts) for texts in columns]
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    value = loss_fn(features, None)
    value.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return value.detach(), grads


def _assert_same_step(ours, theirs) -> None:
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-10, atol=1e-12)
    assert ours[1].keys() == theirs[1].keys() and len(ours[1]) > 10
    for name, grad in theirs[1].items():
        torch.testing.assert_close(ours[1][name], grad, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("negatives", [0, 1], ids=["pairs", "hard-negative"])
def test_cached_equals_st_cached_on_a_tiny_model(st_model_dir, negatives: int) -> None:
    """float64, dropout on: both cached losses embed the same mini-batches in the same order from the same
    seed, so the dropout masks agree, and both replay them in the backward."""
    model = load_st_model(st_model_dir).to(torch.float64).train()
    columns = [QUERIES, PASSAGES] + ([NEGATIVES] if negatives else [])
    theirs = _step(model, CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=3), columns, seed=7)
    ours = _step(model, CachedFusedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=3), columns, seed=7)
    _assert_same_step(ours, theirs)
    # The plain losses (one merged forward for the candidate columns) agree with each other too.
    _assert_same_step(_step(model, FusedMultipleNegativesRankingLoss(model), columns, seed=11),
                      _step(model, MultipleNegativesRankingLoss(model), columns, seed=11))


def test_cached_equals_plain_without_dropout(st_model_dir) -> None:
    model = load_st_model(st_model_dir).to(torch.float64).eval()
    columns = [QUERIES, PASSAGES, NEGATIVES]
    cached = CachedFusedMultipleNegativesRankingLoss(model, mini_batch_size=2, symmetric=True)
    plain = FusedMultipleNegativesRankingLoss(model, symmetric=True)
    _assert_same_step(_step(model, cached, columns, seed=0), _step(model, plain, columns, seed=0))
    with torch.no_grad():
        features = [model.preprocess(texts) for texts in columns]
        torch.testing.assert_close(cached(features, None), plain(features, None), rtol=1e-12, atol=1e-12)
