"""Token-budget batch planning and batch assembly for inference (after TEI's `core/src/queue.rs`).

Texts are tokenized once, sorted by length (longest first), and cut into batches whose cost
stays within `max_batch_tokens`:

- padded (length-bucketed) batches cost ``len(batch) · max(lengths in batch)``, the tokens a
  padded ``[B, L]`` tensor really holds;
- packed (padding-free) batches cost ``sum(lengths in batch)``, the tokens of a ``[T]`` stream
  with cumulative sequence lengths ``cu_seqlens = [0, l0, l0 + l1, …]``.

Sorting makes neighbours nearly equal in length, so padded batches waste few tokens, and the
longest batch runs first, so the peak memory shows up at once. A single text longer than the
budget forms a batch of its own. Each batch carries the input positions of its texts, so the
caller scatters results back to input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hybridfast.errors import HybridfastError


def plan_batches(
    lengths: Sequence[int] | np.ndarray,
    max_batch_tokens: int,
    *,
    max_batch_size: int | None = None,
    packed: bool = False,
    max_padding: float = 0.2,
) -> list[np.ndarray]:
    """Group text positions into batches within a token budget.

    Returns one int64 array of input positions per batch, longest texts first; together they
    hold every position exactly once. Ties keep input order (a stable sort), so the plan is
    deterministic. A padded batch also ends before a text shorter than ``(1 - max_padding)``
    times its longest, so at most `max_padding` of its tokens are padding (a budget alone
    would pad a whole corpus of short texts to the longest one).
    """
    if not 0.0 <= max_padding < 1.0:
        raise HybridfastError(f"max_padding must be in [0, 1), not {max_padding}")
    if max_batch_tokens < 1:
        raise HybridfastError(f"max_batch_tokens must be at least 1, not {max_batch_tokens}")
    if max_batch_size is not None and max_batch_size < 1:
        raise HybridfastError(f"max_batch_size must be at least 1, not {max_batch_size}")
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1:
        raise HybridfastError(f"lengths must be one-dimensional, got shape {lengths.shape}")
    if lengths.size and lengths.min() < 1:
        raise HybridfastError("every text needs at least one token")
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    n = order.size
    while start < n:
        longest = int(lengths[order[start]])
        if packed:
            cumulative = np.cumsum(lengths[order[start:]])
            count = int(np.searchsorted(cumulative, max_batch_tokens, side="right"))
        else:
            floor = (1.0 - max_padding) * longest
            within = int(np.searchsorted(-lengths[order[start:]], -floor, side="right"))
            count = min(max_batch_tokens // longest, within)
        count = max(1, count)
        if max_batch_size is not None:
            count = min(count, max_batch_size)
        batches.append(order[start : start + count])
        start += count
    return batches


def batch_cost(lengths: Sequence[int] | np.ndarray, packed: bool) -> int:
    """Tokens a batch occupies: the sum of lengths (packed) or count × longest (padded)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0:
        return 0
    return int(lengths.sum()) if packed else int(lengths.size * lengths.max())


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to the batch's own longest: (input_ids [B, L], attention_mask [B, L])."""
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    width = int(lengths.max()) if lengths.size else 0
    input_ids = np.full((len(token_ids), width), pad_id, dtype=np.int64)
    mask = np.arange(width)[None, :] < lengths[:, None]
    input_ids[mask] = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in token_ids]) if width else []
    return input_ids, mask.astype(np.int64)


def pack_batch(
    token_ids: Sequence[Sequence[int]], position_offset: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Concatenate token id lists without padding.

    Returns (input_ids [T] int64, position_ids [T] int64 restarting at `position_offset` for
    each text, cu_seqlens [B+1] int32, longest length). XLM-R models number positions from
    ``padding_idx + 1``, which is the offset to pass for them.
    """
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    cu_seqlens = np.zeros(len(token_ids) + 1, dtype=np.int32)
    np.cumsum(lengths, out=cu_seqlens[1:])
    total = int(cu_seqlens[-1])
    input_ids = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in token_ids]) if total else np.zeros(0, np.int64)
    starts = np.repeat(cu_seqlens[:-1].astype(np.int64), lengths)
    position_ids = np.arange(total, dtype=np.int64) - starts + position_offset
    return input_ids, position_ids, cu_seqlens, int(lengths.max()) if lengths.size else 0
