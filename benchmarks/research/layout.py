"""The research experiment's result files: where each lives and how runs are named.

One results folder per experiment (e.g. `benchmarks/research/results/cpu-reduced/`)::

    experiment.json              plan (runs, tasks, comparisons), settings
    invocations/{start}-{pid}.json   one per driver invocation: command, start, finish, hardware, versions
    steps.jsonl                  one line per step and invocation: done / skipped, wall time, load, what it ran
    start_model.json             the vocabulary pruning of the start model (sizes), when the config asks for it
    configs/{run}.yaml           the exact `hybridfast train` config of each training run
    train/{run}.json             training summary (loss and learning curves, realized batch mix, checkpoint)
    curve_zero_shot.json         the learning curves' step-0 point (the zero-shot model on the curve subset)
    eval/{model}/{task}.json     `hybridfast eval` result files (format hybridfast-eval/1, per-query scores)
    compare/{task}/{b}__vs__{a}.json   `hybridfast eval compare` output: B tested against baseline A
    compare/family.json          Holm-Bonferroni over the primary tests of every comparison
    training_speed.json          timing stage: training step time and tokens/s per strategy, load averages
    cost.json                    timing stage: inference latency / throughput, lean and unfused paths, all repeats

Checkpoints stay under the runs folder (`runs/research/...`, git-ignored); nothing here holds weights or
embeddings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ZERO_SHOT = "zero-shot"
# The seed paper's names for the three sampling strategies (Elmahdy, Lin & Ahmad 2024, arXiv 2408.10536).
NAMED_ALPHAS = {1.0: "x-x-mono", 0.0: "x-y", 0.5: "hybrid"}
TASKS = ("lareqa", "tatoeba", "beir")


def strategy_name(alpha: float) -> str:
    """`x-x-mono` (α = 1), `x-y` (α = 0), `hybrid` (α = 0.5), else `alpha-0.25` and the like."""
    return NAMED_ALPHAS.get(float(alpha), f"alpha-{float(alpha):g}")


def run_name(alpha: float, seed: int) -> str:
    """One training run: a strategy and a seed."""
    return f"{strategy_name(alpha)}-seed{seed}"


@dataclass(frozen=True)
class ResultsLayout:
    """Paths of every result file under one experiment's results folder."""

    root: Path

    @property
    def experiment_file(self) -> Path:
        return self.root / "experiment.json"

    @property
    def steps_file(self) -> Path:
        return self.root / "steps.jsonl"

    @property
    def cost_file(self) -> Path:
        return self.root / "cost.json"

    @property
    def training_speed_file(self) -> Path:
        return self.root / "training_speed.json"

    @property
    def pruning_file(self) -> Path:
        return self.root / "start_model.json"

    @property
    def curve_start_file(self) -> Path:
        return self.root / "curve_zero_shot.json"

    @property
    def family_file(self) -> Path:
        return self.root / "compare" / "family.json"

    def invocation_file(self, started: str, pid: int) -> Path:
        return self.root / "invocations" / f"{started.replace(':', '')}-{pid}.json"

    def invocations(self) -> list[dict[str, Any]]:
        """Every recorded invocation of the driver, oldest first."""
        folder = self.root / "invocations"
        found = [read_json(p) for p in folder.glob("*.json")] if folder.is_dir() else []
        return sorted(found, key=lambda inv: inv["started"])

    def config_file(self, run: str) -> Path:
        return self.root / "configs" / f"{run}.yaml"

    def train_file(self, run: str) -> Path:
        return self.root / "train" / f"{run}.json"

    def eval_file(self, model: str, task: str) -> Path:
        return self.root / "eval" / model / f"{task}.json"

    def compare_file(self, task: str, a: str, b: str) -> Path:
        return self.root / "compare" / task / f"{b}__vs__{a}.json"


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, payload: Any, compact: bool = False) -> Path:
    """Write JSON atomically (temp file, then rename), so that an interrupted step leaves no half file; `compact`
    for the large per-query result files (no indentation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(path.suffix + ".tmp")
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":")) if compact else json.dumps(
        payload, indent=1, ensure_ascii=False)
    temp.write_text(text + "\n", encoding="utf-8")
    temp.replace(path)
    return path


def read_steps(layout: ResultsLayout) -> list[dict[str, Any]]:
    if not layout.steps_file.is_file():
        return []
    return [json.loads(line) for line in layout.steps_file.read_text().splitlines() if line.strip()]
