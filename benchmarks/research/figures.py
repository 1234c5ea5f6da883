"""The report's plots (matplotlib, Agg backend): one function per figure, each writing one PNG.

Every axis holds one metric scale: mAP-like scores (0–1) and rank distances (ranks) never share an axis.
Error bars are the intervals the caller computed and names in the title: 95% confidence intervals (seeds ×
questions bootstrap) for quality, ± one standard deviation over the repeats for cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Interval = tuple[float, float, float] | None  # (estimate, low, high)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _errors(points: Sequence[Interval]) -> tuple[np.ndarray, np.ndarray]:
    values = np.array([np.nan if p is None else p[0] for p in points], dtype=float)
    below = np.array([0.0 if p is None else p[0] - p[1] for p in points], dtype=float)
    above = np.array([0.0 if p is None else p[2] - p[0] for p in points], dtype=float)
    return values, np.vstack([below, above])


def interval_bars(path: Path, groups: Sequence[str], series: Mapping[str, Sequence[Interval]], *, title: str,
                  ylabel: str, width_per_group: float = 1.6) -> Path:
    """Bars of each series (legend) side by side per group (x axis), with error bars from low to high."""
    names = list(series)
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, width_per_group * len(groups) + 2.0), 3.8))
    for i, name in enumerate(names):
        values, err = _errors(series[name])
        ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, yerr=err, capsize=3, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(len(names), 4))
    return _save(fig, path)


def panels_vs_alpha(path: Path, alphas: Sequence[float], panels: Mapping[str, Sequence[Interval]],
                    zero_shot: Mapping[str, Interval], *, title: str) -> Path:
    """One panel (own y axis) per metric against α, 95% CI error bars; the zero-shot model as a dotted line."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.4), squeeze=False)
    for ax, (label, points) in zip(axes[0], panels.items(), strict=True):
        values, err = _errors(points)
        ax.errorbar(alphas, values, yerr=err, marker="o", capsize=3)
        reference = zero_shot.get(label)
        if reference is not None:
            ax.axhline(reference[0], color="grey", linestyle=":", linewidth=1, label="zero-shot")
            ax.axhspan(reference[1], reference[2], color="grey", alpha=0.12)
            ax.legend(fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("α = share of monolingual steps")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def learning_curves(path: Path, curves: Mapping[str, Mapping[str, Sequence[float]]], *, title: str,
                    ylabel: str) -> Path:
    """Mean over seeds against training step per strategy, the band spanning the seeds' lowest and highest."""
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for i, (name, curve) in enumerate(curves.items()):
        color = f"C{i}"
        ax.plot(curve["steps"], curve["mean"], marker="o", color=color, label=f"{name} ({curve['seeds']} seeds)")
        ax.fill_between(curve["steps"], curve["min"], curve["max"], color=color, alpha=0.15)
    ax.set_xlabel("training step (0: the zero-shot start)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)

