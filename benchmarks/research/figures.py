"""The report's plots (matplotlib, Agg backend): one function per figure, each writing one PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Series = Mapping[str, Sequence[float | None]]


def grouped_bars(
    path: Path,
    groups: Sequence[str],
    means: Series,
    errors: Series | None,
    *,
    title: str,
    ylabel: str,
    width_per_group: float = 1.6,
) -> Path:
    """Bars of each series (legend) side by side for each group (x axis), with optional error bars."""
    names = list(means)
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, width_per_group * len(groups) + 2.0), 3.8))
    for i, name in enumerate(names):
        values = np.array([np.nan if v is None else v for v in means[name]], dtype=float)
        err = None
        if errors is not None and name in errors:
            err = np.array([0.0 if v is None else v for v in errors[name]], dtype=float)
        ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, yerr=err, capsize=3, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(len(names), 3))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def lines_vs_alpha(
    path: Path,
    alphas: Sequence[float],
    means: Series,
    errors: Series,
    reference: Mapping[str, float | None],
    *,
    title: str,
) -> Path:
    """One line per metric against α, error bars across seeds; dotted lines mark the zero-shot model."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for i, (name, values) in enumerate(means.items()):
        color = f"C{i}"
        ax.errorbar(alphas, [np.nan if v is None else v for v in values],
                    yerr=[0.0 if v is None else v for v in errors[name]], marker="o", capsize=3, label=name, color=color)
        if reference.get(name) is not None:
            ax.axhline(reference[name], color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("α = P(monolingual batch)   (0: X-Y, 0.5: hybrid, 1: X-X-mono)")
    ax.set_ylabel("score (dotted: zero-shot)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
