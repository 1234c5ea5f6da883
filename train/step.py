"""One training step, two shapes: plain, and cached (chunked embedding under activation checkpointing).

A step embeds B queries and C = B(1 + h) candidates (positives, then h hard negatives per pair) with the shared
encoder, gathers the candidates of every rank and takes the InfoNCE loss of `hybridfast.kernels`:

    q = e(queries), c = e(candidates), L = global_contrastive_loss(q, c, τ), then one backward of L.

Plain (`train.embed_chunk_size = 0`): one encoder call for the queries and one for the candidates, every
activation kept for the backward. The encoder's activations grow with B, so they, not the fused loss, cap the
batch.

Cached (`train.embed_chunk_size = K`): the texts are sorted by length and embedded K at a time, each chunk inside
`torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`, which keeps only the chunk's inputs and its [K, D]
embeddings. The loss over all B × C pairs and its gradient with respect to every embedding come from the fused
kernel; the single backward then reaches the chunks one at a time (autograd runs the latest-created chunk
first), re-runs each chunk's forward with the RNG state it had in the first pass (the same dropout masks) and
pushes that chunk's cached embedding gradient through it. Peak activation memory is one chunk's, whatever B is;
the compute is one extra encoder forward, as in GradCache (Gao et al. 2021, arXiv 2101.06983).

Why activation checkpointing and not GradCache's two passes: GradCache and sentence-transformers'
CachedMultipleNegativesRankingLoss embed without gradients, backpropagate the loss to the embeddings, then call
backward once per chunk. Several backward calls per optimizer step are what DeepSpeed ZeRO rejects ("Gradient
computed twice for this partition") and what DDP would all-reduce several times. Here the step is one autograd
graph and one backward: DDP's reducer and DeepSpeed's gradient hooks fire once per parameter, global negatives,
group masks, hard negatives, a learnable τ and the symmetric loss need nothing special, and the gradients are
those of the plain step computed with the same chunking (tested in float64).

Padding-free (`train.padding_free`): each encoder call is one packed token stream (varlen attention, no padding
tokens) instead of a [b, L] padded tensor, the same path as `FusedEncoder.encode`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from hybridfast.train.loss import global_contrastive_loss

if TYPE_CHECKING:
    from hybridfast.encoder import FusedEncoder
    from hybridfast.train.collate import TrainingInputs

Chunk = TypeVar("Chunk")


def embed_in_chunks(embed: Callable[[Chunk], torch.Tensor], chunks: Sequence[Chunk], *, cached: bool) -> torch.Tensor:
    """Concatenate `embed(chunk)` over `chunks` along dim 0; with `cached`, each call under non-reentrant
    activation checkpointing (only the chunk's input and output are kept; the backward recomputes the chunk with
    the RNG state of its first run). The mechanism shared by the trainer and the sentence-transformers losses.

    Each chunk must hold its tensors, already on the device, in a pytree (tuple, named tuple, list or dict):
    checkpointing saves and restores the RNG of the devices it finds there, so a chunk built on the device
    inside `embed` would get other CUDA dropout masks in the recomputation.
    """
    if not chunks:
        raise ValueError("embed_in_chunks needs at least one chunk")
    if not cached:
        return torch.cat([embed(chunk) for chunk in chunks])
    return torch.cat([checkpoint(embed, chunk, use_reentrant=False, preserve_rng_state=True) for chunk in chunks])


def chunk_rows(rows: Sequence[Sequence[int]], chunk_size: int) -> tuple[list[list[Sequence[int]]], torch.Tensor | None]:
    """Cut token-id rows into encoder calls of at most `chunk_size` texts (0: one call of all rows).

    Chunked rows are sorted longest first, so that each padded chunk wastes few tokens; the second result is the
    inverse permutation that puts the concatenated chunk outputs back in input order (None when unsorted).
    """
    if chunk_size <= 0 or chunk_size >= len(rows):
        return [list(rows)], None
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    chunks = [[rows[i] for i in order[start : start + chunk_size]] for start in range(0, len(order), chunk_size)]
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return chunks, inverse


class ContrastiveDualEncoder(nn.Module):
    """The shared encoder plus the (fixed or learnable) temperature τ = exp(log τ).

    One forward embeds the queries and the candidates, so DDP and DeepSpeed see exactly one forward and one
    backward per step, plain or cached.
    """

    def __init__(
        self,
        encoder: FusedEncoder,
        temperature: float,
        learn_temperature: bool,
        *,
        embed_chunk_size: int = 0,
        padding_free: bool = False,
    ):
        super().__init__()
        if embed_chunk_size < 0:
            raise ValueError(f"embed_chunk_size must be 0 (off) or positive, not {embed_chunk_size}")
        self.encoder = encoder
        self.embed_chunk_size = embed_chunk_size
        self.padding_free = padding_free
        if padding_free:
            encoder.enable_packing()
        log_tau = torch.tensor(math.log(temperature), dtype=torch.float32)
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_temperature", log_tau)

    def embed_rows(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """[n] token-id rows -> [n, D] embeddings in input order, in chunks when `embed_chunk_size` is set."""
        chunks, inverse = chunk_rows(rows, self.embed_chunk_size)
        batches = [self.encoder.token_batch(chunk, packed=self.padding_free) for chunk in chunks]
        embeddings = embed_in_chunks(self.encoder.embed_tokens, batches, cached=self.embed_chunk_size > 0)
        return embeddings if inverse is None else embeddings[inverse.to(embeddings.device)]

    def forward(
        self, query_rows: Sequence[Sequence[int]], candidate_rows: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token-id rows of the queries and candidates -> (queries [B, D], candidates [C, D], τ)."""
        return self.embed_rows(query_rows), self.embed_rows(candidate_rows), self.log_temperature.float().exp()


@dataclass
class StepOutput:
    """The loss to backpropagate and the τ it used."""

    loss: torch.Tensor
    temperature: torch.Tensor


def contrastive_step(
    model: nn.Module,
    inputs: TrainingInputs,
    *,
    use_groups: bool,
    symmetric: bool = False,
    loss_backend: str = "auto",
) -> StepOutput:
    """Forward and loss of one step (plain or cached, as `model` — a possibly wrapped `ContrastiveDualEncoder` —
    was built); the caller runs the one backward (`accelerator.backward`) and the optimizer step."""
    queries, candidates, tau = model(inputs.query_rows, inputs.candidate_rows)
    loss = global_contrastive_loss(
        queries,
        candidates,
        temperature=tau,
        query_groups=inputs.query_groups if use_groups else None,
        candidate_groups=inputs.candidate_groups if use_groups else None,
        symmetric=symmetric,
        backend=loss_backend,
    )
    return StepOutput(loss=loss, temperature=tau)
