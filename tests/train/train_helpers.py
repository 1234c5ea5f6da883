"""Helpers for the trainer tests: write a config over the synthetic data, read logged losses."""

from __future__ import annotations

import json
from pathlib import Path


def write_config(directory: Path, model_dir: Path, data_file: Path, /, **sections: dict) -> Path:
    """A TOML training config over the synthetic data; `sections` override keys per section."""
    base: dict[str, dict] = {
        "model": {"name": str(model_dir), "query_max_length": 16, "passage_max_length": 24},
        "data": {"dataset": "jsonl", "path": str(data_file), "split": "all"},
        "sampling": {"alpha": 0.5, "batch_size": 4},
        "optim": {"lr": 1e-3, "warmup_steps": 0, "schedule": "constant", "temperature": 0.1},
        "train": {"steps": 4, "output_dir": str(directory / "out"), "seed": 0},
        "log": {"log_every": 1},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_losses(output_dir: Path) -> dict[int, float]:
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return {row["step"]: row["loss"] for row in map(json.loads, lines) if "loss" in row}
