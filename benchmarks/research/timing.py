"""Training speed per strategy, measured one strategy at a time on an otherwise idle machine.

The quality stage's training runs log their own throughput, but those numbers depend on whatever else shares the
machine. Here each strategy trains `warmup_steps + steps` steps from the start model with its experiment config
(nothing else running in this process; the driver refuses to start this stage when the load average says other
jobs are there), in `rounds` rounds whose strategy order alternates (A B C, C B A, ...) so that slow drift of the
machine spreads over all strategies. `hybridfast train` logs every step (`log_every = 1`): the step's wall time
and its real (non-padding) tokens per second. The first `warmup_steps` steps of each round are not counted (thread
pools, allocator). The load average is recorded before and after every round of every strategy.

The strategies differ only in which language pairs a batch holds, so per-step time differs only through the
token counts of those languages; tokens/s is the comparable rate. Equivalence between strategies is tested with the
*round* as the unit (`equivalence_tests`): the steps of one run share the machine's state of that minute, so they
are not independent samples (on the 2-core CPU one strategy's rounds differed by 20 % while its steps within a
round spread by a few %), whereas the strategies of one round ran back to back. Per round, each strategy's level is
the mean log(tokens/s) of its measured steps; two strategies' per-round differences are paired and tested with two
one-sided t-tests (`hybridfast.eval.significance.tost_paired`, rounds − 1 degrees of freedom), which needs at least
two rounds and, with few, can show only what is large.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machine import load_average


@dataclass
class TimingSettings:
    """What `measure_training_speed` runs."""

    steps: int = 8
    warmup_steps: int = 2
    rounds: int = 2


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
            load_before, started = load_average(), time.time()
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
                           "load_avg_end": load_average(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                           "wall_s": round(time.time() - started, 3), "mono_batches": logged[-1]["mono_batches"],
                           "cross_batches": logged[-1]["cross_batches"]})
            log(f"training speed: {name} round {round_index + 1}/{settings.rounds} (load {load_before})")
    summary = {}
    for name in names:
        rows = [s for s in samples if s["strategy"] == name]
        summary[name] = {key: {"median": float(np.median([r[key] for r in rows])),
                               "mean": float(np.mean([r[key] for r in rows])), "n": len(rows)}
                         for key in ("step_s", "tokens_per_s", "examples_per_s")}
    return {"settings": dataclasses.asdict(settings), "torch_threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu", "samples": samples, "rounds": rounds,
            "summary": summary, "equivalence": equivalence_tests(samples, margin)}


def equivalence_tests(samples: Sequence[Mapping[str, Any]], margin: float) -> list[dict[str, Any]]:
    """TOST of tokens/s within ±`margin` (relative) for every pair of strategies, paired by round (module
    docstring); pairs measured in fewer than two common rounds are left out."""
    import numpy as np

    from hybridfast.eval.significance import tost_paired

    levels: dict[tuple[str, int], list[float]] = {}
    for sample in samples:
        levels.setdefault((sample["strategy"], sample["round"]), []).append(float(np.log(sample["tokens_per_s"])))
    names = list(dict.fromkeys(sample["strategy"] for sample in samples))
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            rounds = sorted({r for (name, r) in levels if name == a} & {r for (name, r) in levels if name == b})
            if len(rounds) < 2:
                continue
            differences = [np.mean(levels[(b, r)]) - np.mean(levels[(a, r)]) for r in rounds]
            test = tost_paired(differences, float(np.log1p(margin)))
            out.append({"a": a, "b": b, "metric": "tokens_per_s", "rounds": len(rounds),
                        "ratio_b_over_a": float(np.exp(test.diff)),
                        "ratio_ci90": [float(np.exp(test.ci_low)), float(np.exp(test.ci_high))],
                        "margin": margin, "p_tost": test.p, "equivalent": bool(test.equivalent)})
    return out
