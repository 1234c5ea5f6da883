"""Contrastive loss against the global batch: candidates gathered from every rank with gradient.

Rank r holds B queries q_r, C = B(1 + h) candidates c_r (its B positives, then h hard negatives
per pair) and label y_ri = i for query i. The candidates of all W ranks are gathered in rank
order, c = [c_0; ...; c_{W-1}], with `torch.distributed.nn.functional.all_gather`, whose
backward sums each slice's gradient over the ranks (reduce-scatter). Rank r computes

    L_r = (1/B) Σ_i -log( exp(q_ri·c_{rC+i} / τ) / Σ_{j ∉ masked(ri)} exp(q_ri·c_j / τ) )

with `hybridfast.kernels.contrastive_loss` (InfoNCE, van den Oord et al. 2018; in-batch
negatives as in DPR, Karpukhin et al. 2020), where masked(ri) are the candidates of the same
group as query ri other than its positive (parallel duplicates, a shared paragraph).

Why no world-size factor: the loss of one process over the concatenated batch is
L = (1/WB) Σ_r Σ_i ℓ_ri = (1/W) Σ_r L_r. The backward on rank r leaves in its parameters
∂L_r/∂θ through q_r plus Σ_r' ∂L_r'/∂c_r · ∂c_r/∂θ through the gather's summing backward, so
the ranks' gradients add up to ∂(Σ_r L_r)/∂θ, and DDP / DeepSpeed averaging (÷W) yields exactly
∂L/∂θ. One backward per step; nothing is recomputed or backpropagated twice.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist

from hybridfast.kernels import contrastive_loss


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from all ranks along dim 0, keeping the autograd graph."""
    _, world = _distributed()
    if world == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # Deprecated in favour of a private functional API; its summing backward is what we need.
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*all_gather is deprecated")
        return torch.cat(all_gather(tensor.contiguous()), dim=0)


def gather_ids(ids: torch.Tensor) -> torch.Tensor:
    """Concatenate integer ids (no gradient) from all ranks along dim 0."""
    _, world = _distributed()
    if world == 1:
        return ids
    out = [torch.empty_like(ids) for _ in range(world)]
    dist.all_gather(out, ids.contiguous())
    return torch.cat(out, dim=0)


def global_contrastive_loss(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    *,
    temperature: float | torch.Tensor,
    query_groups: torch.Tensor | None = None,
    candidate_groups: torch.Tensor | None = None,
    symmetric: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """InfoNCE of this rank's queries against the candidates of every rank.

    Args:
        queries: [B, d] local query embeddings; query i's positive is local candidate i.
        candidates: [C, d] local candidates, C >= B and equal on every rank: the B positives
            first, then any hard negatives.
        temperature: τ, a float or a 0-dim tensor (learnable temperature keeps its gradient).
        query_groups, candidate_groups: [B] and [C] integer group ids; a candidate of the
            query's group other than its positive is left out of the denominator. Pass both
            or neither.
        symmetric: also the candidate → query direction over each query's positive column, the mean of both
            directions per query (`contrastive_loss`'s definition). The column softmax of local positive i runs
            over the queries of every rank (gathered with gradient), so the loss is the one-process loss of the
            concatenated batch whatever the world size.
        backend: `hybridfast.kernels.contrastive_loss` backend.

    Returns:
        The mean loss over the local queries; see the module docstring for why averaging
        the ranks' gradients gives the gradient of the loss over the concatenated batch.
    """
    if (query_groups is None) != (candidate_groups is None):
        raise ValueError("pass both query_groups and candidate_groups, or neither")
    if candidates.shape[0] < queries.shape[0]:
        raise ValueError(f"{candidates.shape[0]} candidates for {queries.shape[0]} queries: the positives come first")
    rank, world = _distributed()
    batch = queries.shape[0]
    all_candidates = gather_with_grad(candidates)
    labels = torch.arange(batch, device=queries.device) + rank * candidates.shape[0]
    group_ids = None
    if query_groups is not None and candidate_groups is not None:
        query_groups, candidate_groups = query_groups.to(queries.device), candidate_groups.to(queries.device)
        group_ids = (query_groups, gather_ids(candidate_groups))
    if not symmetric or world == 1:
        return contrastive_loss(
            queries, all_candidates, labels=labels, temperature=temperature, group_ids=group_ids,
            symmetric=symmetric, reduction="mean", backend=backend,
        )
    forward = contrastive_loss(
        queries, all_candidates, labels=labels, temperature=temperature, group_ids=group_ids,
        reduction="mean", backend=backend,
    )
    return (forward + column_contrastive_loss(
        candidates[:batch], gather_with_grad(queries), temperature=temperature,
        column_groups=None if candidate_groups is None else candidate_groups[:batch],
        all_query_groups=None if query_groups is None else gather_ids(query_groups),
        first_query=rank * batch, backend=backend,
    )) / 2


def column_contrastive_loss(
    positives: torch.Tensor,
    all_queries: torch.Tensor,
    *,
    temperature: float | torch.Tensor,
    column_groups: torch.Tensor | None,
    all_query_groups: torch.Tensor | None,
    first_query: int,
    backend: str = "auto",
) -> torch.Tensor:
    """The candidate → query direction of the symmetric loss for positives spread over ranks, as an InfoNCE with
    the roles swapped: positive column c_i (of local query i, row `first_query + i` of `all_queries`) against every
    query k, k kept unless it shares c_i's group and k ≠ i — `contrastive_loss`'s column mask, since query i is the
    only one whose positive is c_i. Returns the mean over the local positives."""
    labels = torch.arange(positives.shape[0], device=positives.device) + first_query
    group_ids = None if column_groups is None else (column_groups, all_query_groups)
    return contrastive_loss(
        positives, all_queries, labels=labels, temperature=temperature, group_ids=group_ids,
        reduction="mean", backend=backend,
    )
