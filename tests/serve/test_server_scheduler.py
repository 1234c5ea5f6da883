"""The scheduler on its own (no HTTP): token bound, round-robin token-budget batches, cancellation, deadlines.

The "encoder" here maps each token-id row to ``[sum(ids), len(ids), first id]``, so every returned row says
which input it came from; the HTTP tests run the same scheduler in front of a real model.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from hybridfast.serve.metrics import ServerMetrics
from hybridfast.serve.scheduler import (
    DeadlineExceeded,
    EncoderFailed,
    Job,
    JobQueue,
    QueueFull,
    RequestTooLarge,
    Scheduler,
    SchedulerStopped,
)

POISON = -1


class RecordingEncoder:
    """Rows that identify their input; records each call's rows; optionally slow, optionally raising on POISON."""

    def __init__(self, seconds_per_batch: float = 0.0):
        self.seconds_per_batch = seconds_per_batch
        self.batches: list[list[list[int]]] = []
        self._lock = threading.Lock()

    def __call__(self, token_ids: list[list[int]]) -> np.ndarray:
        with self._lock:
            self.batches.append([list(ids) for ids in token_ids])
        time.sleep(self.seconds_per_batch)
        if any(POISON in ids for ids in token_ids):
            raise RuntimeError("poisoned input")
        return identity_rows(token_ids)


def identity_rows(token_ids: Sequence[Sequence[int]]) -> np.ndarray:
    return np.array([[sum(ids), len(ids), ids[0]] for ids in token_ids], dtype=np.float32).reshape(-1, 3)


def job_of(token_ids: list[list[int]]) -> Job:
    return Job(token_ids, asyncio.get_running_loop().create_future(), np.empty((len(token_ids), 3), np.float32))


def rows(lengths: Sequence[int], tag: int) -> list[list[int]]:
    """Inputs of the given lengths whose first id is `tag` (so a batch entry names its job)."""
    return [[tag] + [i + 1] * (n - 1) for i, n in enumerate(lengths)]


# ------------------------------------------------------------------ JobQueue -----------------------


def test_batches_keep_the_budget_and_deliver_every_input_once() -> None:
    """Property over random jobs and budgets: each input is taken exactly once, in its job's order, and a batch
    holds at most `max_batch_tokens` real tokens unless it is a single input longer than the budget."""

    async def check(seed: int) -> None:
        rng = random.Random(seed)
        budget = rng.choice([8, 32, 100])
        queue = JobQueue(max_batch_tokens=budget, max_queue_tokens=10**6, max_wait_s=0.0)
        jobs = [job_of(rows([rng.randint(1, 40) for _ in range(rng.randint(1, 30))], tag)) for tag in range(6)]
        for job in jobs:
            queue.append(job)
        assert queue.waiting_tokens == sum(len(ids) for job in jobs for ids in job.token_ids)
        taken: dict[int, list[int]] = {id(job): [] for job in jobs}
        while len(queue):
            batch = await queue.next_batch()
            assert batch.tokens == sum(len(ids) for ids in batch.token_ids())
            assert batch.tokens <= budget or len(batch.entries) == 1
            for job, index in batch.entries:
                taken[id(job)].append(index)
        assert queue.waiting_tokens == 0
        assert all(taken[id(job)] == list(range(len(job.token_ids))) for job in jobs)

    for seed in range(25):
        asyncio.run(check(seed))


def test_a_small_job_joins_the_next_batch_behind_a_large_one() -> None:
    async def scenario() -> None:
        queue = JobQueue(max_batch_tokens=40, max_queue_tokens=10**6, max_wait_s=0.0)
        large = job_of(rows([10] * 100, tag=1))
        queue.append(large)
        first = await queue.next_batch()
        assert {job for job, _ in first.entries} == {large} and first.tokens == 40
        small = job_of(rows([10, 10], tag=2))
        queue.append(small)
        second = await queue.next_batch()
        assert [job for job, _ in second.entries].count(small) == 2  # both of its inputs, in one batch
        assert [job for job, _ in second.entries].count(large) == 2  # the large one keeps its share
        assert len(queue) == 1

    asyncio.run(scenario())


def test_jobs_take_turns_inside_a_batch_and_open_batches_in_turn() -> None:
    async def scenario() -> None:
        queue = JobQueue(max_batch_tokens=30, max_queue_tokens=10**6, max_wait_s=0.0)
        a, b, c = (job_of(rows([10] * 6, tag)) for tag in (1, 2, 3))
        for job in (a, b, c):
            queue.append(job)
        order = [[job for job, _ in (await queue.next_batch()).entries] for _ in range(6)]
        assert order[:3] == [[a, b, c], [b, c, a], [c, a, b]]  # round-robin; the opener rotates
        assert all(sorted(map(id, batch)) == sorted(map(id, (a, b, c))) for batch in order)

    asyncio.run(scenario())


def test_an_input_longer_than_the_budget_runs_alone_when_its_turn_comes() -> None:
    async def scenario() -> None:
        queue = JobQueue(max_batch_tokens=16, max_queue_tokens=10**6, max_wait_s=0.0)
        chatty = job_of(rows([4] * 40, tag=1))
        long = job_of(rows([50], tag=2))
        queue.append(chatty)
        queue.append(long)
        batches = [(await queue.next_batch()).entries for _ in range(3)]
        assert [job for job, _ in batches[0]] == [chatty] * 4  # the long input does not fit beside them
        assert batches[1] == [(long, 0)]  # next batch: its turn to open, so it runs alone
        assert [job for job, _ in batches[2]] == [chatty] * 4

    asyncio.run(scenario())


def test_the_bound_counts_tokens_and_frees_them_on_removal() -> None:
    async def scenario() -> None:
        queue = JobQueue(max_batch_tokens=10, max_queue_tokens=100, max_wait_s=0.0)
        with pytest.raises(RequestTooLarge, match="101 tokens, more than the whole queue takes"):
            queue.append(job_of(rows([50, 51], tag=1)))
        first = job_of(rows([30, 30], tag=1))
        queue.append(first)
        with pytest.raises(QueueFull, match="60 of 100 queued tokens") as full:
            queue.append(job_of(rows([41], tag=2)), retry_after_s=7)
        assert full.value.retry_after_s == 7
        queue.append(job_of(rows([40], tag=3)))  # exactly at the bound
        assert queue.waiting_tokens == 100
        queue.remove(first)
        assert queue.waiting_tokens == 40 and len(queue) == 1
        queue.append(job_of(rows([60], tag=4)))

    asyncio.run(scenario())


def test_finished_jobs_are_dropped_at_dequeue() -> None:
    async def scenario() -> None:
        queue = JobQueue(max_batch_tokens=100, max_queue_tokens=10**6, max_wait_s=0.0)
        gone, alive = job_of(rows([5, 5], tag=1)), job_of(rows([5], tag=2))
        queue.append(gone)
        queue.append(alive)
        gone.result.cancel()  # e.g. its deadline passed or it failed, without the queue being told
        batch = await queue.next_batch()
        assert batch.entries == [(alive, 0)]
        assert len(queue) == 0 and queue.waiting_tokens == 0

    asyncio.run(scenario())


# ------------------------------------------------------------------ Scheduler ----------------------


def scheduler_for(encoder: RecordingEncoder, **kwargs: float) -> Scheduler:
    settings = {"max_batch_tokens": 40, "max_queue_tokens": 10**6, "max_wait_ms": 0.0, **kwargs}
    return Scheduler(encoder, 3, metrics=ServerMetrics(), **settings)  # type: ignore[arg-type]


def test_results_come_back_in_input_order_across_interleaved_batches() -> None:
    async def scenario() -> None:
        scheduler = scheduler_for(RecordingEncoder())
        await scheduler.start()
        inputs = [rows([random.Random(tag).randint(1, 30) for _ in range(25)], tag) for tag in range(5)]
        jobs = [scheduler.submit(token_ids, timeout_s=30) for token_ids in inputs]
        results = await asyncio.gather(*(job.result for job in jobs))
        for token_ids, got in zip(inputs, results, strict=True):
            np.testing.assert_array_equal(got, identity_rows(token_ids))
        assert scheduler.metrics.inputs.value() == 125
        await scheduler.stop()

    asyncio.run(scenario())


def test_a_cancelled_job_stops_at_the_next_batch_boundary() -> None:
    async def scenario() -> None:
        encoder = RecordingEncoder(seconds_per_batch=0.05)
        scheduler = scheduler_for(encoder)
        await scheduler.start()
        doomed = scheduler.submit(rows([10] * 40, tag=7), timeout_s=30)  # 10 batches of 4
        while not encoder.batches:
            await asyncio.sleep(0.005)
        scheduler.cancel(doomed)
        assert scheduler.queue.waiting_tokens == 0  # waiting inputs left the queue at once
        later = scheduler.submit(rows([10], tag=8), timeout_s=30)
        await later.result
        await scheduler.stop()
        runs_of_doomed = [batch for batch in encoder.batches if any(ids[0] == 7 for ids in batch)]
        assert len(runs_of_doomed) <= 2  # the batch running at cancel time (and at most one starting with it)
        assert doomed.result.cancelled() and scheduler.metrics.cancelled.value() == 1

    asyncio.run(scenario())


def test_a_deadline_fails_the_job_and_drops_its_remaining_inputs() -> None:
    async def scenario() -> None:
        encoder = RecordingEncoder(seconds_per_batch=0.05)
        scheduler = scheduler_for(encoder)
        await scheduler.start()
        slow = scheduler.submit(rows([10] * 200, tag=5), timeout_s=0.2)  # 50 batches: cannot finish in time
        with pytest.raises(DeadlineExceeded, match=r"within 0\.2 s \(--request-timeout\); \d+ of 200 inputs"):
            await slow.result
        ran = sum(len(batch) for batch in encoder.batches)
        await asyncio.sleep(0.2)
        assert sum(len(batch) for batch in encoder.batches) <= ran + 4  # at most the batch then running
        assert scheduler.metrics.timed_out.value() == 1 and scheduler.queue.waiting_tokens == 0
        await scheduler.stop()

    asyncio.run(scenario())


def test_a_failing_batch_fails_only_the_job_that_broke_it() -> None:
    async def scenario() -> None:
        scheduler = scheduler_for(RecordingEncoder(), max_wait_ms=20.0)
        await scheduler.start()
        good = [scheduler.submit(rows([3, 4], tag), timeout_s=30) for tag in (1, 2)]
        bad = scheduler.submit([[9, POISON]], timeout_s=30)
        with pytest.raises(EncoderFailed, match="poisoned input"):
            await bad.result
        for job in good:
            np.testing.assert_array_equal(await job.result, identity_rows(job.token_ids))
        assert scheduler.metrics.batch_failures.value() >= 1 and scheduler.alive
        await scheduler.stop()

    asyncio.run(scenario())


def test_queue_full_counts_a_rejection_and_stop_fails_waiting_jobs() -> None:
    async def scenario() -> None:
        scheduler = scheduler_for(RecordingEncoder(seconds_per_batch=0.2), max_queue_tokens=100)
        await scheduler.start()
        first = scheduler.submit(rows([10] * 10, tag=1), timeout_s=30)
        with pytest.raises(QueueFull):
            scheduler.submit(rows([10] * 8, tag=2), timeout_s=30)
        assert scheduler.metrics.rejected.value() == 1
        await scheduler.stop()
        with pytest.raises(SchedulerStopped):
            await first.result
        with pytest.raises(SchedulerStopped):
            scheduler.submit(rows([1], tag=3), timeout_s=30)

    asyncio.run(scenario())
