"""Training speed per strategy, measured one strategy at a time on an otherwise idle machine.

The quality stage's training runs log their own throughput, but those numbers depend on whatever else shares the
machine. Here each strategy trains `warmup_steps + steps` steps from the start model with its experiment config
(nothing else running in this process; the driver refuses to start this stage when the load average says other
jobs are there), in `rounds` rounds whose strategy order alternates (A B C, C B A, ...) so that slow drift of the
machine spreads over all strategies. `hybridfast train` logs every step (`log_every = 1`): the step's wall time
and its real (non-padding) tokens per second. The first `warmup_steps` steps of each round are not counted (thread
pools, allocator). The load average is recorded before and after every round of every strategy.

The strategies differ only in which language pairs a batch holds, so per-step time differs only through the
token counts of those languages; tokens/s is the comparable rate. Equivalence between strategies is tested on
log(tokens/s) per step (Welch two one-sided t-tests, `hybridfast.eval.significance.tost_welch`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TimingSettings:
    """What `measure_training_speed` runs."""

    steps: int = 8
    warmup_steps: int = 2
    rounds: int = 2


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def measure_training_speed(
    configs: Mapping[str, Any],
    out_dir: Path,
    data_dir: Path,
    settings: TimingSettings,
    log: Callable[[str], None] = print,
    margin: float = 0.03,
) -> dict[str, Any]:
    """Train each strategy's config (`{strategy: TrainConfig}`) for a few steps per round; per-step samples,
    per-strategy medians and pairwise equivalence tests of tokens/s within ±`margin` (relative)."""
    import numpy as np
    import torch

    from hybridfast.eval.significance import tost_welch
    from hybridfast.train.loop import train

    names = list(configs)
    samples: list[dict[str, Any]] = []
    rounds = []
    for round_index in range(settings.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            config = dataclasses.replace(configs[name])
            config.train = dataclasses.replace(config.train, steps=settings.warmup_steps + settings.steps,
                                               output_dir=str(out_dir / f"{name}-round{round_index}"), resume="never")
            config.log = dataclasses.replace(config.log, log_every=1, save_every=0, eval_every=0, eval_hook="",
                                             keep_last=1)
            load_before, started = _load(), time.time()
            result = train(config, data_dir=data_dir, show_progress=False)
            metrics = [json.loads(line) for line in result.metrics_file.read_text().splitlines() if line.strip()]
            logged = [m for m in metrics if "loss" in m]
            batch = config.sampling.batch_size
            for m in logged:
                if m["step"] <= settings.warmup_steps:
                    continue
                samples.append({"strategy": name, "round": round_index, "step": m["step"],
                                "step_s": batch / m["examples_per_s"], "tokens_per_s": m["tokens_per_s"],
                                "examples_per_s": m["examples_per_s"]})
            rounds.append({"strategy": name, "round": round_index, "load_avg_start": load_before,
                           "load_avg_end": _load(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                           "wall_s": round(time.time() - started, 3), "mono_batches": logged[-1]["mono_batches"],
                           "cross_batches": logged[-1]["cross_batches"]})
            log(f"training speed: {name} round {round_index + 1}/{settings.rounds} (load {load_before})")
    summary = {}
    for name in names:
        rows = [s for s in samples if s["strategy"] == name]
        summary[name] = {key: {"median": float(np.median([r[key] for r in rows])),
                               "mean": float(np.mean([r[key] for r in rows])), "n": len(rows)}
                         for key in ("step_s", "tokens_per_s", "examples_per_s")}
    equivalence = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            log_a = np.log([s["tokens_per_s"] for s in samples if s["strategy"] == a])
            log_b = np.log([s["tokens_per_s"] for s in samples if s["strategy"] == b])
            if min(len(log_a), len(log_b)) < 2:
                continue  # a t-test needs two measured steps per strategy
            test = tost_welch(log_a, log_b, margin=float(np.log1p(margin)))
            equivalence.append({"a": a, "b": b, "metric": "tokens_per_s", "ratio_b_over_a": float(np.exp(test.diff)),
                                "ratio_ci90": [float(np.exp(test.ci_low)), float(np.exp(test.ci_high))],
                                "margin": margin, "p_tost": test.p, "equivalent": bool(test.equivalent)})
    return {"settings": dataclasses.asdict(settings), "torch_threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu", "samples": samples, "rounds": rounds,
            "summary": summary, "equivalence": equivalence}
