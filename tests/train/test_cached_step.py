"""The cached training step (chunked embedding under activation checkpointing) and padding-free training forwards.

float64 throughout, so that the only differences between the compared computations are summation orders.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from train_helpers import read_losses, write_config

from hybridfast.encoder import EncoderConfig, FusedEncoder
from hybridfast.kernels import contrastive_loss
from hybridfast.train.collate import HARD_NEGATIVE_GROUP, TrainingInputs
from hybridfast.train.config import ConfigError, load_config
from hybridfast.train.loop import train
from hybridfast.train.loss import column_contrastive_loss
from hybridfast.train.step import ContrastiveDualEncoder, chunk_rows, contrastive_step, embed_in_chunks

QUERIES = [f"Wo ist der Rhein {i}?" if i % 3 else f"question {i}: where does the river Rhine flow to?" for i in range(7)]
PASSAGES = [f"passage {i}: " + "the Rhine flows through Germany. " * (1 + i % 4) for i in range(7)]
NEGATIVES = [f"negative {i}: Sông Rhine ở đâu? " * (1 + i % 2) for i in range(7)]
GROUPS = [0, 1, 1, 2, 3, 3, 4]  # parallel duplicates: (1, 1) and (3, 3)


def _module(model_dir: Path, **options) -> ContrastiveDualEncoder:
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(model_dir, add_pooling_layer=False, attn_implementation="sdpa")
    encoder = FusedEncoder(model, AutoTokenizer.from_pretrained(model_dir), EncoderConfig.load(model_dir))
    module = ContrastiveDualEncoder(encoder, temperature=0.07, learn_temperature=True, **options).double()
    return module.train()


def _inputs(encoder: FusedEncoder) -> TrainingInputs:
    groups = torch.tensor(GROUPS)
    return TrainingInputs(
        query_rows=encoder.token_ids(QUERIES, "query"),
        candidate_rows=encoder.token_ids(PASSAGES + NEGATIVES, "passage"),
        query_groups=groups,
        candidate_groups=torch.cat([groups, torch.full((len(NEGATIVES),), HARD_NEGATIVE_GROUP)]),
    )


def _gradients(module: torch.nn.Module, seed: int, symmetric: bool) -> dict[str, torch.Tensor]:
    """Parameter gradients of one step of `module` (a ContrastiveDualEncoder, or one wrapped as `.module`)."""
    module.zero_grad(set_to_none=True)
    dual = getattr(module, "module", module)
    torch.manual_seed(seed)
    out = contrastive_step(module, _inputs(dual.encoder), use_groups=True, symmetric=symmetric, loss_backend="torch")
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in dual.named_parameters() if p.grad is not None}
    assert "log_temperature" in grads and len(grads) > 10
    return grads


def _assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        if name == "log_temperature":
            # contrastive_loss takes τ as a float32 scalar, so its gradient is exact to float32 rounding only
            torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=0, msg=name)
            continue
        scale = float(expected[name].abs().max())
        torch.testing.assert_close(got[name], expected[name], rtol=1e-9, atol=1e-11 * scale + 1e-14, msg=name)


class _UncachedChunks(torch.nn.Module):
    """The cached module's own chunking, with every activation kept: the plain step it must reproduce."""

    def __init__(self, module: ContrastiveDualEncoder):
        super().__init__()
        self.module = module

    def forward(self, query_rows, candidate_rows):
        def embed(rows):
            chunks, inverse = chunk_rows(rows, self.module.embed_chunk_size)
            batches = [self.module.encoder.token_batch(chunk, packed=False) for chunk in chunks]
            out = embed_in_chunks(self.module.encoder.embed_tokens, batches, cached=False)
            return out if inverse is None else out[inverse]

        return embed(query_rows), embed(candidate_rows), self.module.log_temperature.exp()


@pytest.mark.parametrize("symmetric", [False, True])
def test_cached_step_replays_dropout_and_matches_the_plain_step(tiny_model_dir: Path, symmetric: bool) -> None:
    """Dropout on: the cached step's gradients (every parameter and τ) equal those of the same chunking without
    checkpointing, so the recomputation saw the first pass's dropout masks."""
    cached = _module(tiny_model_dir, embed_chunk_size=3)
    assert cached.encoder.model.config.hidden_dropout_prob > 0
    plain = _UncachedChunks(cached)
    for seed in (0, 1):
        got = _gradients(cached, seed, symmetric)
        expected = _gradients(plain, seed, symmetric)
        _assert_same(got, expected)
    # and the masks really depend on the seed: other seeds give other gradients
    other = _gradients(cached, 2, symmetric)
    assert not torch.allclose(other["encoder.model.encoder.layer.0.output.dense.weight"],
                              got["encoder.model.encoder.layer.0.output.dense.weight"])


@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_cached_step_equals_unchunked_plain_step_without_dropout(nodrop_model_dir: Path, chunk: int) -> None:
    plain = _module(nodrop_model_dir)
    cached = _module(nodrop_model_dir, embed_chunk_size=chunk)
    cached.load_state_dict(plain.state_dict())
    _assert_same(_gradients(cached, 0, True), _gradients(plain, 0, True))


def test_padded_and_packed_training_forwards_agree(nodrop_model_dir: Path) -> None:
    """Packed (varlen, per-text SDPA on the CPU) against padded encoder calls: embeddings and gradients."""
    padded = _module(nodrop_model_dir, embed_chunk_size=4)
    packed = _module(nodrop_model_dir, embed_chunk_size=4, padding_free=True)
    packed.load_state_dict(padded.state_dict())
    rows = packed.encoder.token_ids(PASSAGES + NEGATIVES, "passage")
    batch = packed.encoder.token_batch(rows, packed=True)
    assert batch.attention_mask is None and int(batch.cu_seqlens_host[-1]) == sum(map(len, rows))
    torch.testing.assert_close(packed.embed_rows(rows), padded.embed_rows(rows), rtol=1e-10, atol=1e-12)
    _assert_same(_gradients(packed, 0, False), _gradients(padded, 0, False))


def test_column_loss_is_the_kernels_symmetric_direction() -> None:
    """The symmetric loss over ranks (row direction + roles-swapped column direction) equals the kernel's fused
    symmetric loss in one process, with groups and hard negatives."""
    torch.manual_seed(0)
    b, d = 6, 8
    q = torch.nn.functional.normalize(torch.randn(b, d, dtype=torch.float64), dim=-1).requires_grad_()
    c = torch.nn.functional.normalize(torch.randn(2 * b, d, dtype=torch.float64), dim=-1).requires_grad_()
    groups = torch.tensor([0, 1, 1, 2, 2, 3])
    c_groups = torch.cat([groups, torch.full((b,), -1)])
    tau = torch.tensor(0.05, dtype=torch.float64)
    expected = contrastive_loss(q, c, temperature=tau, group_ids=(groups, c_groups), symmetric=True, backend="naive")
    forward = contrastive_loss(q, c, temperature=tau, group_ids=(groups, c_groups), backend="naive")
    column = column_contrastive_loss(c[:b], q, temperature=tau, column_groups=groups, all_query_groups=groups,
                                     first_query=0, backend="naive")
    got = (forward + column) / 2
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    grads = torch.autograd.grad(got, (q, c))
    for g, e in zip(grads, torch.autograd.grad(expected, (q, c)), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-14)


def test_chunk_rows_sorts_longest_first_and_inverts() -> None:
    rng = random.Random(0)
    rows = [[1] * rng.randint(1, 9) for _ in range(11)]
    chunks, inverse = chunk_rows(rows, 4)
    assert [len(chunk) for chunk in chunks] == [4, 4, 3]
    flat = [row for chunk in chunks for row in chunk]
    assert [len(r) for r in flat] == sorted((len(r) for r in rows), reverse=True)
    assert [flat[i] for i in inverse.tolist()] == rows
    assert chunk_rows(rows, 0) == ([rows], None) and chunk_rows(rows, 11) == ([rows], None)
    with pytest.raises(ValueError, match="embed_chunk_size"):
        ContrastiveDualEncoder(None, 0.05, False, embed_chunk_size=-1)  # type: ignore[arg-type]


def test_trainer_cached_steps_log_the_plain_losses_and_resume_exactly(
    tmp_path: Path, nodrop_model_dir: Path, parallel_jsonl: Path
) -> None:
    sections = {"train": {"steps": 4}, "sampling": {"alpha": 0.5, "batch_size": 6, "hard_negatives": 0},
                "optim": {"lr": 1e-3, "learn_temperature": True, "symmetric": True}}
    runs = {}
    for name, extra in (("plain", {}), ("cached", {"embed_chunk_size": 4})):
        directory = tmp_path / name
        directory.mkdir()
        config = load_config(write_config(directory, nodrop_model_dir, parallel_jsonl,
                                          **{**sections, "train": {**sections["train"], **extra}}))
        runs[name] = train(config, show_progress=False).losses
    assert sorted(runs["cached"]) == [1, 2, 3, 4]
    for step in runs["plain"]:
        assert runs["cached"][step] == pytest.approx(runs["plain"][step], rel=1e-5), step

    # stopped by an error after step 3 (last checkpoint at step 2), then resumed: the same losses
    directory = tmp_path / "resumed"
    directory.mkdir()
    path = write_config(directory, nodrop_model_dir, parallel_jsonl, **{
        **sections, "train": {**sections["train"], "embed_chunk_size": 4}, "log": {"save_every": 2, "eval_every": 1}})

    def stop_at_step_3(encoder, *, step, output_dir):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(load_config(path), eval_fn=stop_at_step_3, show_progress=False)
    finished = train(load_config(path), eval_fn=lambda encoder, **_: None, show_progress=False)
    assert finished.resumed_from is not None and finished.resumed_from.name == "checkpoint-000002"
    logged = read_losses(directory / "out")
    assert sorted(logged) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert logged[step] == pytest.approx(runs["cached"][step], rel=1e-5), step


def test_config_checks_for_the_cached_step(tmp_path: Path, nodrop_model_dir: Path, parallel_jsonl: Path) -> None:
    path = write_config(tmp_path, nodrop_model_dir, parallel_jsonl, train={"embed_chunk_size": -2})
    with pytest.raises(ConfigError, match="train.embed_chunk_size"):
        load_config(path)
    path = write_config(tmp_path, nodrop_model_dir, parallel_jsonl, train={"embed_chunk_size": 8},
                        model={"gradient_checkpointing": True})
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        load_config(path)
    path = write_config(tmp_path, nodrop_model_dir, parallel_jsonl, train={"padding_free": "yes"})
    with pytest.raises(ConfigError, match="train.padding_free"):
        load_config(path)
