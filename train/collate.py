"""Turn a `HybridBatch` of texts into the token ids and group ids one training step needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hybridfast.encoder import FusedEncoder
from hybridfast.sampling import HybridBatch

HARD_NEGATIVE_GROUP = -1
"""Group id of hard-negative candidates: never equal to a query's group, so never masked."""


@dataclass
class TrainingInputs:
    """Token-id rows of B queries and C = B(1 + h) candidates (positives first, then the hard negatives pair by
    pair), plus their [B] and [C] group ids. Rows stay ragged: the step pads or packs them per encoder call."""

    query_rows: list[list[int]]
    candidate_rows: list[list[int]]
    query_groups: torch.Tensor
    candidate_groups: torch.Tensor

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens in the batch."""
        return sum(map(len, self.query_rows)) + sum(map(len, self.candidate_rows))


def collate(encoder: FusedEncoder, batch: HybridBatch) -> TrainingInputs:
    """Tokenize queries and candidates with the encoder's prefixes and its separate query / passage max lengths."""
    candidates = list(batch.passages) + [text for negatives in batch.hard_negatives for text in negatives]
    groups = torch.tensor(batch.group_ids, dtype=torch.long)
    negatives = len(candidates) - len(batch.passages)
    return TrainingInputs(
        query_rows=encoder.token_ids(batch.queries, "query"),
        candidate_rows=encoder.token_ids(candidates, "passage"),
        query_groups=groups,
        candidate_groups=torch.cat([groups, torch.full((negatives,), HARD_NEGATIVE_GROUP, dtype=torch.long)]),
    )
