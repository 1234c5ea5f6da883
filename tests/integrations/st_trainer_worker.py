"""A SentenceTransformerTrainer run with the cached fused loss and hybrid batches, for the distributed tests.

`accelerate launch --multi_gpu --num_processes 2 tests/integrations/st_trainer_worker.py --deepspeed CONFIG ...`
runs it under DeepSpeed on two processes; the test calls `run` in-process for the single-process reference.
Writes the trained model (`SentenceTransformer.save_pretrained` layout) and `run.json` to `--out`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

STEPS = 3
SEED = 0
# Plain SGD: the update is linear in the gradient, so two process layouts differ only by float32 reduction order.
# AdamW divides by sqrt(v) + eps and turns that order noise on near-zero gradients into 1e-5-sized weight
# differences that vary with the CPU's kernels (2.5e-5 on CI's machine, 5e-6 on another).
OPTIMIZER = "sgd"
LEARNING_RATE = 0.5


def run(model_dir: Path, out: Path, batch_size: int, deepspeed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train STEPS steps of `batch_size` pairs per process; returns (and writes to run.json) the logged loss of
    every step, the world size and the class that wrapped the model."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from st_helpers import load_st_model, parallel_rows

    from hybridfast.integrations.sentence_transformers import (
        CachedFusedMultipleNegativesRankingLoss,
        HybridPairs,
    )

    model = load_st_model(model_dir)
    pairs = HybridPairs(Dataset.from_dict(parallel_rows()), alpha=0.5, hard_negatives=1, seed=SEED)
    # Each rank's 4 anchors and 8 candidates are embedded in mini-batches of 3 rows (3 + 1, 3 + 3 + 2).
    loss = CachedFusedMultipleNegativesRankingLoss(model, mini_batch_size=3, gather_across_devices=True,
                                                   mask_groups=True)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "run"), per_device_train_batch_size=batch_size, max_steps=STEPS,
        optim=OPTIMIZER, learning_rate=LEARNING_RATE, warmup_steps=0, max_grad_norm=1.0,
        batch_sampler=pairs.batch_sampler, report_to=[], logging_steps=1,
        save_strategy="no", seed=SEED, disable_tqdm=True, deepspeed=deepspeed, use_cpu=deepspeed is None,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs.dataset, loss=loss)
    trainer.train()
    trainer.save_model(str(out / "model"))
    report = {
        "losses": [row["loss"] for row in trainer.state.log_history if "loss" in row],
        "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
        "wrapper": type(trainer.model_wrapped).__name__,
        "zero_stage": trainer.model_wrapped.zero_optimization_stage() if deepspeed is not None else None,
    }
    if trainer.is_world_process_zero():
        (out / "run.json").write_text(json.dumps(report))
    return report


def _count_ranks_under_cpu_deepspeed() -> None:
    """Without a GPU, accelerate leaves the distributed backend unset when DeepSpeed is on and counts one
    process (accelerate.state.PartialState._prepare_backend): the trainer would not shard the batches and would
    fill DeepSpeed's batch sizes for one process. This machine-specific patch makes it count the gloo ranks
    that DeepSpeed's CPU accelerator set up; on a GPU machine the worker runs unpatched."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    def gloo_backend(self, cpu: bool = False, sagemaker_dp: bool = False, backend: str | None = None):
        return "gloo", DistributedType.MULTI_CPU

    PartialState._prepare_backend = gloo_backend


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint folder SentenceTransformer loads")
    parser.add_argument("--out", type=Path, required=True, help="folder for the trained model and run.json")
    parser.add_argument("--batch-size", type=int, required=True, help="pairs per process and step")
    parser.add_argument("--deepspeed", type=Path, help="DeepSpeed JSON config (ZeRO stage and buckets)")
    options = parser.parse_args()
    deepspeed = None
    if options.deepspeed is not None:
        deepspeed = json.loads(options.deepspeed.read_text())
        deepspeed.update(train_micro_batch_size_per_gpu="auto", train_batch_size="auto",
                         gradient_accumulation_steps="auto", gradient_clipping="auto",
                         zero_allow_untested_optimizer=True)
        if not torch.cuda.is_available():
            _count_ranks_under_cpu_deepspeed()
    options.out.mkdir(parents=True, exist_ok=True)
    run(options.model, options.out, options.batch_size, deepspeed)


if __name__ == "__main__":
    main()
