"""HybridBatchSampler: batch types vs alpha, language weights, determinism, resume, ranks, groups."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from hybridfast.data import ParallelRecord
from hybridfast.sampling import HybridBatchSampler, SamplerConfigError

LANGS = ["de", "en", "es", "zh"]


def parallel_records(n_qids: int = 64, langs: list[str] = LANGS, negatives: int = 0) -> list[ParallelRecord]:
    return [
        ParallelRecord(
            qid=f"q{i}",
            lang=lang,
            query=f"{lang} question {i}",
            passage=f"{lang} passage {i}",
            hard_negatives=tuple(f"{lang} negative {i}.{k}" for k in range(negatives)),
        )
        for i in range(n_qids)
        for lang in langs
    ]


def draw(sampler: HybridBatchSampler, epochs: int):
    batches = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches.extend(sampler)
    return batches


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_mono_fraction_follows_alpha(alpha: float) -> None:
    sampler = HybridBatchSampler(parallel_records(), batch_size=4, alpha=alpha, seed=1)
    batches = draw(sampler, 40)
    n = sampler.stats.batches
    assert n == len(batches) >= 600
    # Binomial: 5 standard deviations (and exact at the ends).
    assert abs(sampler.stats.mono_fraction - alpha) <= 5 * math.sqrt(alpha * (1 - alpha) / n) + 1e-12
    for batch in batches:
        if batch.mono:
            assert set(batch.query_langs) == set(batch.passage_langs) and len(set(batch.query_langs)) == 1
            assert batch.query_langs == batch.passage_langs
        else:
            assert all(q != p for q, p in zip(batch.query_langs, batch.passage_langs, strict=True))


def test_explicit_language_weights_shape_the_draws() -> None:
    weights = {"de": 1.0, "en": 4.0, "es": 2.0, "zh": 1.0}
    sampler = HybridBatchSampler(parallel_records(), batch_size=4, alpha=1.0, language_weights=weights, seed=2)
    draw(sampler, 60)
    counts = sampler.stats.mono_lang_counts
    n = sum(counts.values())
    for lang, w in weights.items():
        p = w / sum(weights.values())
        assert abs(counts[lang] / n - p) <= 5 * math.sqrt(p * (1 - p) / n), (lang, counts)


def test_cross_lingual_language_counts_follow_weights() -> None:
    weights = {"de": 1.0, "en": 3.0, "es": 1.0, "zh": 1.0}
    sampler = HybridBatchSampler(parallel_records(), batch_size=8, alpha=0.0, language_weights=weights, seed=3)
    draw(sampler, 30)
    queries = sampler.stats.query_lang_counts
    n = sum(queries.values())
    assert abs(queries["en"] / n - 0.5) < 0.05
    assert sampler.stats.passage_lang_counts["en"] > sampler.stats.passage_lang_counts["de"]


def test_size_weights_are_proportional_to_records_per_language() -> None:
    records = parallel_records(32, ["de", "en"]) + [
        ParallelRecord(qid=f"extra{i}", lang="en", query="q", passage=f"p{i}") for i in range(32)
    ]
    sampler = HybridBatchSampler(records, batch_size=4, alpha=1.0, language_weights="size")
    assert sampler.weights.tolist() == pytest.approx([1 / 3, 2 / 3])
    assert len(sampler.dropped_qids) == 32 and len(sampler.qids) == 32


def test_deterministic_and_seed_dependent() -> None:
    def texts(seed: int) -> list[list[str]]:
        return [b.queries + b.passages for b in draw(HybridBatchSampler(parallel_records(), 4, 0.5, seed=seed), 2)]

    assert texts(7) == texts(7)
    assert texts(7) != texts(8)


def test_resume_mid_epoch_continues_identically() -> None:
    full = HybridBatchSampler(parallel_records(), 4, 0.5, seed=5)
    expected = draw(full, 2)
    partial = HybridBatchSampler(parallel_records(), 4, 0.5, seed=5)
    head = [batch for _, batch in zip(range(5), partial, strict=False)]
    state = partial.state_dict()
    resumed = HybridBatchSampler(parallel_records(), 4, 0.5, seed=5)
    resumed.load_state_dict(state)
    tail = list(resumed)
    resumed.set_epoch(1)
    tail += list(resumed)
    assert [b.queries for b in head + tail] == [b.queries for b in expected]
    assert resumed.stats.batches == full.stats.batches
    with pytest.raises(SamplerConfigError, match="seed"):
        HybridBatchSampler(parallel_records(), 4, 0.5, seed=6).load_state_dict(state)


def test_ranks_split_one_global_batch() -> None:
    world = 3
    ranks = [HybridBatchSampler(parallel_records(), 4, 0.5, seed=9, rank=r, world_size=world) for r in range(world)]
    single = HybridBatchSampler(parallel_records(), 12, 0.5, seed=9)
    assert len(ranks[0]) == len(single) == 64 // 12
    for step, parts in enumerate(zip(*ranks, strict=True)):
        assert len({part.mono for part in parts}) == 1
        qids = [qid for part in parts for qid in part.qids]
        assert len(qids) == len(set(qids)) == 12
        assert qids == single.batch(0, step).qids


def test_parallel_duplicates_carry_group_ids() -> None:
    sampler = HybridBatchSampler(parallel_records(), 8, 0.0, allow_parallel_duplicates=True, pairs_per_qid=2, seed=4)
    assert sampler.has_shared_groups
    batch = next(iter(sampler))
    assert len(batch) == 8
    counts = Counter(batch.qids)
    assert max(counts.values()) == 2
    for qid in counts:
        groups = {g for q, g in zip(batch.qids, batch.group_ids, strict=True) if q == qid}
        assert len(groups) == 1
        pairs = [(q, p) for q_id, q, p in zip(batch.qids, batch.query_langs, batch.passage_langs, strict=True) if q_id == qid]
        assert len(set(pairs)) == len(pairs)
    default = next(iter(HybridBatchSampler(parallel_records(), 8, 0.0, seed=4)))
    assert len(set(default.qids)) == 8 and not HybridBatchSampler(parallel_records(), 8, 0.0).has_shared_groups


def test_shared_passages_share_a_group() -> None:
    records = [
        ParallelRecord(qid=f"q{i}", lang=lang, query=f"{lang} q{i}", passage=f"{lang} paragraph {i // 2}")
        for i in range(8)
        for lang in ("de", "en")
    ]
    sampler = HybridBatchSampler(records, 4, 0.5)
    assert sampler.num_groups == 4 and sampler.has_shared_groups
    assert sampler._group_of["q0"] == sampler._group_of["q1"] != sampler._group_of["q2"]


def test_hard_negatives_travel_with_their_pair() -> None:
    sampler = HybridBatchSampler(parallel_records(negatives=2), 4, 0.0, hard_negatives=3, seed=1)
    batch = next(iter(sampler))
    for qid, p_lang, negatives in zip(batch.qids, batch.passage_langs, batch.hard_negatives, strict=True):
        i = qid[1:]
        assert negatives == [f"{p_lang} negative {i}.0", f"{p_lang} negative {i}.1", f"{p_lang} negative {i}.0"]
    with pytest.raises(SamplerConfigError, match="hard_negatives"):
        HybridBatchSampler(parallel_records(), 4, 0.5, hard_negatives=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"batch_size": 65}, "batch_size"),
        ({"batch_size": 33, "world_size": 2}, "batch_size"),
        ({"languages": ["de", "xx"]}, "languages: unknown language 'xx'"),
        ({"languages": ["de"], "alpha": 0.5}, "alpha"),
        ({"language_weights": "zipf"}, "language_weights"),
        ({"language_weights": {"de": 1.0, "fr": 1.0}}, "unknown language 'fr'"),
    ],
)
def test_bad_options_name_the_option(kwargs: dict, match: str) -> None:
    options = {"batch_size": 4, "alpha": 0.5} | kwargs
    with pytest.raises(SamplerConfigError, match=match):
        HybridBatchSampler(parallel_records(), **options)


def take_steps(sampler: HybridBatchSampler, steps: int) -> list:
    """The next `steps` global steps, moving to the next epoch as the training loop does."""
    batches: list = []
    while len(batches) < steps:
        for batch in sampler:
            batches.append(batch)
            if len(batches) == steps:
                return batches
        sampler.set_epoch(sampler.epoch + 1)
    return batches


@pytest.mark.parametrize(("alpha", "total"), [(0.5, 25), (0.3, 40), (0.6, 7), (0.0, 20), (1.0, 20), (0.25, 2)])
def test_exact_schedule_has_exactly_round_alpha_s_mono_steps(alpha: float, total: int) -> None:
    # 64 questions, batch 4: 16 steps per epoch, so most runs cross an epoch boundary.
    sampler = HybridBatchSampler(parallel_records(), 4, alpha, seed=3, alpha_schedule="exact", total_steps=total)
    batches = take_steps(sampler, total)
    expected = math.floor(alpha * total + 0.5)
    assert sampler.scheduled_mono_steps == expected
    assert sum(b.mono for b in batches) == sampler.stats.mono_batches == expected
    assert sampler.stats.cross_batches == total - expected
    # Steps past S start a new block of S with exactly as many monolingual steps again.
    assert sum(b.mono for b in take_steps(sampler, total)) == expected


def test_exact_schedule_order_is_seeded_and_random() -> None:
    def pattern(seed: int) -> list[bool]:
        sampler = HybridBatchSampler(parallel_records(), 4, 0.5, seed=seed, alpha_schedule="exact", total_steps=40)
        return [b.mono for b in take_steps(sampler, 40)]

    first = pattern(11)
    assert first == pattern(11) and first != pattern(12)
    assert sum(first) == 20
    # A random order, not a block of monolingual steps followed by a block of cross-lingual ones.
    switches = sum(a != b for a, b in zip(first, first[1:], strict=False))
    assert switches > 5


def test_exact_schedule_in_epochs() -> None:
    sampler = HybridBatchSampler(parallel_records(), 4, 0.5, seed=1, alpha_schedule="exact", total_epochs=3)
    assert sampler.total_steps == 3 * 16
    assert sum(b.mono for b in draw(sampler, 3)) == 24


def test_exact_schedule_resumes_mid_run_across_epochs() -> None:
    options = {"seed": 5, "alpha_schedule": "exact", "total_steps": 30}
    expected = take_steps(HybridBatchSampler(parallel_records(), 4, 0.5, **options), 30)
    partial = HybridBatchSampler(parallel_records(), 4, 0.5, **options)
    head = take_steps(partial, 19)  # stops in the second epoch
    state = json.loads(json.dumps(partial.state_dict()))  # as written to a checkpoint
    resumed = HybridBatchSampler(parallel_records(), 4, 0.5, **options)
    resumed.load_state_dict(state)
    tail = take_steps(resumed, 11)
    assert [(b.mono, b.queries, b.passages) for b in head + tail] == [(b.mono, b.queries, b.passages) for b in expected]
    assert resumed.stats.mono_batches == 15 and resumed.stats.batches == 30
    with pytest.raises(SamplerConfigError, match="total_steps"):
        HybridBatchSampler(parallel_records(), 4, 0.5, seed=5, alpha_schedule="exact", total_steps=31).load_state_dict(state)
    with pytest.raises(SamplerConfigError, match="alpha_schedule"):
        HybridBatchSampler(parallel_records(), 4, 0.5, seed=5).load_state_dict(state)


def test_exact_schedule_ranks_agree_with_one_process() -> None:
    world = 2
    options = {"seed": 9, "alpha_schedule": "exact", "total_steps": 13}
    ranks = [HybridBatchSampler(parallel_records(), 4, 0.5, rank=r, world_size=world, **options) for r in range(world)]
    single = HybridBatchSampler(parallel_records(), 8, 0.5, **options)
    per_rank = [take_steps(sampler, 13) for sampler in ranks]
    together = take_steps(single, 13)
    for step, parts in enumerate(zip(*per_rank, strict=True)):
        assert parts[0].mono == parts[1].mono == together[step].mono
        assert parts[0].qids + parts[1].qids == together[step].qids
    assert sum(b.mono for b in together) == 7


def test_exact_schedule_with_parallel_duplicates_counts_steps_over_epochs() -> None:
    # Cross-lingual steps use half as many questions here, so epochs differ in length; the schedule still
    # counts global steps over all epochs.
    options = {"seed": 2, "alpha_schedule": "exact", "total_steps": 40, "allow_parallel_duplicates": True}
    sampler = HybridBatchSampler(parallel_records(), 8, 0.5, **options)
    assert sum(b.mono for b in take_steps(sampler, 40)) == 20
    lengths = [sampler.steps_in_epoch(epoch) for epoch in range(sampler.epoch + 1)]
    assert len(lengths) >= 3 and len(set(lengths)) > 1
    assert [sampler.epoch_start(e) for e in range(len(lengths))] == [sum(lengths[:e]) for e in range(len(lengths))]
    with pytest.raises(SamplerConfigError, match="alpha_schedule = 'exact' with parallel duplicates needs a step count"):
        HybridBatchSampler(parallel_records(), 8, 0.5, alpha_schedule="exact", total_epochs=2,
                           allow_parallel_duplicates=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha_schedule": "exact"}, "needs the run's length"),
        ({"alpha_schedule": "exact", "total_steps": 10, "total_epochs": 1}, "needs the run's length"),
        ({"alpha_schedule": "exact", "total_steps": 0}, "total_steps must be at least 1"),
        ({"alpha_schedule": "sometimes"}, "alpha_schedule must be one of exact, bernoulli"),
    ],
)
def test_bad_schedule_options_name_the_option(kwargs: dict, match: str) -> None:
    with pytest.raises(SamplerConfigError, match=match):
        HybridBatchSampler(parallel_records(), 4, 0.5, **kwargs)


def test_config_picks_the_schedule_and_tells_the_sampler_the_run_length() -> None:
    from hybridfast.train.config import ConfigError, parse_config
    from hybridfast.train.loop import build_sampler

    def sampler(sampling: dict, train: dict) -> HybridBatchSampler:
        config = parse_config({"sampling": {"batch_size": 4, **sampling}, "train": train}, source="run.toml")
        return build_sampler(config, parallel_records(), 0, 1)

    exact = sampler({"alpha": 0.5}, {"steps": 21})  # "exact" is the default
    assert exact.alpha_schedule == "exact" and exact.total_steps == 21 and exact.scheduled_mono_steps == 11
    assert sampler({"alpha": 0.5}, {"epochs": 2}).total_steps == 32
    bernoulli = sampler({"alpha": 0.5, "alpha_schedule": "bernoulli"}, {"steps": 21})
    assert bernoulli.alpha_schedule == "bernoulli" and bernoulli.scheduled_mono_steps is None
    with pytest.raises(ConfigError, match="run.toml: sampling.alpha_schedule: must be one of exact, bernoulli"):
        sampler({"alpha_schedule": "Exact"}, {"steps": 2})
    with pytest.raises(ConfigError, match="run.toml: sampling.alpha_schedule = 'exact' with parallel duplicates"):
        sampler({"allow_parallel_duplicates": True}, {"epochs": 2})
