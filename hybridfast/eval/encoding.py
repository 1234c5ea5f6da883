"""Embedding texts for evaluation through the one encode path, with a progress bar and a timer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from hybridfast.progress import rich_progress

if TYPE_CHECKING:
    from hybridfast.encoder import FusedEncoder


class EncodeTimer:
    """Accumulates seconds spent encoding and the number of texts encoded."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.texts = 0


def encode_texts(
    encoder: FusedEncoder,
    texts: Sequence[str],
    kind: Literal["query", "passage"],
    *,
    batch_size: int = 64,
    label: str = "encoding",
    progress: bool = True,
    timer: EncodeTimer | None = None,
) -> np.ndarray:
    """Embed `texts` with `encoder.encode` (query or passage prefix) as a float32 [n, d] array, in order.

    Texts are sorted by length before batching, as `FusedEncoder.encode` does, so each batch pads little;
    the batches are fed one at a time so that a progress bar (on stderr) can follow them.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    texts = list(texts)
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    order = np.argsort([len(text) for text in texts], kind="stable")
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    start_time = time.perf_counter()
    with rich_progress(enabled=progress) as bar:
        task = bar.add_task(label, total=len(texts))
        # Without a terminal (a log file), rich draws nothing until the end: print a line per tenth instead.
        log_lines = progress and not bar.console.is_terminal
        next_line, completed = 0.1, 0
        for batch in batches:
            out[batch] = encoder.encode([texts[i] for i in batch], kind, batch_size=len(batch))
            bar.advance(task, len(batch))
            completed += len(batch)
            if log_lines and completed >= next_line * len(texts):
                elapsed = time.perf_counter() - start_time
                bar.console.print(f"{label}: {completed}/{len(texts)} texts, {elapsed:.0f} s", highlight=False)
                next_line = (10 * completed // len(texts) + 1) / 10
    if timer is not None:
        timer.seconds += time.perf_counter() - start_time
        timer.texts += len(texts)
    return out
