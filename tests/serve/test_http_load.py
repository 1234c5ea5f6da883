"""`hybridfast serve` as a user runs it: its own process on 127.0.0.1, then a bounded load.

The load: 2,000 requests, 32 in flight, a 90 s cap; zero errors asserted, latency percentiles
printed (no timing assertions: CI machines differ).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

import hybridfast
from hybridfast.cli import app
from hybridfast.index import build_index, save_index
from hybridfast.testing import DEFAULT_TEXTS

REQUESTS = 2000
CONCURRENCY = 32
CAP_SECONDS = 90.0
DOC_IDS = [f"doc{i}" for i in range(len(DEFAULT_TEXTS))]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def index_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    encoder = hybridfast.load(str(tiny_model_dir), device="cpu")
    index = build_index(encoder.encode_passages(DEFAULT_TEXTS), "flat", use_gpu=False)
    return save_index(tmp_path_factory.mktemp("index") / "tiny", index, DOC_IDS)


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`hybridfast serve` in a subprocess; yields its base URL, then stops it with SIGTERM."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve-log") / "serve.log"
    command = [sys.executable, "-m", "hybridfast", "serve", "--model", str(tiny_model_dir), "--index",
               str(index_dir), "--host", "127.0.0.1", "--port", str(port), "--max-wait-ms", "2",
               "--served-model-name", "tiny", "--log-level", "warning"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert process.poll() is None, f"hybridfast serve exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"hybridfast serve did not come up:\n{log_path.read_text()}"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    # uvicorn shuts down gracefully, then re-raises the captured SIGTERM
    assert code in (0, -signal.SIGTERM), f"hybridfast serve did not shut down cleanly ({code}):\n{log_path.read_text()}"


def request_for(i: int) -> tuple[str, dict[str, Any], int]:
    """The i-th load request: (path, body, expected result count); a mix of shapes and endpoints."""
    if i % 10 == 9:
        return "/search", {"query": DEFAULT_TEXTS[i % len(DEFAULT_TEXTS)], "k": 3}, 1
    count = 1 + i % 4
    texts = [DEFAULT_TEXTS[(i + j) % len(DEFAULT_TEXTS)] for j in range(count)]
    body = {"model": "tiny", "input": texts, "encoding_format": "base64" if i % 2 else "float",
            "input_type": "query" if i % 3 == 0 else "passage"}
    return "/v1/embeddings", body, count


async def run_load(url: str) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    numbers = iter(range(REQUESTS))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:

        async def worker() -> None:
            for i in numbers:
                path, body, expected = request_for(i)
                start = time.perf_counter()
                try:
                    response = await http.post(path, json=body)
                except httpx.HTTPError as err:
                    errors.append(f"request {i}: {type(err).__name__}: {err}")
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors.append(f"request {i}: {response.status_code} {response.text[:200]}")
                    continue
                payload = response.json()
                got = len(payload["results"] if path == "/search" else payload["data"])
                if got != expected:
                    errors.append(f"request {i}: {got} results, expected {expected}")

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), CAP_SECONDS)
        return latencies, errors, time.perf_counter() - start


def test_bounded_concurrent_load_has_zero_errors(served: str, capsys: pytest.CaptureFixture[str]) -> None:
    latencies, errors, elapsed = asyncio.run(run_load(served))
    assert errors == [], f"{len(errors)} errors, first: {errors[:3]}"
    assert len(latencies) == REQUESTS
    metrics = httpx.get(f"{served}/metrics", timeout=10).text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
              if line and not line.startswith("#")}
    answered = sum(v for k, v in values.items() if k.startswith("hybridfast_http_requests_total{")
                   and 'status="200"' in k and ('"/v1/embeddings"' in k or '"/search"' in k))
    assert answered >= REQUESTS
    assert values.get("hybridfast_http_errors_total{endpoint=\"/v1/embeddings\"}", 0.0) == 0
    batches, batched = values["hybridfast_batch_inputs_count"], values["hybridfast_batch_inputs_sum"]
    p50, p90, p99 = (1000 * float(np.percentile(latencies, q)) for q in (50, 90, 99))
    with capsys.disabled():
        print(f"\n[hybridfast serve load] {REQUESTS} requests, {CONCURRENCY} concurrent, {elapsed:.1f} s, "
              f"{REQUESTS / elapsed:.0f} req/s; latency p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, "
              f"max {1000 * max(latencies):.1f} ms; {batched / batches:.1f} inputs per dynamic batch "
              f"(tiny model, {os.cpu_count()} CPUs)")


def test_search_through_the_cli_loaded_index(served: str) -> None:
    response = httpx.post(f"{served}/search", json={"queries": DEFAULT_TEXTS[:2], "k": 100}, timeout=30)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [len(r["hits"]) for r in results] == [len(DOC_IDS)] * 2
    assert all(hit["id"] in DOC_IDS for r in results for hit in r["hits"])
    assert all(a["score"] >= b["score"] for r in results for a, b in itertools.pairwise(r["hits"]))


@pytest.mark.parametrize("extra, needle", [
    (["--index", "/nonexistent/index"], "not an index directory"),
    (["--max-batch-tokens", "0"], "max_batch_tokens must be at least 1"),
    (["--dtype", "float8"], "unknown dtype"),
    (["--quantize", "int4"], "quantize must be None or 'int8'"),
    (["--quantize", "int8", "--max-batch-tokens", "0"], "--quantize int8 is deprecated; use --int8"),
    (["--request-timeout", "-1"], "request_timeout_s must be a positive number of seconds, not -1.0"),
])
def test_serve_command_reports_bad_options_in_one_line(tiny_model_dir: Path, extra: list[str],
                                                       needle: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--model", str(tiny_model_dir), *extra])
    assert result.exit_code == 1, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_serve_help_names_every_limit() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "220", "TERMINAL_WIDTH": "220"})
    assert result.exit_code == 0
    for option in ("--model", "--index", "--host", "--port", "--max-batch-tokens", "--max-wait-ms",
                   "--max-inputs-per-request", "--max-tokens-per-input", "--no-truncate", "--max-body-bytes",
                   "--api-key", "--device", "--dtype", "--int8", "--threads", "--served-model-name",
                   "--max-queue-tokens", "--request-timeout", "--read-timeout"):
        assert option in result.output
    assert "--quantize" not in result.output  # the deprecated spelling of --int8 still works, unlisted
