"""sentence-transformers integration: the fused InfoNCE loss, its cached variant and hybrid batches for
`SentenceTransformerTrainer`.

Switching an ST training script takes one import and one line::

    from hybridfast.integrations.sentence_transformers import FusedMultipleNegativesRankingLoss
    loss = FusedMultipleNegativesRankingLoss(model)          # was: MultipleNegativesRankingLoss(model)

The loss. ST's MultipleNegativesRankingLoss (MNRL; Henderson et al. 2017, arXiv 1705.00652) takes an anchor
column a, a positive column p and h hard-negative columns n_1..n_h, embeds them, L2-normalizes them (cosine
similarity) and computes, with scale s = 1/τ,

    L = (1/B) Σ_i -log( exp(s·â_i·p̂_i) / Σ_{c ∈ [p; n_1; ...; n_h]} exp(s·â_i·ĉ) )

(InfoNCE, van den Oord et al. 2018, arXiv 1807.03748). `FusedMultipleNegativesRankingLoss` computes the same L
with `hybridfast.kernels.contrastive_loss`, which never materializes the B × B(1+h) logits on CUDA, and adds

- `symmetric`: the mean of the query → candidate and positive → query directions, ST's
  `directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"`;
- `mask_groups`: the batch's `label` column read as integer group ids; candidate j leaves query i's denominator
  when both share a group and j is not i's positive. Parallel data needs it: the same question's passage in
  another language, or another question about the same paragraph, is not a negative. `HybridPairs` writes that
  column, and ST's data collator hands a `label` column to the loss as `labels`;
- `gather_across_devices`: the candidates (and, for the symmetric loss, the queries) of every rank, gathered
  with gradient by `hybridfast.train.loss.global_contrastive_loss`.

The cached variant. `CachedFusedMultipleNegativesRankingLoss` embeds each column `mini_batch_size` rows at a
time, each chunk under non-reentrant activation checkpointing (`hybridfast.train.step.embed_in_chunks`, the
cached step of hybridfast's own trainer): the step stays one autograd graph with one backward, the backward
re-runs each chunk with the RNG state of its first run. ST's CachedMultipleNegativesRankingLoss (GradCache, Gao
et al. 2021, arXiv 2101.06983) instead backpropagates chunk by chunk from a hook, several backward calls per
step, which DeepSpeed ZeRO rejects ("Gradient computed twice for this partition", sentence-transformers issue
#3173). Both cost one extra encoder forward per step and keep one chunk's activations.

Hybrid batches. `HybridPairs` turns a parallel `datasets.Dataset` (`qid`, `lang`, `query`, `passage` columns,
optional `hard_negatives`, `group`, `article`) into a training dataset and a batch sampler for the trainer's
`batch_sampler=` argument: each step is monolingual with probability α and cross-lingual otherwise
(`hybridfast.sampling.HybridBatchSampler`; Elmahdy, Lin & Ahmad 2024, arXiv 2408.10536), and each row carries
its question's group id as `label`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Sampler

from hybridfast.kernels import contrastive_loss
from hybridfast.sampling import HybridBatchSampler, LanguageWeights
from hybridfast.train.collate import HARD_NEGATIVE_GROUP
from hybridfast.train.loss import global_contrastive_loss
from hybridfast.train.step import embed_in_chunks

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    from hybridfast.data import ParallelRecord

__all__ = [
    "CachedFusedMultipleNegativesRankingLoss",
    "FusedMultipleNegativesRankingLoss",
    "HybridPairBatchSampler",
    "HybridPairs",
]

DEFAULT_SCALE = 20.0
SYMMETRIC_DIRECTIONS = ("query_to_doc", "doc_to_query")


def _similarity(similarity_fct: Callable[[Tensor, Tensor], Tensor] | None) -> tuple[Callable, bool]:
    """ST's similarity function and whether the embeddings are L2-normalized before the dot products."""
    from sentence_transformers.util import cos_sim, dot_score

    if similarity_fct is None or similarity_fct is cos_sim:
        return cos_sim, True
    if similarity_fct is dot_score:
        return dot_score, False
    name = getattr(similarity_fct, "__name__", type(similarity_fct).__name__)
    raise ValueError(
        f"similarity_fct={name} is not supported: the fused loss scores dot products, so it takes "
        "sentence_transformers.util.cos_sim (the default, normalized embeddings) or util.dot_score"
    )


def _symmetric(symmetric: bool, directions: Sequence[str], partition_mode: str) -> bool:
    """`symmetric`, or ST's spelling of the same loss through `directions` and `partition_mode`."""
    directions = tuple(directions)
    if directions == ("query_to_doc",) and partition_mode == "joint":
        return bool(symmetric)
    if set(directions) == set(SYMMETRIC_DIRECTIONS) and len(directions) == 2 and partition_mode == "per_direction":
        return True
    raise ValueError(
        f"directions={directions} with partition_mode={partition_mode!r} is not supported: the fused loss computes "
        "InfoNCE (directions=('query_to_doc',)) and its symmetric form (directions=('query_to_doc', "
        "'doc_to_query'), partition_mode='per_direction', or symmetric=True); use ST's "
        "MultipleNegativesRankingLoss for the other combinations"
    )


def _positive_finite(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


class FusedMultipleNegativesRankingLoss(nn.Module):
    """Drop-in for ST's `MultipleNegativesRankingLoss`: InfoNCE over in-batch and hard negatives through
    `hybridfast.kernels.contrastive_loss` (see the module docstring for the formula).

    Args:
        model: the `SentenceTransformer` being trained.
        scale: s, the factor on the similarities (default 20.0); s = 1/τ, so scale=20.0 is temperature=0.05.
        similarity_fct: `sentence_transformers.util.cos_sim` (default: L2-normalized embeddings, as ST's MNRL) or
            `util.dot_score` (raw embeddings; set scale=1.0 for plain dot products).
        gather_across_devices: score the local queries against the candidates of every rank (global
            negatives, gathered with gradient).
        directions, partition_mode: ST's names for the loss variant; ("query_to_doc",) with "joint" (default)
            or ("query_to_doc", "doc_to_query") with "per_direction" (the symmetric loss).
        temperature: τ instead of `scale` (give one of them).
        symmetric: also the positive → query direction; the loss per query is the mean of both directions.
        mask_groups: read `labels` (the batch's `label` column, written by `HybridPairs`) as integer group ids
            ≥ 0 and leave each query's same-group candidates other than its positive out of its denominator;
            hard negatives are never masked.
        backend: `contrastive_loss` backend ("auto": fused Triton kernels on CUDA for large batches, row-chunked
            PyTorch on CPU).

    Inputs: (anchor, positive) pairs or (anchor, positive, negative_1, ..., negative_h) tuples, as for ST's MNRL.

    Example::

        from hybridfast.integrations.sentence_transformers import FusedMultipleNegativesRankingLoss

        loss = FusedMultipleNegativesRankingLoss(model)          # was: MultipleNegativesRankingLoss(model)
        trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
        trainer.train()
    """

    def __init__(
        self,
        model: SentenceTransformer,
        scale: float | None = None,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] | None = None,
        gather_across_devices: bool = False,
        directions: Sequence[str] = ("query_to_doc",),
        partition_mode: str = "joint",
        *,
        temperature: float | None = None,
        symmetric: bool = False,
        mask_groups: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.model = model
        if scale is not None and temperature is not None:
            raise ValueError(f"give scale or temperature, not both (scale={scale}, temperature={temperature}): "
                             "scale = 1/temperature")
        if temperature is not None:
            self.temperature = temperature
        else:
            self.scale = DEFAULT_SCALE if scale is None else scale
        self.similarity_fct, self.normalize = _similarity(similarity_fct)
        self.gather_across_devices = bool(gather_across_devices)
        self.symmetric = _symmetric(symmetric, directions, partition_mode)
        self.mask_groups = bool(mask_groups)
        self.backend = backend

    @property
    def scale(self) -> float:
        """s = 1/τ, the factor on the similarities."""
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        self._scale = _positive_finite("scale", value)
        self._temperature = 1.0 / self._scale

    @property
    def temperature(self) -> float:
        """τ = 1/s."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = _positive_finite("temperature", value)
        self._scale = 1.0 / self._temperature

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """The loss of one batch as `SentenceTransformerTrainer` passes it: one feature dict per column."""
        features = list(sentence_features)
        if len(features) < 2:
            raise ValueError(f"{type(self).__name__} needs an anchor and a positive column, got {len(features)} column(s)")
        return self.compute_loss_from_embeddings(self.embed_columns(features), labels)

    def embed_columns(self, features: list[dict[str, Tensor]]) -> list[Tensor]:
        """One [B, D] embedding tensor per column, as ST's MNRL embeds them (the candidate columns in one
        merged forward where they preprocess alike)."""
        from sentence_transformers.base.losses.merged_forward import embed_columns

        return embed_columns(self.model, features)

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """The loss from the column embeddings [anchors, positives, negatives_1, ...], each [B, D]."""
        if len(embeddings) < 2:
            raise ValueError(f"expected the anchor and at least one candidate column, got {len(embeddings)} column(s)")
        batch = embeddings[0].shape[0]
        for index, column in enumerate(embeddings):
            if column.dim() != 2 or column.shape[0] != batch:
                raise ValueError(f"column {index} has embeddings of shape {list(column.shape)}; every column "
                                 f"needs [{batch}, D] (one row per anchor)")
        queries, candidates = embeddings[0], torch.cat(list(embeddings[1:]))
        if self.normalize:
            queries, candidates = F.normalize(queries, p=2, dim=-1), F.normalize(candidates, p=2, dim=-1)
        tau, rest = _kernel_temperature(self._scale)
        if rest != 1.0:
            queries = queries * rest
        query_groups, candidate_groups = self._group_ids(labels, batch, len(embeddings) - 2, queries.device)
        if self.gather_across_devices:
            return global_contrastive_loss(
                queries, candidates, temperature=tau, query_groups=query_groups,
                candidate_groups=candidate_groups, symmetric=self.symmetric, backend=self.backend,
            )
        return contrastive_loss(
            queries, candidates, temperature=tau,
            group_ids=None if query_groups is None else (query_groups, candidate_groups),
            symmetric=self.symmetric, backend=self.backend,
        )

    def _group_ids(
        self, labels: Tensor | None, batch: int, negative_columns: int, device: torch.device
    ) -> tuple[Tensor | None, Tensor | None]:
        """[B] query and [B(1 + h)] candidate group ids from `labels` (None, None without `mask_groups`)."""
        if not self.mask_groups:
            return None, None
        if labels is None:
            raise ValueError("mask_groups=True reads group ids from the batch's 'label' column, but the batch has "
                             "none; train on HybridPairs.dataset or add an integer 'label' column")
        if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.dtype.is_complex \
                or labels.dtype == torch.bool or labels.shape != (batch,):
            described = f"{labels.dtype} tensor of shape {list(labels.shape)}" if isinstance(labels, Tensor) \
                else type(labels).__name__
            raise ValueError(f"mask_groups=True needs integer group ids of shape [{batch}] in the 'label' column, "
                             f"got a {described}")
        groups = labels.to(device=device, dtype=torch.long)
        if bool((groups < 0).any()):
            raise ValueError(f"group ids must be >= 0 ({HARD_NEGATIVE_GROUP} marks hard negatives), "
                             f"got {int(groups.min())}")
        negatives = torch.full((batch * negative_columns,), HARD_NEGATIVE_GROUP, dtype=torch.long, device=device)
        return groups, torch.cat([groups, negatives])

    def get_config_dict(self) -> dict[str, Any]:
        """The settings ST writes into the model card."""
        return {
            "scale": self.scale,
            "similarity_fct": self.similarity_fct.__name__,
            "gather_across_devices": self.gather_across_devices,
            "symmetric": self.symmetric,
            "mask_groups": self.mask_groups,
        }

    @property
    def citation(self) -> str:
        return """
@misc{oord2019representationlearningcontrastivepredictive,
      title={Representation Learning with Contrastive Predictive Coding},
      author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},
      year={2019},
      eprint={1807.03748},
      archivePrefix={arXiv},
      primaryClass={cs.LG},
      url={https://arxiv.org/abs/1807.03748},
}
"""


def _kernel_temperature(scale: float) -> tuple[float, float]:
    """(τ for the kernel, the factor left for the queries) whose product with the dot products is `scale`.

    The kernel holds τ in float32, and 1/s rarely is a float32 (1/20 is not): τ = fl32(1/s) would score with
    19.9999997 instead of 20. The rest, s·τ ≈ 1 ± 6e-8, multiplies the queries, so the logits are s·(q·c) as in
    ST's MNRL to float64 rounding; in float32 and bfloat16 the factor rounds to 1 and changes nothing.
    """
    tau = float(np.float32(1.0 / scale))
    return tau, scale * tau


class CachedFusedMultipleNegativesRankingLoss(FusedMultipleNegativesRankingLoss):
    """Drop-in for ST's `CachedMultipleNegativesRankingLoss`: the loss of `FusedMultipleNegativesRankingLoss`
    with the columns embedded `mini_batch_size` rows at a time under activation checkpointing.

    Stages (one autograd graph, one backward; `hybridfast.train.step.embed_in_chunks`):
        1. each column is cut into mini-batches (ST's own slicing: trailing padding trimmed per mini-batch,
           token-budget mini-batches with `mini_batch_num_tokens`), each embedded under non-reentrant
           `torch.utils.checkpoint`, which keeps only its inputs and its [K, D] embeddings;
        2. the loss over all B × B(1 + h) pairs (fused kernel), as the plain loss;
        3. the trainer's single backward re-runs each mini-batch with the RNG state of its first run (the same
           dropout masks) and pushes its embeddings' gradient through it.
    Peak activation memory is one mini-batch's, whatever the batch size; the compute is one extra encoder
    forward, as in GradCache. Unlike ST's cached loss, which calls backward once per mini-batch, it runs under
    DeepSpeed ZeRO-2/3 and DDP unchanged.

    Args:
        mini_batch_size: rows per encoder call (memory against speed; 32 by default, as ST).
        mini_batch_num_tokens: if set, mini-batches hold at most this many real tokens instead.
        The rest: as `FusedMultipleNegativesRankingLoss`.

    Example::

        loss = CachedFusedMultipleNegativesRankingLoss(model, mini_batch_size=64)   # was: CachedMultipleNegativesRankingLoss(...)
    """

    def __init__(
        self,
        model: SentenceTransformer,
        scale: float | None = None,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] | None = None,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        gather_across_devices: bool = False,
        directions: Sequence[str] = ("query_to_doc",),
        partition_mode: str = "joint",
        *,
        temperature: float | None = None,
        symmetric: bool = False,
        mask_groups: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            model, scale, similarity_fct, gather_across_devices, directions, partition_mode,
            temperature=temperature, symmetric=symmetric, mask_groups=mask_groups, backend=backend,
        )
        if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) or mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be a positive integer, got {mini_batch_size!r}")
        if mini_batch_num_tokens is not None and (
            isinstance(mini_batch_num_tokens, bool) or not isinstance(mini_batch_num_tokens, int)
            or mini_batch_num_tokens < 1
        ):
            raise ValueError(f"mini_batch_num_tokens must be a positive integer or None, got {mini_batch_num_tokens!r}")
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens

    def embed_columns(self, features: list[dict[str, Tensor]]) -> list[Tensor]:
        """Each column embedded in mini-batches, cached (checkpointed) when gradients are on."""
        # ST's private mini-batch helpers, so that padded, flattened (FA2) and multimodal inputs are cut exactly
        # as its CachedMultipleNegativesRankingLoss cuts them.
        from sentence_transformers.base.losses.gradcache import _create_minibatch, _minibatch_ranges

        embed = _ChunkEmbedder(self.model)
        columns = []
        for column in features:
            ranges = _minibatch_ranges(column, self.mini_batch_size, self.mini_batch_num_tokens)
            chunks = [_create_minibatch(column, begin, end) for begin, end in ranges]
            columns.append(embed_in_chunks(embed, chunks, cached=torch.is_grad_enabled()))
        return columns

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "mini_batch_size": self.mini_batch_size,
            "mini_batch_num_tokens": self.mini_batch_num_tokens,
        }

    @property
    def citation(self) -> str:
        return super().citation + """
@misc{gao2021scaling,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Luyu Gao and Yunyi Zhang and Jiawei Han and Jamie Callan},
    year={2021},
    eprint={2101.06983},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}
"""


class _ChunkEmbedder:
    """`embed` for `embed_in_chunks`: the first call on a mini-batch (the forward) goes through the model as the
    trainer wrapped it, the second (the checkpoint's recomputation, inside the backward) through the bare module.

    The recomputation only rebuilds the saved activations of the first run's graph; the gradients still flow
    through that graph, whose parameters and gradient hooks are the module's own. A wrapper's per-forward work
    belongs to forwards that precede a backward, not to a replay inside one: DDP broadcasts buffers and prepares
    its reducer, DeepSpeed's engine resets its backward flags and hooks the outputs. (Replaying through the
    wrappers happened to give the same weights in the 2-process DDP, ZeRO-2 and ZeRO-3 runs, because every
    parameter's gradient hook fires only after the last replay; the bare module needs no such argument.)
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.bare = _unwrap_data_parallel(model)
        self.seen: set[int] = set()

    def __call__(self, chunk: dict[str, Any]) -> Tensor:
        replay = id(chunk) in self.seen
        self.seen.add(id(chunk))
        # A copy: ST modules write their outputs into the feature dict, and the recomputation must see the inputs.
        return (self.bare if replay else self.model)(dict(chunk))["sentence_embedding"]


def _unwrap_data_parallel(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper or a DeepSpeed engine; any other model as it is (a compiled or FSDP
    model must recompute through its wrapper, which produces the activations it saved)."""
    from torch.nn.parallel import DistributedDataParallel

    engine = sys.modules.get("deepspeed.runtime.engine")
    if isinstance(model, DistributedDataParallel) or (engine is not None and isinstance(model, engine.DeepSpeedEngine)):
        return model.module
    return model


class HybridPairs:
    """Hybrid mono/cross-lingual training pairs for `SentenceTransformerTrainer` from a parallel dataset.

    `parallel` has one row per (question, language): columns `qid` (shared by the translations of one
    question), `lang`, `query`, `passage`, and optionally `hard_negatives` (list of passages), `group` (a
    shared group key) and `article`. Questions missing one of the selected languages are left out.

    `dataset` is the training dataset: one row per (question, query language, passage language), rendered on
    access from the parallel rows (a `datasets` transform) as columns `query`, `passage`, `negative_1..h` (with
    `hard_negatives = h`) and `label`, the question's group id (questions sharing a passage or a `group` share
    it). `batch_sampler` goes into `SentenceTransformerTrainingArguments(batch_sampler=...)`: each global step
    is monolingual with probability α (one language for all its pairs) and cross-lingual otherwise, drawn by
    `hybridfast.sampling.HybridBatchSampler` from `per_device_train_batch_size × world size` questions and split
    across the ranks. The trainer passes `label` to the loss: use `FusedMultipleNegativesRankingLoss(...,
    mask_groups=True)` so that a question's other-language passages and its paragraph's other questions are not
    taken as negatives (ST's losses ignore the column).

    Args:
        parallel: the parallel `datasets.Dataset`.
        alpha: probability that a step is monolingual (1: X-X-mono, 0: X-Y, 0.5: the paper's hybrid).
        languages, language_weights, hard_negatives, allow_parallel_duplicates, pairs_per_qid: as
            `HybridBatchSampler`.
        alpha_schedule: "exact" (default): exactly floor(α·S + 1/2) monolingual steps of every S, in a seeded
            random order, with S = `total_steps` or, when it is None, one epoch's steps; "bernoulli": an
            independent draw per step.
        total_steps: S for the exact schedule (needed with parallel duplicates, whose epochs vary in length).
        seed: the sampler's seed (default: the trainer's `seed`).

    Example::

        pairs = HybridPairs(parallel, alpha=0.5)
        args = SentenceTransformerTrainingArguments(output_dir="out", per_device_train_batch_size=32,
                                                    batch_sampler=pairs.batch_sampler)
        loss = FusedMultipleNegativesRankingLoss(model, mask_groups=True)
        SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs.dataset, loss=loss).train()

    `len(dataset)` counts every (question, language, language) combination; an epoch is `len(qids) //
    (batch size × world size)` steps (more with parallel duplicates, whose cross-lingual steps take fewer
    questions).
    """

    def __init__(
        self,
        parallel: Dataset,
        alpha: float,
        *,
        languages: Sequence[str] | None = None,
        language_weights: LanguageWeights = "uniform",
        hard_negatives: int = 0,
        allow_parallel_duplicates: bool = False,
        pairs_per_qid: int = 2,
        alpha_schedule: str = "exact",
        total_steps: int | None = None,
        seed: int | None = None,
    ) -> None:
        from datasets import Dataset

        if not isinstance(parallel, Dataset):
            raise TypeError(f"HybridPairs needs a datasets.Dataset with columns qid, lang, query, passage, got "
                            f"{type(parallel).__name__}")
        self.records = _parallel_records(parallel, hard_negatives > 0)
        self.options: dict[str, Any] = {
            "alpha": alpha, "languages": None if languages is None else list(languages),
            "language_weights": language_weights, "hard_negatives": hard_negatives,
            "allow_parallel_duplicates": allow_parallel_duplicates, "pairs_per_qid": pairs_per_qid,
            "alpha_schedule": alpha_schedule, "total_steps": total_steps,
        }
        self.seed = seed
        # Validates every option against the data with the sampler's own messages; fixes questions, languages
        # and group ids (independent of batch size and world size).
        layout = self._sampler(batch_size=1, world_size=1, seed=0)
        self.qids: list[str] = layout.qids
        self.languages: list[str] = layout.languages
        self.num_hard_negatives = hard_negatives
        rows = {(record.qid, record.lang): index for index, record in enumerate(self.records)}
        table = np.array([[rows[qid, lang] for lang in self.languages] for qid in self.qids], dtype=np.int64)
        groups = np.array([layout.group_id(qid) for qid in self.qids], dtype=np.int64)
        self._question = {qid: index for index, qid in enumerate(self.qids)}
        self._language = {lang: index for index, lang in enumerate(self.languages)}
        size = len(self.qids) * len(self.languages) ** 2
        renderer = _PairRenderer(parallel, table, groups, hard_negatives)
        self.dataset: Dataset = Dataset.from_dict({"pair": np.arange(size, dtype=np.int64)}).with_transform(renderer)

    def _sampler(self, batch_size: int, world_size: int, seed: int) -> HybridBatchSampler:
        options = dict(self.options)
        total_steps = options.pop("total_steps")
        exact_per_epoch = options["alpha_schedule"] == "exact" and total_steps is None
        return HybridBatchSampler(
            self.records, batch_size, seed=seed, world_size=world_size, rank=0, total_steps=total_steps,
            total_epochs=1 if exact_per_epoch else None, **options,
        )

    def pair_id(self, qid: str, query_lang: str, passage_lang: str) -> int:
        """The `dataset` row of question `qid` asked in `query_lang` against its passage in `passage_lang`."""
        languages = len(self.languages)
        return (self._question[qid] * languages + self._language[query_lang]) * languages + self._language[passage_lang]

    def pair(self, pair_id: int) -> tuple[str, str, str]:
        """(qid, query language, passage language) of `dataset` row `pair_id`."""
        languages = len(self.languages)
        question, rest = divmod(int(pair_id), languages * languages)
        return self.qids[question], self.languages[rest // languages], self.languages[rest % languages]

    def batch_sampler(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool = True,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> HybridPairBatchSampler:
        """The batch sampler for `SentenceTransformerTrainingArguments(batch_sampler=pairs.batch_sampler)`; the
        trainer calls it with its training dataset (which must be `pairs.dataset`), its per-device batch size
        and its seed. Steps are always full, so `drop_last` and `generator` have nothing to do."""
        if self.records is None:
            raise RuntimeError("this HybridPairs was restored from pickled training arguments, which keep its "
                               "options but not its data; build it again from the parallel dataset")
        if len(dataset) != len(self.dataset) or dataset.column_names != self.dataset.column_names:
            raise ValueError(f"the trainer's train_dataset ({len(dataset)} rows, columns {dataset.column_names}) is "
                             "not HybridPairs.dataset: pass train_dataset=pairs.dataset with batch_sampler="
                             "pairs.batch_sampler")
        return HybridPairBatchSampler(self, batch_size, world_size=_trainer_world_size(),
                                      seed=seed if self.seed is None else self.seed)

    def __getstate__(self) -> dict[str, Any]:
        # The trainer pickles its arguments, this sampler factory among them, into every checkpoint's
        # training_args.bin: keep the options there, not a copy of the training data.
        return {"options": self.options, "seed": self.seed, "records": None}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)


class HybridPairBatchSampler(Sampler[list[int]]):
    """Batches of `HybridPairs.dataset` rows, one global hybrid step after another.

    Each global step of `per_device_batch × world_size` pairs (`HybridBatchSampler.global_batch`) is yielded as
    `world_size` consecutive per-device batches in rank order; accelerate's `BatchSamplerShard` hands batch k to
    rank k mod world_size, so every rank gets its slice of every step and all ranks agree on the batch type.
    `set_epoch` (the trainer calls it) moves to another epoch's permutation and languages.
    """

    def __init__(self, pairs: HybridPairs, batch_size: int, *, world_size: int = 1, seed: int = 0) -> None:
        self.pairs = pairs
        self.sampler = pairs._sampler(batch_size=batch_size, world_size=world_size, seed=seed)
        self.batch_size = batch_size
        self.drop_last = True
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.sampler.steps_in_epoch(self.epoch) * self.world_size

    def __iter__(self) -> Iterator[list[int]]:
        size = self.batch_size
        for step in range(self.sampler.steps_in_epoch(self.epoch)):
            rows = [self.pairs.pair_id(*pair) for pair in self.sampler.global_batch(self.epoch, step)]
            for rank in range(self.world_size):
                yield rows[rank * size : (rank + 1) * size]


class _PairRenderer:
    """The `datasets` transform of `HybridPairs.dataset`: pair ids -> query, passage, negatives and group id."""

    def __init__(self, parallel: Dataset, rows: np.ndarray, groups: np.ndarray, hard_negatives: int) -> None:
        plain = parallel.with_format(None)
        self.queries = plain.select_columns(["query"])
        self.passages = plain.select_columns(["passage", "hard_negatives"] if hard_negatives else ["passage"])
        self.rows = rows
        self.groups = groups
        self.hard_negatives = hard_negatives

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        pairs = np.asarray(batch["pair"], dtype=np.int64)
        languages = self.rows.shape[1]
        question, rest = np.divmod(pairs, languages * languages)
        query_rows = self.rows[question, rest // languages].tolist()
        passage_rows = self.rows[question, rest % languages].tolist()
        passages = self.passages[passage_rows]
        out: dict[str, list[Any]] = {"query": self.queries[query_rows]["query"], "passage": passages["passage"]}
        for k in range(self.hard_negatives):
            out[f"negative_{k + 1}"] = [pool[k % len(pool)] for pool in passages["hard_negatives"]]
        out["label"] = self.groups[question].tolist()
        return out


def _parallel_records(parallel: Dataset, need_negatives: bool) -> list[ParallelRecord]:
    """`ParallelRecord`s from the rows of a parallel dataset, with errors that name the column or the row."""
    from hybridfast.data import ParallelRecord

    required = ["qid", "lang", "query", "passage"] + (["hard_negatives"] if need_negatives else [])
    missing = [name for name in required if name not in parallel.column_names]
    if missing:
        raise ValueError(f"the parallel dataset lacks column(s) {missing} (it has {parallel.column_names}); "
                         f"HybridPairs needs {required}")
    optional = [name for name in ("hard_negatives", "group", "article") if name in parallel.column_names]
    columns = {name: list(parallel.with_format(None)[name]) for name in required + optional}
    records, seen = [], {}
    for row in range(len(parallel)):
        qid, lang = str(columns["qid"][row]), columns["lang"][row]
        for name in ("lang", "query", "passage"):
            if not isinstance(columns[name][row], str) or not columns[name][row]:
                raise ValueError(f"parallel dataset row {row}: {name} must be a non-empty string, "
                                 f"got {columns[name][row]!r}")
        if (qid, lang) in seen:
            raise ValueError(f"parallel dataset rows {seen[qid, lang]} and {row} both hold question {qid!r} in "
                             f"{lang!r}; one row per (qid, lang)")
        seen[qid, lang] = row
        group = columns["group"][row] if "group" in columns else None
        article = columns["article"][row] if "article" in columns else None
        records.append(ParallelRecord(
            qid=qid, lang=lang, query=columns["query"][row], passage=columns["passage"][row],
            hard_negatives=tuple(columns["hard_negatives"][row] or ()) if "hard_negatives" in columns else (),
            group=None if group is None else str(group), article=None if article is None else str(article),
        ))
    return records


def _trainer_world_size() -> int:
    """The number of processes the trainer's data loader is sharded over.

    The world size of torch.distributed, checked against accelerate's count: accelerate counts a DeepSpeed
    run without a GPU as one process and would not shard the batches, so every rank would train on all of them.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 1
    world = torch.distributed.get_world_size()
    from accelerate import PartialState

    counted = PartialState().num_processes
    if counted != world:
        raise RuntimeError(
            f"accelerate counts {counted} process(es) but torch.distributed has {world}: the trainer would not "
            "split the batches over the ranks (accelerate does this for DeepSpeed on CPU-only machines)"
        )
    return world
