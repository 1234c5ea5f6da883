"""The server under faults, on 127.0.0.1 with the tiny model made slow (SLOW_S per forward), loads bounded.

Waits are counted in batches (the server's own `hybridfast_batch_inputs_count`), not in seconds, so the checks
hold on a slow or busy machine: hung-up clients cost the next request at most about one batch; a flood past
the queue bound gets 429s and leaves the server healthy; a small request behind a large one waits a few batches,
not the large one's whole length; a deadline stops work; slow request heads and bodies are cut off.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import hybridfast
from hybridfast.encoder import FusedEncoder
from hybridfast.serve.server import ServerSettings, create_app, serve_in_thread
from hybridfast.testing import DEFAULT_TEXTS

SLOW_S = 0.05
BUDGET = 256
LONG_TEXT = " ".join(DEFAULT_TEXTS * 2)  # truncated to the tiny model's 64 tokens
PASSAGES = [f"{DEFAULT_TEXTS[i % len(DEFAULT_TEXTS)]} ({i})" for i in range(64)]


def slow_encoder(model_dir: Path) -> FusedEncoder:
    """The tiny encoder with SLOW_S of sleep before every forward (the sleep releases the GIL, like a model)."""
    encoder = hybridfast.load(str(model_dir), device="cpu")
    encoder.model.register_forward_pre_hook(lambda *_: time.sleep(SLOW_S))
    return encoder


@contextmanager
def slow_server(model_dir: Path, **overrides: Any) -> Iterator[str]:
    settings = ServerSettings(**{"max_batch_tokens": BUDGET, "max_wait_ms": 2, "max_queue_tokens": 10**6,
                                 **overrides})
    with serve_in_thread(create_app(slow_encoder(model_dir), settings, model_name="tiny")) as url:
        yield url


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    match = re.search("^" + re.escape(name) + r" (\S+)$", text, flags=re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def batches(url: str) -> float:
    return metric(url, "hybridfast_batch_inputs_count")


def wait_until(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def small_request_batches(url: str) -> tuple[int, float]:
    """(batches the server ran while a one-input request was answered, its latency in s)."""
    before = batches(url)
    start = time.perf_counter()
    response = httpx.post(f"{url}/v1/embeddings", json={"input": ["Wo ist der Rhein?"]}, timeout=60)
    latency = time.perf_counter() - start
    assert response.status_code == 200, response.text
    return int(batches(url) - before), latency


# ------------------------------------------------------------------ hung-up clients ------------------


def test_hung_up_clients_do_not_delay_the_next_request(tiny_model_dir: Path) -> None:
    """10 clients send 64 passages each (~70 batches of work) and hang up after 0.3 s."""
    with slow_server(tiny_model_dir) as url:

        async def hang_up() -> list[str]:
            async def one() -> str:
                async with httpx.AsyncClient(base_url=url, timeout=0.3) as http:
                    try:
                        await http.post("/v1/embeddings", json={"input": PASSAGES})
                    except httpx.TimeoutException as err:
                        return type(err).__name__
                    return "answered"

            return await asyncio.gather(*(one() for _ in range(10)))

        assert asyncio.run(hang_up()) == ["ReadTimeout"] * 10
        wait_until(lambda: metric(url, "hybridfast_cancelled_requests_total") == 10)
        ran, latency = small_request_batches(url)
        assert ran <= 3, f"the next request waited {ran} batches ({latency:.2f} s) behind work for hung-up clients"
        assert metric(url, "hybridfast_embedded_inputs_total") < 640 / 2, "work for gone clients was not dropped"
        assert metric(url, "hybridfast_queue_tokens") == 0


# ------------------------------------------------------------------ flood past the bound -------------


def test_a_flood_past_the_queue_bound_gets_429s_and_the_server_stays_healthy(tiny_model_dir: Path) -> None:
    with slow_server(tiny_model_dir, max_queue_tokens=4 * BUDGET) as url:

        async def flood() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=40)
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
                return await asyncio.gather(*(http.post("/v1/embeddings", json={"input": PASSAGES[i : i + 8]})
                                              for i in range(40)))

        responses = asyncio.run(flood())
        statuses = [r.status_code for r in responses]
        assert set(statuses) == {200, 429}, statuses
        for response in responses:
            if response.status_code == 429:
                error = response.json()["error"]
                assert error["code"] == "queue_full" and error["type"] == "rate_limit_error"
                assert int(response.headers["retry-after"]) >= 1
            else:
                assert len(response.json()["data"]) == 8
        assert metric(url, "hybridfast_rejected_requests_total") == statuses.count(429)
        health = httpx.get(f"{url}/health", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.json()["queue"]["tokens"] == 0
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "after"}, timeout=30).status_code == 200


# ------------------------------------------------------------------ large vs small --------------------


def test_a_large_request_does_not_starve_a_small_one(tiny_model_dir: Path) -> None:
    """128 inputs of 64 tokens: 32 batches of BUDGET tokens. A one-input request sent meanwhile waits a few."""
    with slow_server(tiny_model_dir, max_inputs_per_request=256) as url:

        async def scenario() -> tuple[httpx.Response, tuple[int, float], dict[str, Any]]:
            async with httpx.AsyncClient(base_url=url, timeout=120) as http:
                large = asyncio.ensure_future(http.post("/v1/embeddings", json={"input": [LONG_TEXT] * 128}))
                await asyncio.to_thread(wait_until, lambda: batches(url) >= 2)
                health = (await http.get("/health")).json()
                small = await asyncio.to_thread(small_request_batches, url)
                return await large, small, health

        large, (ran, latency), health = asyncio.run(scenario())
        assert ran <= 3, f"the small request waited {ran} batches ({latency:.2f} s) behind the large one"
        assert large.status_code == 200 and len(large.json()["data"]) == 128
        assert large.json()["usage"]["prompt_tokens"] == 128 * 64
        assert health["queue"]["requests"] == 1 and 0 < health["queue"]["tokens"] < 128 * 64
        assert health["queue"]["saturation"] > 0


# ------------------------------------------------------------------ deadline ---------------------------


def test_a_request_past_its_deadline_gets_504_and_its_work_stops(tiny_model_dir: Path) -> None:
    with slow_server(tiny_model_dir, max_inputs_per_request=256, request_timeout_s=0.5) as url:
        response = httpx.post(f"{url}/v1/embeddings", json={"input": [LONG_TEXT] * 256}, timeout=60)
        assert response.status_code == 504, response.text
        error = response.json()["error"]
        assert error["type"] == "timeout_error" and error["code"] == "request_timeout"
        assert "0.5 s (--request-timeout)" in error["message"]
        assert metric(url, "hybridfast_timed_out_requests_total") == 1
        after = batches(url)
        time.sleep(10 * SLOW_S)
        assert batches(url) <= after + 1  # at most the batch that was running
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "next"}, timeout=30).status_code == 200


# ------------------------------------------------------------------ slow clients (slowloris) ---------


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def client_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_half_sent_bodies_get_408_and_their_connections_close(tiny_model_dir: Path) -> None:
    head = (b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")
    with slow_server(tiny_model_dir, read_timeout_s=1.0) as url:
        sockets = [connect(url) for _ in range(50)]
        start = time.monotonic()
        for sock in sockets:
            sock.sendall(head + b'{"input": ["half a bo')  # 21 of the 100 bytes promised
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "meanwhile"}, timeout=30).status_code == 200
        answers = [read_until_closed(sock) for sock in sockets]  # each recv times out after 10 s
        elapsed = time.monotonic() - start
        for sock in sockets:
            sock.close()
    assert elapsed < 8, f"slow bodies held their connections for {elapsed:.1f} s"
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b'"code":"read_timeout"' in answer and b"connection: close" in answer.lower()


@pytest.mark.parametrize("kept_alive", [False, True], ids=["new-connection", "after-a-request"])
def test_a_request_head_sent_a_byte_at_a_time_is_cut_off(tiny_model_dir: Path, kept_alive: bool) -> None:
    with slow_server(tiny_model_dir, read_timeout_s=1.0) as url:
        sock = connect(url)
        if kept_alive:
            sock.sendall(b"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(1024)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
        sock.settimeout(0.2)
        start = time.monotonic()
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        while not closed and time.monotonic() - start < 8:
            try:
                sock.sendall(b"X")  # a header line that never ends
                closed = sock.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:  # reset or broken pipe: the server closed it
                closed = True
        elapsed = time.monotonic() - start
        sock.close()
    assert closed, "a client dribbling its request head kept the connection for 8 s"
    assert elapsed < 8


def test_idle_keep_alive_connections_outlive_the_head_deadline(tiny_model_dir: Path) -> None:
    """The head deadline runs from a head's first byte; idle time between requests is the keep-alive timeout's."""
    with slow_server(tiny_model_dir, read_timeout_s=0.5) as url, httpx.Client(base_url=url, timeout=30) as http:
        first = http.post("/v1/embeddings", json={"input": "first"})
        first_port = client_port(first)
        time.sleep(1.0)  # idle for twice the read timeout
        second = http.post("/v1/embeddings", json={"input": "second"})
        second_port = client_port(second)
    assert first.status_code == second.status_code == 200
    assert second_port == first_port, "the server closed an idle keep-alive connection early"
