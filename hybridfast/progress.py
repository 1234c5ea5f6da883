"""The one progress display of the toolkit, on stderr so that stdout stays for results.

On a terminal it is a rich bar: description, bar, done/total, rates, elapsed, ETA, then any extra columns. Anywhere
else (a log file, a pipe, CI) rich would draw nothing until the end, so the same task fields become plain lines
instead: one at the first update, one every `log_every` seconds, and one when a task finishes (or the display
stops), e.g.

    encoding corpus.jsonl.gz: 12,288/100,000 texts (12 %), 410 texts/s, 95,113 tokens/s, elapsed 0:00:30, ETA 0:03:34
    train: 12/30 steps (40 %), 0.42 steps/s, elapsed 0:00:29, ETA 0:00:43, loss 0.4123  lr 3.00e-05

Task fields: `unit` (what is counted: texts, steps, ...) and `status` (free text appended to the line); tokens
given to `advance(task, n, tokens=k)` are shown as tokens/s. Rates and the ETA count only this run's work: work
found done already (a resumed run) is passed as `completed` to `add_task` or given to `skip`, and counts toward
done/total only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

LOG_EVERY_S = 10.0
"""Seconds between plain progress lines when stderr is not a terminal."""


@dataclass
class _Run:
    """What this run did for one task: when it started, how much was done before it, tokens, last line printed."""

    start: float
    before: float
    tokens: int = 0
    last_line: float | None = None
    printed_completed: float | None = None


@dataclass(frozen=True)
class Rates:
    """This run's throughput of a task and its remaining time (None until there is anything to measure)."""

    per_second: float | None
    tokens_per_second: float | None
    eta_s: float | None


def task_rates(task: Task, now: float) -> Rates:
    """Units and tokens per second over this run's work, and the ETA at that rate."""
    run: _Run = task.fields["_run"]
    elapsed, done = now - run.start, task.completed - run.before
    if elapsed <= 0 or done <= 0:
        return Rates(None, None, None)
    rate = done / elapsed
    eta = max(task.total - task.completed, 0) / rate if task.total is not None else None
    return Rates(rate, run.tokens / elapsed if run.tokens else None, eta)


def _clock(seconds: float) -> str:
    minutes, second = divmod(int(round(seconds)), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}"


def _rate(value: float, unit: str) -> str:
    per = f"{unit}/s" if unit else "/s"
    return f"{value:,.0f} {per}" if value >= 10 else f"{value:.2g} {per}"


def _rate_text(task: Task, now: float) -> str:
    rates = task_rates(task, now)
    parts = []
    if rates.per_second is not None:
        parts.append(_rate(rates.per_second, task.fields.get("unit", "")))
    if rates.tokens_per_second is not None:
        parts.append(_rate(rates.tokens_per_second, "tokens"))
    return ", ".join(parts)


def plain_line(task: Task, now: float) -> str:
    """The plain-text form of a task: description, done/total unit (%), rates, elapsed, ETA, status."""
    unit = task.fields.get("unit", "")
    done = f"{task.completed:,.0f}" + (f"/{task.total:,.0f}" if task.total is not None else "")
    parts = [done + (f" {unit}" if unit else "")]
    if task.total:
        parts[0] += f" ({100 * task.completed / task.total:.0f} %)"
    run: _Run = task.fields["_run"]
    if run.before:
        parts.append(f"{run.before:,.0f} done before this run")
    if rate := _rate_text(task, now):
        parts.append(rate)
    parts.append(f"elapsed {_clock(now - run.start)}")
    eta = task_rates(task, now).eta_s
    if eta is not None and task.total is not None and task.completed < task.total:
        parts.append(f"ETA {_clock(eta)}")
    if task.fields.get("status"):
        parts.append(str(task.fields["status"]))
    return f"{Text.from_markup(task.description).plain}: " + ", ".join(parts)


class RateColumn(ProgressColumn):
    """`410 texts/s, 95,113 tokens/s` over this run's work."""

    def render(self, task: Task) -> Text:
        return Text(_rate_text(task, task.get_time()), style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """Time left at this run's rate."""

    def render(self, task: Task) -> Text:
        eta = task_rates(task, task.get_time()).eta_s
        return Text(f"ETA {_clock(eta)}" if eta is not None and not task.finished else "",
                    style="progress.remaining")


class LoggedProgress(Progress):
    """A rich `Progress` that prints plain lines when its console is not a terminal (see the module docstring).

    Adds to rich's API: `add_task(..., unit=...)`, `advance(task, n, tokens=...)` and `skip(task, n)`.
    """

    def __init__(self, *columns: Any, enabled: bool = True, transient: bool = False, log_every: float = LOG_EVERY_S,
                 console: Console | None = None, **kwargs: Any):
        console = console if console is not None else Console(stderr=True)
        self.plain = enabled and not console.is_terminal
        self.log_every = log_every
        super().__init__(*columns, console=console, disable=not enabled or self.plain, transient=transient, **kwargs)

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, *, unit: str = "", **fields: Any) -> TaskID:
        run = _Run(start=self.get_time(), before=completed)
        return super().add_task(description, start, total, completed, visible, unit=unit, _run=run, **fields)

    def advance(self, task_id: TaskID, advance: float = 1, *, tokens: int = 0) -> None:
        with self._lock:
            self._tasks[task_id].fields["_run"].tokens += tokens
        super().advance(task_id, advance)
        self._log(task_id)

    def skip(self, task_id: TaskID, amount: float) -> None:
        """Count `amount` units found already done (e.g. shards a previous run wrote): not this run's work."""
        with self._lock:
            self._tasks[task_id].fields["_run"].before += amount
        super().advance(task_id, amount)
        self._log(task_id)

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._log(task_id)

    def stop(self) -> None:
        if self.plain:
            for task_id in list(self._tasks):
                self._log(task_id, final=True)
        super().stop()

    def _log(self, task_id: TaskID, final: bool = False) -> None:
        """Print the task's line if it is the first, `log_every` seconds passed, or the task finished or the
        display stops with progress not yet printed."""
        if not self.plain:
            return
        with self._lock:
            task = self._tasks[task_id]
            run: _Run = task.fields["_run"]
            now = self.get_time()
            unprinted = task.completed != (run.before if run.printed_completed is None else run.printed_completed)
            if final or task.finished:
                due = unprinted
            else:
                due = run.last_line is None or now - run.last_line >= self.log_every
            if not due:
                return
            run.last_line, run.printed_completed = now, task.completed
            line = plain_line(task, now)
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)


def rich_progress(*extra_columns: Any, enabled: bool = True, transient: bool = False,
                  log_every: float = LOG_EVERY_S, console: Console | None = None, **kwargs: Any) -> LoggedProgress:
    """The toolkit's progress display: description, bar, done/total, rates, elapsed, ETA, then `extra_columns`;
    plain lines every `log_every` seconds when stderr (or `console`) is not a terminal. Other keyword arguments
    go to `rich.progress.Progress` (e.g. `get_time`)."""
    return LoggedProgress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(), TimeElapsedColumn(),
        EtaColumn(), *extra_columns, enabled=enabled, transient=transient, log_every=log_every, console=console,
        **kwargs,
    )


class BatchCounter:
    """Counts the texts and tokens of finished batches into a progress task: pass it as `on_batch` to
    `FusedEncoder.encode`; `summary()` gives this run's totals and rates for the closing line."""

    def __init__(self, progress: LoggedProgress, task: TaskID):
        self.progress, self.task = progress, task
        self.texts = self.tokens = 0
        self.start = time.perf_counter()

    def __call__(self, texts: int, tokens: int) -> None:
        self.texts += texts
        self.tokens += tokens
        self.progress.advance(self.task, texts, tokens=tokens)

    def summary(self) -> str:
        """`1,000 texts (23,456 tokens) in 12.3 s: 81 texts/s, 1,907 tokens/s`."""
        seconds = time.perf_counter() - self.start
        text = f"{self.texts:,} texts ({self.tokens:,} tokens) in {seconds:.1f} s"
        if self.texts and seconds > 0:
            text += f": {_rate(self.texts / seconds, 'texts')}, {_rate(self.tokens / seconds, 'tokens')}"
        return text


@contextmanager
def batch_progress(description: str, total: int, *, done: int = 0, enabled: bool = True,
                   transient: bool = True) -> Iterator[BatchCounter]:
    """A progress display of one encoding task over `total` texts (`done` of them found done already);
    yields the `BatchCounter` to pass as `on_batch`."""
    with rich_progress(enabled=enabled, transient=transient) as progress:
        yield BatchCounter(progress, progress.add_task(description, total=total, completed=done, unit="texts"))
