"""Embedding texts for evaluation through the one encode path, with per-batch progress and a timer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from hybridfast.progress import batch_progress

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

    At most `batch_size` texts per batch; the encoder sorts texts by length and batches them within its token
    budget, so each batch pads little. Its per-batch callback drives the progress display on stderr (texts and
    tokens per second, ETA; plain lines when stderr is not a terminal).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    texts = list(texts)
    start_time = time.perf_counter()
    with batch_progress(label, len(texts), enabled=progress, transient=False) as counter:
        out = encoder.encode(texts, kind, batch_size=batch_size, on_batch=counter)
    if timer is not None:
        timer.seconds += time.perf_counter() - start_time
        timer.texts += len(texts)
    return np.asarray(out, dtype=np.float32).reshape(len(texts), encoder.dim)
