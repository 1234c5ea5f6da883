"""Load test for `hybridfast serve`: throughput, latency percentiles and errors at several concurrencies.

Loopback only (the URL must name 127.0.0.1, ::1 or localhost) and bounded: each concurrency level sends at
most `--requests` requests and stops issuing new ones after `--max-seconds`. Every level starts with a short
warm-up (not measured). A request counts as an error unless it returns 200 with one embedding per input;
errors are reported by status (429 queue full, 504 deadline, ...) or exception name. Latency percentiles are
reported only where there are enough samples to mean something: p50 from 10 requests, p99 from 100.

Against a running server, or one this script starts (`--model`, extra `--serve-arg`s passed on) and stops:

    python benchmarks/loadtest.py --url http://127.0.0.1:8080 --concurrency 1,4,16,32
    python benchmarks/loadtest.py --model default --concurrency 1,4,16,32 --requests 400 --tag cpu

Writes loadtest_<tag>.json (per level: requests, errors by kind, requests/s, inputs/s, tokens/s, latency
percentiles, inputs per server batch; plus the machine and the server's /health) and loadtest_<tag>.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np

from hybridfast.benchmarking import write_result_files

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
MIN_SAMPLES = {50: 10, 90: 20, 99: 100}
WARMUP_REQUESTS = 8


@dataclass
class LevelResult:
    """What one concurrency level measured: each request's latency (s) and outcome ("ok" or an error kind)."""

    concurrency: int
    latencies: list[float] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    inputs: int = 0
    tokens: int = 0
    seconds: float = 0.0
    server_batches: float = 0.0
    server_batched_inputs: float = 0.0


def percentile(values: Sequence[float], q: int) -> float | None:
    """The q-th percentile, or None below MIN_SAMPLES[q] samples (a p99 of 20 requests is just their maximum)."""
    return float(np.percentile(values, q)) if len(values) >= MIN_SAMPLES[q] else None


def summarize(level: LevelResult) -> dict[str, Any]:
    """Throughput over successful requests and latency percentiles in ms (of successes only)."""
    ok = [latency for latency, outcome in zip(level.latencies, level.outcomes, strict=True) if outcome == "ok"]
    errors = Counter(outcome for outcome in level.outcomes if outcome != "ok")
    seconds = level.seconds or float("nan")
    row: dict[str, Any] = {
        "concurrency": level.concurrency, "requests": len(level.outcomes), "ok": len(ok),
        "errors": sum(errors.values()), "errors_by_kind": dict(sorted(errors.items())),
        "seconds": round(level.seconds, 3), "requests_per_s": len(ok) / seconds,
        "inputs_per_s": level.inputs / seconds, "tokens_per_s": level.tokens / seconds,
        "inputs_per_server_batch": (level.server_batched_inputs / level.server_batches
                                    if level.server_batches else None),
    }
    for q in MIN_SAMPLES:
        value = percentile(ok, q)
        row[f"p{q}_ms"] = None if value is None else round(1000 * value, 2)
    return row


def check_loopback(url: str) -> str:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"{url}: this load test only targets this machine (127.0.0.1, ::1 or localhost)")
    return url.rstrip("/")


def server_metric(text: str, name: str) -> float:
    match = re.search("^" + re.escape(name) + r" (\S+)$", text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def run_level(url: str, model: str, texts: Sequence[str], *, concurrency: int, requests: int,
                    max_seconds: float, inputs_per_request: int, input_type: str, timeout_s: float,
                    headers: dict[str, str] | None = None) -> LevelResult:
    """`requests` requests from `concurrency` workers (each sends its next request when its last one returns)."""
    level = LevelResult(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits, headers=headers) as http:

        def body(i: int) -> dict[str, Any]:
            start = (i * inputs_per_request) % len(texts)
            chosen = [texts[(start + j) % len(texts)] for j in range(inputs_per_request)]
            return {"model": model, "input": chosen, "input_type": input_type, "encoding_format": "base64"}

        await asyncio.gather(*(http.post("/v1/embeddings", json=body(i)) for i in range(WARMUP_REQUESTS)))
        before = (await http.get("/metrics")).text
        numbers = iter(range(requests))
        stop_at = time.perf_counter() + max_seconds

        async def worker() -> None:
            for i in numbers:
                if time.perf_counter() > stop_at:
                    return
                start = time.perf_counter()
                try:
                    response = await http.post("/v1/embeddings", json=body(i))
                except httpx.HTTPError as err:
                    level.latencies.append(time.perf_counter() - start)
                    level.outcomes.append(type(err).__name__)
                    continue
                level.latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    level.outcomes.append(str(response.status_code))
                elif len(response.json()["data"]) != inputs_per_request:
                    level.outcomes.append("wrong_count")
                else:
                    level.outcomes.append("ok")
                    level.inputs += inputs_per_request
                    level.tokens += response.json()["usage"]["prompt_tokens"]

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        level.seconds = time.perf_counter() - start
        after = (await http.get("/metrics")).text
    level.server_batches = (server_metric(after, "hybridfast_batch_inputs_count")
                            - server_metric(before, "hybridfast_batch_inputs_count"))
    level.server_batched_inputs = (server_metric(after, "hybridfast_batch_inputs_sum")
                                   - server_metric(before, "hybridfast_batch_inputs_sum"))
    return level


@contextmanager
def started_server(model: str, serve_args: Sequence[str], log_path: Path) -> Iterator[str]:
    """`hybridfast serve --model MODEL` on a free 127.0.0.1 port; stopped with SIGTERM afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "hybridfast", "serve", "--model", model, "--host", "127.0.0.1", "--port",
               str(port), "--log-level", "warning", *serve_args]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                raise SystemExit(f"hybridfast serve exited:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"hybridfast serve did not come up in 600 s:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def machine() -> dict[str, Any]:
    from hybridfast.benchmarking import cpu_name

    cpu = cpu_name()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "load_average_1m_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg")
            else None, "python": platform.python_version(), "platform": platform.platform()}


def load_texts(source: str, count: int) -> list[str]:
    """`count` texts: from a file (one per line, or JSONL with a "text" field), or a dataset of serve/benchmark."""
    path = Path(source)
    if path.is_file():
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        texts = [json.loads(line)["text"] if line.lstrip().startswith("{") else line for line in lines]
        return texts[:count]
    from hybridfast.benchmarking import find_data_root
    from hybridfast.serve.benchmark import bench_texts

    return bench_texts(find_data_root(None), source, count)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["levels"]
    levels = [row["concurrency"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(levels, [row["requests_per_s"] for row in rows], "o-", label="requests/s")
    left.plot(levels, [row["inputs_per_s"] for row in rows], "s--", label="inputs/s")
    for row in rows:
        if row["errors"]:
            left.annotate(f"{row['errors']} errors", (row["concurrency"], row["requests_per_s"]),
                          textcoords="offset points", xytext=(0, 8), ha="center", color="red", fontsize=8)
    left.set(xscale="log", xlabel="concurrent clients", ylabel="throughput", title="Throughput")
    left.set_xticks(levels, [str(level) for level in levels])
    left.legend()
    for q, style in ((50, "o-"), (90, "^:"), (99, "s--")):
        points = [(row["concurrency"], row[f"p{q}_ms"]) for row in rows if row[f"p{q}_ms"] is not None]
        if points:
            right.plot(*zip(*points, strict=True), style, label=f"p{q}")
    right.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="latency (ms)",
              title="Latency (successful requests)")
    right.set_xticks(levels, [str(level) for level in levels])
    right.legend()
    server = result["server"]
    host = result["machine"]
    fig.suptitle(f"hybridfast serve: {server.get('model')} on {server.get('device')}, "
                 f"{result['settings']['inputs_per_request']} input(s)/request; {host['cpu']} ({host['cores']} cores, "
                 f"load average {host['load_average_1m_at_start']:.1f} at start)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    health = httpx.get(f"{url}/health", timeout=30).json()
    model = httpx.get(f"{url}/v1/models", timeout=30, headers=args.headers).json()["data"][0]["id"]
    texts = load_texts(args.texts, args.text_count)
    rows = []
    for concurrency in args.concurrency:
        level = asyncio.run(run_level(url, model, texts, concurrency=concurrency, requests=args.requests,
                                      max_seconds=args.max_seconds, inputs_per_request=args.inputs,
                                      input_type=args.input_type, timeout_s=args.timeout, headers=args.headers))
        row = summarize(level)
        rows.append(row)
        print(f"concurrency {concurrency:>3}: {row['ok']}/{row['requests']} ok in {row['seconds']:.1f} s, "
              f"{row['requests_per_s']:.1f} req/s, {row['tokens_per_s']:.0f} tokens/s, p50 {row['p50_ms']} ms, "
              f"p99 {row['p99_ms']} ms, errors {row['errors_by_kind'] or 0}", flush=True)
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
            "machine": machine(),
            "server": {key: health.get(key) for key in ("model", "device", "dimensions")},
            "settings": {"concurrency": args.concurrency, "requests_per_level": args.requests,
                         "max_seconds_per_level": args.max_seconds, "inputs_per_request": args.inputs,
                         "input_type": args.input_type, "texts": args.texts, "serve_args": args.serve_arg,
                         "model_arg": args.model},
            "levels": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running server on this machine, e.g. http://127.0.0.1:8080")
    where.add_argument("--model", help="start `hybridfast serve --model MODEL` for the run (e.g. default)")
    parser.add_argument("--serve-arg", action="append", default=[],
                        help="extra argument for the started server, repeatable (e.g. --serve-arg=--int8)")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16, 32],
                        help="comma-separated numbers of concurrent clients, one level each (default 1,4,16,32)")
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level, at most")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop issuing requests after this, per level")
    parser.add_argument("--inputs", type=int, default=1, help="texts per request")
    parser.add_argument("--input-type", default="query", choices=["query", "passage", "raw"],
                        help="which checkpoint prefix the server adds (default query)")
    parser.add_argument("--texts", default="xquadr",
                        help="a text file (lines or JSONL with 'text'), or a dataset: xquadr (sentences), scifact")
    parser.add_argument("--text-count", type=int, default=2000, help="how many texts to load; requests cycle through them")
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout per request (s)")
    parser.add_argument("--api-key", default=os.environ.get("HYBRIDFAST_API_KEY"),
                        help="the server's --api-key (default: $HYBRIDFAST_API_KEY)")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"),
                        help="where loadtest_<tag>.json and .png go")
    parser.add_argument("--tag", default="cpu", help="names the result files (default cpu)")
    args = parser.parse_args()
    if args.requests < 1 or args.max_seconds <= 0 or args.inputs < 1 or min(args.concurrency) < 1:
        raise SystemExit("--requests, --max-seconds, --inputs and --concurrency must be positive")
    args.headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    if args.url:
        result = run(args, check_loopback(args.url))
    else:
        with tempfile.TemporaryDirectory() as scratch, \
                started_server(args.model, args.serve_arg, Path(scratch) / "serve.log") as url:
            result = run(args, url)
    files = write_result_files(result, args.out_dir, f"loadtest_{args.tag}", plot)
    print(f"wrote {files['json']} and {files['png']}")


if __name__ == "__main__":
    main()
