"""Hybrid (monolingual + cross-lingual) batch sampling over parallel QA records.

After Elmahdy, Lin & Ahmad 2024, "Synergistic Approach for Simultaneous Optimization of
Monolingual, Cross-lingual, and Multilingual Information Retrieval" (arXiv 2408.10536):
every training batch is drawn over questions that exist in several languages, and

    with probability α  the batch is **monolingual**: one language L ~ w for the whole batch,
                        every pair is (query_L, passage_L);
    otherwise           the batch is **cross-lingual**: each pair draws q_lang ~ w and
                        p_lang ~ w restricted to languages ≠ q_lang.

α = 1 is the X-X-mono baseline, α = 0 the X-Y baseline and α = 0.5 the paper's hybrid.
The language weights w are uniform, proportional to the number of records per language
("size"), or an explicit mapping.

How "with probability α" is realized (`alpha_schedule`):

    "exact"      over the run's S global steps, exactly M = floor(α·S + 1/2) are monolingual, at
                 positions drawn as a seeded random M-subset of {0, …, S−1}: the order is random,
                 the mix is not. Steps past S (if the loop keeps going) repeat the construction
                 in further blocks of S with fresh positions;
    "bernoulli"  each global step is monolingual independently with probability α, so the
                 realized fraction is Binomial(S, α)/S: with S = 25 its standard deviation is
                 0.1, which is why controlled experiments use "exact".

Determinism and distribution. Within an epoch the questions are visited in one permutation
drawn from (seed, epoch); everything about global step s (languages, pair order, and the
batch type under "bernoulli") is drawn from a generator seeded by (seed, epoch, s), never from
the rank; the "exact" positions come from (seed, block) and the step's index counted over
all epochs. Every rank
builds the same global batch of `batch_size × world_size` pairs and keeps its own slice, so
the ranks see distinct pairs and agree on the batch type. A question id appears once per
global batch unless parallel duplicates are allowed; then a cross-lingual batch may carry
the same question in several language pairs and the group ids let the loss mask them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridfast.errors import HybridfastError

if TYPE_CHECKING:
    from hybridfast.data import ParallelRecord

LanguageWeights = str | Mapping[str, float]
ALPHA_SCHEDULES = ("exact", "bernoulli")
# Entropy word that keeps the exact schedule's generator apart from the per-step ones ("alpha").
_SCHEDULE_TAG = 0x616C706861


class SamplerConfigError(HybridfastError, ValueError):
    """A sampler option is invalid for the records it was given; the message names the option."""


@dataclass(frozen=True)
class HybridBatch:
    """One rank's share of a global hybrid batch: texts, languages and group ids.

    `group_ids[i]` identifies the question (or the record's `group`, e.g. the paragraph a
    question was asked about): pairs with equal group ids are parallel or share a passage,
    so the loss must not treat one as the other's negative. `hard_negatives[i]` holds the
    passage-language hard negatives of pair i (the same count for every pair).
    """

    queries: list[str]
    passages: list[str]
    query_langs: list[str]
    passage_langs: list[str]
    qids: list[str]
    group_ids: list[int]
    hard_negatives: list[list[str]]
    mono: bool
    epoch: int
    step: int

    def __len__(self) -> int:
        return len(self.queries)


@dataclass
class SamplerStats:
    """What the sampler actually drew: batch types and per-language counts (this rank's pairs)."""

    mono_batches: int = 0
    cross_batches: int = 0
    query_lang_counts: Counter[str] = field(default_factory=Counter)
    passage_lang_counts: Counter[str] = field(default_factory=Counter)
    mono_lang_counts: Counter[str] = field(default_factory=Counter)

    @property
    def batches(self) -> int:
        return self.mono_batches + self.cross_batches

    @property
    def mono_fraction(self) -> float:
        return self.mono_batches / self.batches if self.batches else 0.0

    def language_counts(self) -> Counter[str]:
        """Texts drawn per language, queries and passages together."""
        return self.query_lang_counts + self.passage_lang_counts

    def record(self, batch: HybridBatch) -> None:
        if batch.mono:
            self.mono_batches += 1
            self.mono_lang_counts[batch.query_langs[0]] += 1
        else:
            self.cross_batches += 1
        self.query_lang_counts.update(batch.query_langs)
        self.passage_lang_counts.update(batch.passage_langs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mono_batches": self.mono_batches,
            "cross_batches": self.cross_batches,
            "query_lang_counts": dict(self.query_lang_counts),
            "passage_lang_counts": dict(self.passage_lang_counts),
            "mono_lang_counts": dict(self.mono_lang_counts),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SamplerStats:
        return cls(
            mono_batches=int(raw["mono_batches"]),
            cross_batches=int(raw["cross_batches"]),
            query_lang_counts=Counter(raw["query_lang_counts"]),
            passage_lang_counts=Counter(raw["passage_lang_counts"]),
            mono_lang_counts=Counter(raw["mono_lang_counts"]),
        )


@dataclass(frozen=True)
class _StepPlan:
    mono: bool
    start: int
    count: int


class HybridBatchSampler:
    """Draws hybrid batches of (query, passage) text pairs from parallel records.

    Args:
        records: `ParallelRecord`s; records sharing a `qid` are one question in several
            languages. Questions missing any selected language are left out (see
            `dropped_qids`), so every kept question can be drawn in every batch type.
        batch_size: pairs per rank and step; the global batch is `batch_size × world_size`.
        alpha: probability that a global step is monolingual.
        languages: languages to draw from (default: all languages in the records).
        language_weights: "uniform", "size" (proportional to each language's record count)
            or a mapping language -> positive weight.
        seed: base seed; with the epoch and the step it fixes every draw.
        allow_parallel_duplicates: let a cross-lingual batch hold one question in several
            language pairs (`pairs_per_qid` of them); the group ids mark them for masking.
        pairs_per_qid: language pairs per question in a cross-lingual batch when duplicates
            are allowed.
        hard_negatives: hard negatives per pair, taken from the passage-language record
            (cycled when it has fewer); every record needs at least one when this is > 0.
        alpha_schedule: "exact" (exactly floor(α·S + 1/2) monolingual steps out of S, in a
            seeded random order) or "bernoulli" (an independent draw per step); see the
            module docstring.
        total_steps: S, the run's global steps; "exact" needs it or `total_epochs`.
        total_epochs: the run's length in epochs instead of steps (S = epochs × steps per
            epoch); only where the epoch length does not depend on the batch types, i.e.
            without parallel duplicates.
        rank, world_size: this process's place in distributed training.

    Iterating yields the rest of the current epoch from the current position; call
    `set_epoch` for the next one. `state_dict` / `load_state_dict` resume mid-epoch.
    """

    def __init__(
        self,
        records: Sequence[ParallelRecord],
        batch_size: int,
        alpha: float,
        languages: Sequence[str] | None = None,
        language_weights: LanguageWeights = "uniform",
        seed: int = 0,
        allow_parallel_duplicates: bool = False,
        pairs_per_qid: int = 2,
        hard_negatives: int = 0,
        alpha_schedule: str = "bernoulli",
        total_steps: int | None = None,
        total_epochs: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        if alpha_schedule not in ALPHA_SCHEDULES:
            raise SamplerConfigError(f"alpha_schedule must be one of {', '.join(ALPHA_SCHEDULES)}, not {alpha_schedule!r}")
        if not 0.0 <= alpha <= 1.0:
            raise SamplerConfigError(f"alpha must be in [0, 1], not {alpha}")
        if batch_size < 1:
            raise SamplerConfigError(f"batch_size must be at least 1, not {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise SamplerConfigError(f"rank {rank} is not in a world of size {world_size}")
        if pairs_per_qid < 1:
            raise SamplerConfigError(f"pairs_per_qid must be at least 1, not {pairs_per_qid}")
        if hard_negatives < 0:
            raise SamplerConfigError(f"hard_negatives must be >= 0, not {hard_negatives}")
        if not records:
            raise SamplerConfigError("no training records")
        self.batch_size = batch_size
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.allow_parallel_duplicates = allow_parallel_duplicates
        self.num_hard_negatives = hard_negatives

        present = Counter(record.lang for record in records)
        if languages is None or len(languages) == 0:
            languages = sorted(present)
        unknown = [lang for lang in languages if lang not in present]
        if unknown:
            raise SamplerConfigError(f"languages: unknown language {unknown[0]!r}; the data has {sorted(present)}")
        if len(set(languages)) != len(languages):
            raise SamplerConfigError(f"languages: duplicates in {list(languages)}")
        self.languages: list[str] = list(languages)
        if alpha < 1.0 and len(self.languages) < 2:
            raise SamplerConfigError(
                f"alpha = {alpha} asks for cross-lingual batches but only {self.languages} is available; "
                "use alpha = 1 or more languages"
            )
        self.weights = self._language_weights(language_weights, present)
        drawable = int((self.weights > 0).sum())
        self.pairs_per_qid = max(1, min(pairs_per_qid, drawable * (drawable - 1))) if allow_parallel_duplicates else 1

        by_qid: dict[str, dict[str, ParallelRecord]] = {}
        for record in records:
            if record.lang in self.languages:
                by_qid.setdefault(record.qid, {})[record.lang] = record
        wanted = set(self.languages)
        self.qids: list[str] = sorted(qid for qid, langs in by_qid.items() if set(langs) == wanted)
        self.dropped_qids: list[str] = sorted(set(by_qid) - set(self.qids))
        self._records = {qid: by_qid[qid] for qid in self.qids}
        if self.global_batch_size > len(self.qids):
            raise SamplerConfigError(
                f"batch_size: a global batch of {self.global_batch_size} pairs (batch_size {batch_size} × "
                f"{world_size} processes) is larger than the {len(self.qids)} questions present in all of "
                f"{self.languages}"
            )
        if hard_negatives:
            for qid, langs in self._records.items():
                for lang, record in langs.items():
                    if not record.hard_negatives:
                        raise SamplerConfigError(
                            f"hard_negatives = {hard_negatives} but question {qid!r} ({lang}) has none"
                        )
        self._group_of = _group_ids(self._records)
        self.num_groups = len(set(self._group_of.values()))

        self.alpha_schedule = alpha_schedule
        self.total_steps = self._schedule_length(total_steps, total_epochs)
        self.epoch = 0
        self.step = 0
        self.stats = SamplerStats()
        self._plans: dict[int, list[_StepPlan]] = {}
        self._epoch_starts: dict[int, int] = {0: 0}
        self._mono_blocks: dict[int, np.ndarray] = {}

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def group_id(self, qid: str) -> int:
        """The group id of question `qid`, the one `HybridBatch.group_ids` carries for its pairs."""
        return self._group_of[qid]

    @property
    def has_shared_groups(self) -> bool:
        """True when a global batch can hold two pairs of one group (the loss must mask them)."""
        return self.pairs_per_qid > 1 or self.num_groups < len(self.qids)

    def _language_weights(self, spec: LanguageWeights, present: Counter[str]) -> np.ndarray:
        if isinstance(spec, str):
            if spec == "uniform":
                raw = {lang: 1.0 for lang in self.languages}
            elif spec == "size":
                raw = {lang: float(present[lang]) for lang in self.languages}
            else:
                raise SamplerConfigError(
                    f"language_weights must be 'uniform', 'size' or a mapping language -> weight, not {spec!r}"
                )
        else:
            extra = sorted(set(spec) - set(self.languages))
            if extra:
                raise SamplerConfigError(f"language_weights: unknown language {extra[0]!r}; drawing from {self.languages}")
            raw = {lang: float(spec.get(lang, 0.0)) for lang in self.languages}
            bad = [lang for lang, w in raw.items() if not np.isfinite(w) or w < 0]
            if bad:
                raise SamplerConfigError(f"language_weights: weight of {bad[0]!r} must be finite and >= 0")
            positive = [lang for lang, w in raw.items() if w > 0]
            if not positive or (self.alpha < 1.0 and len(positive) < 2):
                raise SamplerConfigError("language_weights: need positive weights for at least two languages")
        weights = np.array([raw[lang] for lang in self.languages], dtype=np.float64)
        return weights / weights.sum()

    def _schedule_length(self, total_steps: int | None, total_epochs: int | None) -> int | None:
        """S for the exact schedule (None under "bernoulli", which needs no horizon)."""
        if self.alpha_schedule == "bernoulli":
            return None
        if (total_steps is None) == (total_epochs is None):
            raise SamplerConfigError(
                "alpha_schedule = 'exact' needs the run's length: give total_steps or total_epochs (one of them)"
            )
        if total_steps is not None:
            if total_steps < 1:
                raise SamplerConfigError(f"total_steps must be at least 1, not {total_steps}")
            return int(total_steps)
        assert total_epochs is not None
        if total_epochs < 1:
            raise SamplerConfigError(f"total_epochs must be at least 1, not {total_epochs}")
        if self.pairs_per_qid > 1:
            raise SamplerConfigError(
                "alpha_schedule = 'exact' with parallel duplicates needs a step count: an epoch's length then "
                "depends on its batch types, so give the run's length in steps"
            )
        return int(total_epochs) * (len(self.qids) // self.global_batch_size)

    @property
    def scheduled_mono_steps(self) -> int | None:
        """M = floor(α·S + 1/2), the monolingual steps of the exact schedule (None under "bernoulli")."""
        if self.total_steps is None:
            return None
        return int(np.floor(self.alpha * self.total_steps + 0.5))

    def is_mono(self, global_step: int, epoch: int, step: int) -> bool:
        """The batch type of global step `global_step` (counted over all epochs; `step` within `epoch`)."""
        if self.total_steps is None:
            return bool(self._step_rng(epoch, step).random() < self.alpha)
        block, position = divmod(global_step, self.total_steps)
        if block not in self._mono_blocks:
            order = np.random.default_rng(np.random.SeedSequence([self.seed, _SCHEDULE_TAG], spawn_key=(block,)))
            mask = np.zeros(self.total_steps, dtype=bool)
            mask[order.permutation(self.total_steps)[: self.scheduled_mono_steps]] = True
            self._mono_blocks = {block: mask}
        return bool(self._mono_blocks[block][position])

    def epoch_start(self, epoch: int) -> int:
        """The global step index (over all epochs) of `epoch`'s first step."""
        known = max(e for e in self._epoch_starts if e <= epoch)
        while known < epoch:
            self._epoch_starts[known + 1] = self._epoch_starts[known] + len(self._plan(known))
            known += 1
        return self._epoch_starts[epoch]

    def _plan(self, epoch: int) -> list[_StepPlan]:
        """Batch types and permutation slices of every global step of `epoch` (cached)."""
        if epoch not in self._plans:
            offset = self.epoch_start(epoch)
            plans: list[_StepPlan] = []
            start, step, total = 0, 0, len(self.qids)
            while True:
                mono = self.is_mono(offset + step, epoch, step)
                count = self.global_batch_size if mono else -(-self.global_batch_size // self.pairs_per_qid)
                if start + count > total:
                    break
                plans.append(_StepPlan(mono, start, count))
                start, step = start + count, step + 1
            self._plans = {epoch: plans}
        return self._plans[epoch]

    def _step_rng(self, epoch: int, step: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(epoch, step + 1)))

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(epoch, 0))).permutation(
            len(self.qids)
        )

    def steps_in_epoch(self, epoch: int | None = None) -> int:
        """Global steps in `epoch` (default: the current one)."""
        return len(self._plan(self.epoch if epoch is None else epoch))

    def __len__(self) -> int:
        return self.steps_in_epoch()

    def set_epoch(self, epoch: int) -> None:
        """Move to the start of `epoch`."""
        self.epoch = int(epoch)
        self.step = 0

    def global_batch(self, epoch: int, step: int) -> list[tuple[str, str, str]]:
        """The (qid, q_lang, p_lang) pairs of global step `step` of `epoch`, in rank order."""
        plan = self._plan(epoch)[step]
        rng = self._step_rng(epoch, step)
        rng.random()  # the Bernoulli batch-type draw (used by the plan, or unused): the stream stays the same
        qids = [self.qids[i] for i in self._permutation(epoch)[plan.start : plan.start + plan.count]]
        n_lang = len(self.languages)
        if plan.mono:
            lang = self.languages[rng.choice(n_lang, p=self.weights)]
            return [(qid, lang, lang) for qid in qids]
        pairs: list[tuple[str, str, str]] = []
        for qid in qids:
            for q, p in self._cross_pairs(rng, self.pairs_per_qid):
                pairs.append((qid, self.languages[q], self.languages[p]))
        if self.pairs_per_qid > 1:
            pairs = [pairs[i] for i in rng.permutation(len(pairs))[: self.global_batch_size]]
        return pairs

    def _cross_pairs(self, rng: np.random.Generator, count: int) -> list[tuple[int, int]]:
        """`count` distinct ordered language pairs, q ~ w and p ~ w restricted to p ≠ q."""
        chosen: list[tuple[int, int]] = []
        while len(chosen) < count:
            q = int(rng.choice(len(self.languages), p=self.weights))
            rest = self.weights.copy()
            rest[q] = 0.0
            if rest.sum() == 0:
                continue
            p = int(rng.choice(len(self.languages), p=rest / rest.sum()))
            if (q, p) not in chosen:
                chosen.append((q, p))
        return chosen

    def batch(self, epoch: int, step: int) -> HybridBatch:
        """This rank's slice of global step `step` of `epoch` (no position change)."""
        pairs = self.global_batch(epoch, step)[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        h = self.num_hard_negatives
        negatives = []
        for qid, _, p_lang in pairs:
            pool = list(self._records[qid][p_lang].hard_negatives)
            negatives.append([pool[i % len(pool)] for i in range(h)] if h else [])
        return HybridBatch(
            queries=[self._records[qid][q].query for qid, q, _ in pairs],
            passages=[self._records[qid][p].passage for qid, _, p in pairs],
            query_langs=[q for _, q, _ in pairs],
            passage_langs=[p for _, _, p in pairs],
            qids=[qid for qid, _, _ in pairs],
            group_ids=[self._group_of[qid] for qid, _, _ in pairs],
            hard_negatives=negatives,
            mono=self._plan(epoch)[step].mono,
            epoch=epoch,
            step=step,
        )

    def __iter__(self) -> Iterator[HybridBatch]:
        while self.step < self.steps_in_epoch():
            batch = self.batch(self.epoch, self.step)
            self.step += 1
            self.stats.record(batch)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Position and statistics as plain JSON-serializable values."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "seed": self.seed,
            "alpha": self.alpha,
            "alpha_schedule": self.alpha_schedule,
            "total_steps": self.total_steps,
            "global_batch_size": self.global_batch_size,
            "num_qids": len(self.qids),
            "stats": self.stats.to_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at the saved position; the sampler must be built with the same data and options."""
        for key, mine in (
            ("seed", self.seed),
            ("alpha", self.alpha),
            ("alpha_schedule", self.alpha_schedule),
            ("total_steps", self.total_steps),
            ("global_batch_size", self.global_batch_size),
            ("num_qids", len(self.qids)),
        ):
            # Checkpoints written before the exact schedule existed drew per step (Bernoulli).
            saved = state.get(key, {"alpha_schedule": "bernoulli", "total_steps": None}.get(key))
            if saved != mine:
                raise SamplerConfigError(
                    f"cannot resume: the checkpoint's sampler has {key} = {saved}, this run has {mine}"
                )
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.stats = SamplerStats.from_dict(state["stats"])


def _group_ids(records: Mapping[str, Mapping[str, ParallelRecord]]) -> dict[str, int]:
    """Group id per question: questions sharing a record `group` or the same passage text in some
    language (XQuAD: questions about one paragraph) end up in one group (union-find)."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for qid, langs in records.items():
        for lang, record in langs.items():
            keys = [f"passage:{lang}:{record.passage}"]
            if record.group is not None:
                keys.append(f"group:{record.group}")
            for key in keys:
                parent[find(key)] = find(f"qid:{qid}")
    roots = {qid: find(f"qid:{qid}") for qid in records}
    index = {root: i for i, root in enumerate(sorted(set(roots.values())))}
    return {qid: index[root] for qid, root in roots.items()}
