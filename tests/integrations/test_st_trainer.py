"""A few steps of SentenceTransformerTrainer on the tiny random encoder with the fused losses and the hybrid
batch sampler: the group ids reach the loss step by step, the weights move, and the saved model reloads with
`SentenceTransformer(dir)` and embeds as the trained one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from st_helpers import load_st_model

from hybridfast.integrations.sentence_transformers import (
    CachedFusedMultipleNegativesRankingLoss,
    FusedMultipleNegativesRankingLoss,
    HybridPairs,
)

BATCH = 4
STEPS = 3


@pytest.mark.parametrize("cached", [False, True], ids=["fused", "cached"])
def test_trainer_steps_with_hybrid_batches_then_reload(
    tmp_path: Path, st_model_dir: Path, parallel_dataset, cached: bool
) -> None:
    model = load_st_model(st_model_dir)
    pairs = HybridPairs(parallel_dataset, alpha=0.5, hard_negatives=1 if cached else 0)
    if cached:
        loss = CachedFusedMultipleNegativesRankingLoss(model, mini_batch_size=3, mask_groups=True)
    else:
        loss = FusedMultipleNegativesRankingLoss(model, mask_groups=True, symmetric=True)
    seen_labels: list[torch.Tensor] = []
    loss.register_forward_pre_hook(lambda module, args: seen_labels.append(args[1].clone()))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=BATCH, max_steps=STEPS, learning_rate=1e-3,
        warmup_steps=0, batch_sampler=pairs.batch_sampler, report_to=[], logging_steps=1, save_strategy="no",
        use_cpu=True, seed=0, disable_tqdm=True,
    )
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs.dataset, loss=loss)
    result = trainer.train()

    assert result.global_step == STEPS and np.isfinite(result.training_loss)
    # The batches the trainer drew are the sampler's, and their group ids are what the loss received.
    expected = [pairs.dataset[ids]["label"] for ids in pairs.batch_sampler(pairs.dataset, BATCH, seed=0)][:STEPS]
    assert [labels.tolist() for labels in seen_labels] == expected
    moved = [name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])]
    assert "0.model.encoder.layer.0.attention.self.query.weight" in moved

    out = tmp_path / "saved"
    trainer.save_model(str(out))
    reloaded = SentenceTransformer(str(out), device="cpu")
    texts = ["Wo ist der Rhein?", "The Rhine flows through Germany."]
    np.testing.assert_allclose(reloaded.encode(texts), model.encode(texts), rtol=1e-5, atol=1e-6)
    assert not np.allclose(load_st_model(st_model_dir).encode(texts), reloaded.encode(texts), atol=1e-4)
