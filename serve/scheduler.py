"""Fair, bounded scheduling of embedding requests onto one encoder (after TEI's `core/queue.rs` and `infer.rs`).

A request's tokenized inputs travel as one :class:`Job`. :class:`JobQueue` owns batch assembly and has two verbs:

- ``append(job)`` admits the job while the tokens waiting, its own included, stay within ``max_queue_tokens``;
  otherwise it raises :class:`QueueFull` (HTTP 429 with Retry-After), or :class:`RequestTooLarge` when the job
  alone exceeds the bound (HTTP 413: it could never be admitted).
- ``next_batch()`` waits for work, then takes inputs into one batch of at most ``max_batch_tokens`` real tokens.

:class:`Scheduler` (TEI's ``infer.rs``) submits jobs, runs each batch through the encoder on one forward thread,
returns the rows to their jobs, and enforces deadlines and cancellation.

**Why the bound counts tokens.** Encoder time grows with tokens, not with requests: one request of 256 passages
at 512 tokens is 131,072 tokens, at least 50 s on a 2-core CPU (`bench encode` on the idle 2-core EPYC,
2026-11-26: e5-small embedded 256-token SciFact passages at 2,568 tokens/s, and longer inputs cost more per
token), while 256 one-word queries (about 6 tokens each with the prefix) are 85 times fewer tokens. A bound
in requests would admit both alike. A bound in tokens caps the work the server has promised, so an admitted
request waits at most about ``max_queue_tokens / throughput``, and clients past it are told to come
back (429) instead of being queued without limit. The server's default, 64 batches, is 131,072 tokens on CPU
(2,048-token batches): exactly one request at the default input limits (256 × 512 tokens).

**Fairness.** ``next_batch`` takes inputs round-robin: one input from each waiting job in turn, and again, until
the next input would overflow the budget (that job then sits out the rest of this batch). A large request thus
runs as a series of budget-sized slices interleaved with everyone else's, and a request arriving behind it
joins the very next batch. The job that opened a batch moves to the back of the line, so every job opens a
batch in turn: an input too long to share a batch still runs, alone, when its turn comes.

**Cancellation and deadlines.** ``cancel(job)`` (the HTTP layer calls it when the client hangs up) and a job's
deadline both take its waiting inputs off the queue at once; inputs already in the running batch finish and
are thrown away, so the job stops at the next batch boundary. ``next_batch`` also drops, at dequeue, any job
that is already finished (cancelled, timed out or failed), so no work is done for a client that has gone.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from hybridfast.serve.metrics import ServerMetrics

logger = logging.getLogger("hybridfast.serve")

# Retry-After: the time to drain the queue at the measured rate, within these bounds (seconds).
MIN_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 60
# Weight of the newest batch in the running tokens/s estimate behind Retry-After.
RATE_SMOOTHING = 0.2


class SchedulerError(Exception):
    """A request the scheduler cannot (or can no longer) serve; the HTTP layer maps each kind to a status."""


class QueueFull(SchedulerError):
    """The queue's token bound is reached; try again after `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTooLarge(SchedulerError):
    """The request alone holds more tokens than the whole queue may."""


class DeadlineExceeded(SchedulerError):
    """The request was not done before its deadline."""


class EncoderFailed(SchedulerError):
    """The encoder raised on a batch holding this request's inputs."""


class SchedulerStopped(SchedulerError):
    """The scheduler is not running (starting up, shutting down, or its worker died)."""


@dataclass(eq=False)
class Job:
    """One request's inputs on their way through the queue, and the rows they come back as.

    Inputs are taken in order; ``next_input`` is the first one not yet in a batch, ``waiting_tokens``
    the tokens from there on, and ``missing`` the inputs not yet embedded.
    """

    token_ids: Sequence[list[int]]
    result: asyncio.Future[np.ndarray]
    rows: np.ndarray
    next_input: int = 0
    missing: int = 0
    waiting_tokens: int = 0
    expiry: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.missing = len(self.token_ids)
        self.waiting_tokens = sum(len(ids) for ids in self.token_ids)

    @property
    def finished(self) -> bool:
        return self.result.done()

    @property
    def has_waiting_inputs(self) -> bool:
        return self.next_input < len(self.token_ids)

    def peek_tokens(self) -> int:
        return len(self.token_ids[self.next_input])

    def take(self) -> int:
        """Move the next input into a batch; returns its index."""
        index = self.next_input
        self.next_input += 1
        self.waiting_tokens -= len(self.token_ids[index])
        return index


@dataclass
class Batch:
    """Inputs from one or more jobs for one encoder call: (job, input index) pairs and their real tokens."""

    entries: list[tuple[Job, int]] = field(default_factory=list)
    tokens: int = 0

    def add(self, job: Job) -> None:
        self.tokens += job.peek_tokens()
        self.entries.append((job, job.take()))

    def token_ids(self) -> list[list[int]]:
        return [job.token_ids[index] for job, index in self.entries]

    def jobs(self) -> list[Job]:
        return list(dict.fromkeys(job for job, _ in self.entries))


class JobQueue:
    """Jobs waiting for the encoder, bounded by their tokens; batches assembled round-robin (see module doc).

    All methods run on the event loop.
    """

    def __init__(self, *, max_batch_tokens: int, max_queue_tokens: int, max_wait_s: float):
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_tokens = max_queue_tokens
        self.max_wait_s = max_wait_s
        self._jobs: deque[Job] = deque()
        self._arrival = asyncio.Event()
        self.waiting_tokens = 0

    def __len__(self) -> int:
        return len(self._jobs)

    def append(self, job: Job, retry_after_s: int = MIN_RETRY_AFTER_S) -> None:
        """Admit `job`, or raise RequestTooLarge / QueueFull."""
        if job.waiting_tokens > self.max_queue_tokens:
            raise RequestTooLarge(f"this request holds {job.waiting_tokens} tokens, more than the whole queue takes "
                                  f"({self.max_queue_tokens}, --max-queue-tokens); split it into smaller requests")
        if self.waiting_tokens + job.waiting_tokens > self.max_queue_tokens:
            raise QueueFull(f"the server is busy: {self.waiting_tokens} of {self.max_queue_tokens} queued tokens "
                            f"are taken and this request needs {job.waiting_tokens}; retry after "
                            f"{retry_after_s} s", retry_after_s)
        self._jobs.append(job)
        self.waiting_tokens += job.waiting_tokens
        self._arrival.set()

    def drain(self) -> list[Job]:
        """Take every job off the queue (shutdown)."""
        jobs = list(self._jobs)
        self._jobs.clear()
        self.waiting_tokens = 0
        return jobs

    def remove(self, job: Job) -> None:
        """Take `job`'s waiting inputs off the queue (cancelled or past its deadline)."""
        try:
            self._jobs.remove(job)
        except ValueError:  # all its inputs were already in batches
            return
        self.waiting_tokens -= job.waiting_tokens

    async def next_batch(self) -> Batch:
        """The next batch: waits for a job, then up to `max_wait_s` for a full budget, then assembles."""
        while True:
            while not self._jobs:
                self._arrival.clear()
                await self._arrival.wait()
            await self._wait_for_company()
            self._drop_finished()
            if self._jobs:
                return self._assemble()

    async def _wait_for_company(self) -> None:
        # At low load a lone input would run at once in a batch of one; a few ms of waiting lets concurrent
        # requests share the forward. Under load the queue already holds a full budget and nothing waits.
        deadline = time.monotonic() + self.max_wait_s
        while self._jobs and self.waiting_tokens < self.max_batch_tokens:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except TimeoutError:
                return

    def _drop_finished(self) -> None:
        self.waiting_tokens -= sum(job.waiting_tokens for job in self._jobs if job.finished)
        self._jobs = deque(job for job in self._jobs if not job.finished)

    def _assemble(self) -> Batch:
        batch = Batch()
        opener = self._jobs[0]
        turn = list(self._jobs)
        while turn:
            still_taking = []
            for job in turn:
                if batch.entries and batch.tokens + job.peek_tokens() > self.max_batch_tokens:
                    continue  # sits out the rest of this batch
                batch.add(job)
                if job.has_waiting_inputs:
                    still_taking.append(job)
            turn = still_taking
        self.waiting_tokens -= batch.tokens
        self._jobs = deque(job for job in self._jobs if job.has_waiting_inputs)
        if self._jobs and self._jobs[0] is opener:
            self._jobs.rotate(-1)
        return batch


class Scheduler:
    """Submits jobs to a :class:`JobQueue` and embeds its batches on one forward thread (TEI's ``infer.rs``).

    ``encode`` maps a batch's token-id rows to float32 ``[n, dim]`` rows in order; it runs on a dedicated
    thread, so the model sees one batch at a time while the event loop keeps admitting requests.
    A batch that raises is re-run one job at a time, so only the job that breaks the encoder fails.
    """

    def __init__(self, encode: Callable[[list[list[int]]], np.ndarray], dim: int, *, max_batch_tokens: int,
                 max_queue_tokens: int, max_wait_ms: float, metrics: ServerMetrics | None = None):
        self.encode = encode
        self.dim = dim
        self.metrics = metrics or ServerMetrics()
        self.queue = JobQueue(max_batch_tokens=max_batch_tokens, max_queue_tokens=max_queue_tokens,
                              max_wait_s=max_wait_ms / 1000.0)
        self._tokens_per_s: float | None = None
        self._running: Batch | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.metrics.queue_depth.read = lambda: len(self.queue)
        self.metrics.queue_tokens.read = lambda: self.queue.waiting_tokens
        self.metrics.queue_max_tokens.read = lambda: max_queue_tokens

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def saturation(self) -> float:
        """Queued tokens as a fraction of the bound."""
        return self.queue.waiting_tokens / self.queue.max_queue_tokens

    def retry_after_s(self) -> int:
        """Seconds until the queue has drained at the measured rate (1 before any batch has run)."""
        if not self._tokens_per_s:
            return MIN_RETRY_AFTER_S
        estimate = math.ceil(self.queue.waiting_tokens / self._tokens_per_s)
        return max(MIN_RETRY_AFTER_S, min(MAX_RETRY_AFTER_S, estimate))

    async def start(self, warmup: list[list[int]] | None = None) -> None:
        """Start the forward thread, run `warmup` through it (a broken model fails here, not on a user), serve."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hybridfast-forward")
        if warmup:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.encode, warmup)
        self._task = asyncio.create_task(self._serve_forever(), name="hybridfast-scheduler")

    async def stop(self) -> None:
        """Stop the worker; jobs still waiting or in the interrupted batch fail with SchedulerStopped."""
        running = self._running.jobs() if self._running is not None else []
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        stopped = SchedulerStopped("the server is shutting down")
        for job in self.queue.drain() + running:
            self._finish(job, stopped)

    def submit(self, token_ids: Sequence[list[int]], timeout_s: float | None, started: float | None = None) -> Job:
        """Queue one request's inputs; await ``job.result`` for its rows ([n, dim] float32, in input order).

        The job fails with DeadlineExceeded `timeout_s` seconds after `started` (a ``time.monotonic()``
        reading, e.g. the request's arrival; default now).
        """
        if not self.alive:
            raise SchedulerStopped("the encoder worker is not running")
        loop = asyncio.get_running_loop()
        job = Job(token_ids, loop.create_future(), np.empty((len(token_ids), self.dim), np.float32))
        if not token_ids:
            job.result.set_result(job.rows)
            return job
        try:
            self.queue.append(job, self.retry_after_s())
        except QueueFull:
            self.metrics.rejected.inc()
            raise
        if timeout_s is not None:
            remaining = timeout_s - (time.monotonic() - started if started is not None else 0.0)
            job.expiry = loop.call_later(max(0.0, remaining), self._expire, job, timeout_s)
        return job

    def cancel(self, job: Job) -> None:
        """The client has gone: drop the job's waiting inputs now, and its running ones when their batch ends."""
        if job.finished:
            return
        self.queue.remove(job)
        self.metrics.cancelled.inc()
        if job.expiry is not None:
            job.expiry.cancel()
        job.result.cancel()

    def _expire(self, job: Job, timeout_s: float) -> None:
        if job.finished:
            return
        self.queue.remove(job)
        self.metrics.timed_out.inc()
        done = len(job.token_ids) - job.missing
        self._finish(job, DeadlineExceeded(f"the request was not done within {timeout_s:g} s (--request-timeout); "
                                           f"{done} of {len(job.token_ids)} inputs were embedded"))

    def _finish(self, job: Job, outcome: np.ndarray | Exception) -> None:
        if job.finished:
            return
        if job.expiry is not None:
            job.expiry.cancel()
        if isinstance(outcome, Exception):
            job.result.set_exception(outcome)
        else:
            job.result.set_result(outcome)

    async def _serve_forever(self) -> None:
        while True:
            batch = await self.queue.next_batch()
            self._running = batch
            try:
                await self._run(batch)
            except Exception:  # the worker must outlive any batch
                logger.exception("batch of %d inputs failed outside the encoder", len(batch.entries))
            finally:
                self._running = None

    async def _run(self, batch: Batch) -> None:
        loop = asyncio.get_running_loop()
        try:
            rows = await loop.run_in_executor(self._executor, self._forward, batch.token_ids())
        except Exception as err:
            self.metrics.batch_failures.inc()
            jobs = batch.jobs()
            if len(jobs) == 1:
                logger.warning("encoder forward failed: %r", err)
                self._finish(jobs[0], EncoderFailed(f"the encoder failed on this request: {type(err).__name__}: "
                                                    f"{err}"))
                return
            for job in jobs:
                if not job.finished:
                    entries = [entry for entry in batch.entries if entry[0] is job]
                    await self._run(Batch(entries, sum(len(job.token_ids[i]) for _, i in entries)))
            return
        for (job, index), row in zip(batch.entries, rows, strict=True):
            if job.finished:
                continue
            job.rows[index] = row
            job.missing -= 1
            if job.missing == 0:
                self._finish(job, job.rows)

    def _forward(self, token_ids: list[list[int]]) -> np.ndarray:
        start = time.perf_counter()
        rows = self.encode(token_ids)
        seconds = time.perf_counter() - start
        tokens = sum(len(ids) for ids in token_ids)
        rate = tokens / max(seconds, 1e-6)
        self._tokens_per_s = rate if self._tokens_per_s is None else (
            (1 - RATE_SMOOTHING) * self._tokens_per_s + RATE_SMOOTHING * rate)
        self.metrics.forward_seconds.observe(seconds)
        self.metrics.batch_inputs.observe(len(token_ids))
        self.metrics.batch_tokens.observe(tokens)
        self.metrics.inputs.inc(amount=len(token_ids))
        return rows
