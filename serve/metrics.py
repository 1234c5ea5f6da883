"""What `GET /metrics` reports, in the Prometheus text exposition format 0.0.4.

Counters and histograms are updated from the event loop and from the forward thread, so each
holds a lock; gauges (queue depth and tokens) are read from the scheduler when rendered.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{name}="{value}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    """A monotone counter, optionally split by labels."""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()):
        self.name, self.help_text, self.label_names = name, help_text, tuple(label_names)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items()) or ([((), 0.0)] if not self.label_names else [])
        lines += [f"{self.name}{_labels(self.label_names, key)} {_number(value)}" for key, value in items]
        return lines


class Gauge:
    """A value read when rendered (queue depth, queued tokens)."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float] = lambda: 0):
        self.name, self.help_text, self.read = name, help_text, read

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} gauge",
                f"{self.name} {_number(self.read())}"]


class Histogram:
    """Cumulative-bucket histogram: counts per upper bound `le`, plus sum and count."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float], label_names: Sequence[str] = ()):
        self.name, self.help_text, self.label_names = name, help_text, tuple(label_names)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            counts, total = self._series.setdefault(labels, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[bisect_left(self.buckets, value)] += 1
            total[0] += value

    def count(self, *labels: str) -> int:
        with self._lock:
            series = self._series.get(labels)
            return sum(series[0]) if series else 0

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        with self._lock:
            series = sorted((key, (list(c), t[0])) for key, (c, t) in self._series.items())
        if not series and not self.label_names:  # an unlabeled histogram reports zeros before its first value
            series = [((), ([0] * (len(self.buckets) + 1), 0.0))]
        for key, (counts, total) in series:
            running = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, f'le={chr(34)}{le}{chr(34)}')} "
                             f"{running}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return lines


class ServerMetrics:
    """Everything `GET /metrics` reports: HTTP traffic, dynamic batches, and the scheduler's queue."""

    def __init__(self) -> None:
        self.requests = Counter("hybridfast_http_requests_total", "HTTP requests answered, by endpoint and status.",
                                ("endpoint", "status"))
        self.errors = Counter("hybridfast_http_errors_total", "HTTP requests answered with status >= 400.",
                              ("endpoint",))
        self.latency = Histogram("hybridfast_http_request_duration_seconds",
                                 "Time from request start to the last response byte.", LATENCY_BUCKETS, ("endpoint",))
        self.batch_inputs = Histogram("hybridfast_batch_inputs",
                                      "Inputs per dynamic batch (gathered across concurrent requests).", SIZE_BUCKETS)
        self.batch_tokens = Histogram("hybridfast_batch_tokens", "Real (unpadded) tokens per dynamic batch.",
                                      tuple(16 * b for b in SIZE_BUCKETS))
        self.forward_seconds = Histogram("hybridfast_batch_duration_seconds",
                                         "Seconds to embed one dynamic batch.", LATENCY_BUCKETS)
        self.inputs = Counter("hybridfast_embedded_inputs_total", "Inputs embedded.")
        self.batch_failures = Counter("hybridfast_batch_failures_total", "Encoder forwards that raised.")
        self.rejected = Counter("hybridfast_rejected_requests_total",
                                "Requests refused with 429 because the queue's token bound was reached.")
        self.cancelled = Counter("hybridfast_cancelled_requests_total",
                                 "Requests whose client hung up before the answer; their remaining inputs were dropped.")
        self.timed_out = Counter("hybridfast_timed_out_requests_total",
                                 "Requests that missed their deadline (--request-timeout) and got 504.")
        self.queue_depth = Gauge("hybridfast_queue_depth", "Requests with inputs waiting for the encoder.")
        self.queue_tokens = Gauge("hybridfast_queue_tokens", "Tokens waiting for the encoder.")
        self.queue_max_tokens = Gauge("hybridfast_queue_max_tokens",
                                      "The queue's bound in tokens (--max-queue-tokens).")

    def render(self) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.errors, self.latency, self.batch_inputs, self.batch_tokens,
                       self.forward_seconds, self.inputs, self.batch_failures, self.rejected, self.cancelled,
                       self.timed_out, self.queue_depth, self.queue_tokens, self.queue_max_tokens):
            lines += metric.render()
        return "\n".join(lines) + "\n"
