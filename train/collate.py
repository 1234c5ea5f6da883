"""Turn a `HybridBatch` of texts into the tensors one training step needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hybridfast.encoder import FusedEncoder
from hybridfast.sampling import HybridBatch

HARD_NEGATIVE_GROUP = -1
"""Group id of hard-negative candidates: never equal to a query's group, so never masked."""


@dataclass
class TrainingInputs:
    """Token ids for B queries and C = B(1 + h) candidates (positives first) plus group ids."""

    query_ids: torch.Tensor
    query_mask: torch.Tensor
    passage_ids: torch.Tensor
    passage_mask: torch.Tensor
    query_groups: torch.Tensor
    candidate_groups: torch.Tensor

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens in the batch."""
        return int(self.query_mask.sum()) + int(self.passage_mask.sum())

    def to(self, device: torch.device) -> TrainingInputs:
        return TrainingInputs(**{name: getattr(self, name).to(device) for name in self.__dataclass_fields__})


def collate(encoder: FusedEncoder, batch: HybridBatch) -> TrainingInputs:
    """Tokenize queries and passages (then hard negatives, pair by pair) with the encoder's
    prefixes and its separate query / passage max lengths."""
    candidates = list(batch.passages) + [text for negatives in batch.hard_negatives for text in negatives]
    queries = encoder.tokenize(batch.queries, "query")
    passages = encoder.tokenize(candidates, "passage")
    groups = torch.tensor(batch.group_ids, dtype=torch.long)
    negatives = len(candidates) - len(batch.passages)
    return TrainingInputs(
        query_ids=queries["input_ids"],
        query_mask=queries["attention_mask"],
        passage_ids=passages["input_ids"],
        passage_mask=passages["attention_mask"],
        query_groups=groups,
        candidate_groups=torch.cat([groups, torch.full((negatives,), HARD_NEGATIVE_GROUP, dtype=torch.long)]),
    )
