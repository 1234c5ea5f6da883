"""The HTTP embeddings API: OpenAI-compatible `/v1/embeddings`, `/search`, `/health`, `/metrics`.

Request path (after text-embeddings-inference's `queue.rs` / `infer.rs`):

1. A handler validates the JSON body and tokenizes its texts in a worker thread, so the
   event loop never runs the tokenizer; token counts give the limits and `usage`.
2. Each input joins one asyncio queue. A single collector takes the oldest input, then keeps
   taking inputs, from any request, until the batch would exceed `max_batch_tokens` real
   tokens or `max_wait_ms` has passed since the first one.
3. On a dedicated thread the batch runs through `FusedEncoder.encode_token_ids`, the lean
   path of `FusedEncoder.encode` (length-sorted, packed or padded forwards within the same
   budget; the checkpoint's pooling and normalization), and the rows go back to the
   requests' futures. A request resolves once all its inputs are embedded.

A batch that raises is re-run one request at a time, so only the request that breaks the
encoder gets a 500; the collector itself never stops. Errors use OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import threading
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybridfast.encoder import FusedEncoder, TextKind
from hybridfast.errors import HybridfastError
from hybridfast.index import search_index
from hybridfast.tokenization import ParallelTokenizer

logger = logging.getLogger("hybridfast.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

InputType = Literal["query", "passage", "raw"]
INPUT_KINDS: dict[str, TextKind | None] = {"query": "query", "passage": "passage", "raw": None}
MAX_SEARCH_K = 1000
OPEN_PATHS = frozenset({"/health"})
ENDPOINTS = ("/v1/embeddings", "/search", "/health", "/metrics")


@dataclass(frozen=True)
class ServerSettings:
    """Limits and batching knobs of one server; the CLI flags of `hybridfast serve`."""

    max_batch_tokens: int | None = None  # None: the encoder's default_batch_tokens (GPU 16384, CPU 2048)
    max_wait_ms: float = 5.0
    max_inputs_per_request: int = 256
    max_tokens_per_input: int = 512
    truncate: bool = True
    max_body_bytes: int = 4 * 1024 * 1024
    api_key: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_inputs_per_request", "max_tokens_per_input", "max_body_bytes"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise HybridfastError(f"server settings: {name} must be at least 1, not {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise HybridfastError(f"server settings: max_wait_ms must be at least 0, not {self.max_wait_ms}")
        if self.api_key is not None and not self.api_key:
            raise HybridfastError("server settings: api_key must not be empty (leave it out to disable auth)")


class APIError(Exception):
    """An error answered as OpenAI does: an HTTP status and ``{"error": {...}}``."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             405: "invalid_request_error", 413: "invalid_request_error", 503: "service_unavailable"}

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        kind = self.TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


# ---------------------------------------------------------------------------------------------
# Metrics (Prometheus text exposition format 0.0.4)
# ---------------------------------------------------------------------------------------------


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
    """Everything `GET /metrics` reports."""

    def __init__(self) -> None:
        latency_buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
        size_buckets = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
        self.requests = Counter("hybridfast_http_requests_total", "HTTP requests answered, by endpoint and status.",
                                ("endpoint", "status"))
        self.errors = Counter("hybridfast_http_errors_total", "HTTP requests answered with status >= 400.",
                              ("endpoint",))
        self.latency = Histogram("hybridfast_http_request_duration_seconds",
                                 "Time from request start to the last response byte.", latency_buckets, ("endpoint",))
        self.batch_inputs = Histogram("hybridfast_batch_inputs",
                                      "Inputs per dynamic batch (gathered across concurrent requests).",
                                      size_buckets)
        self.batch_tokens = Histogram("hybridfast_batch_tokens", "Real (unpadded) tokens per dynamic batch.",
                                      tuple(16 * b for b in size_buckets))
        self.forward_seconds = Histogram("hybridfast_batch_duration_seconds",
                                         "Seconds to embed one dynamic batch.", latency_buckets)
        self.inputs = Counter("hybridfast_embedded_inputs_total", "Inputs embedded.")
        self.batch_failures = Counter("hybridfast_batch_failures_total", "Encoder forwards that raised.")
        self.queue_depth: Callable[[], int] = lambda: 0

    def render(self) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.errors, self.latency, self.batch_inputs, self.batch_tokens,
                       self.forward_seconds, self.inputs, self.batch_failures):
            lines += metric.render()
        lines += ["# HELP hybridfast_queue_depth Inputs waiting for the encoder.",
                  "# TYPE hybridfast_queue_depth gauge", f"hybridfast_queue_depth {self.queue_depth()}"]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Dynamic batching
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Request:
    """One request's share of the queue: its output rows and how many are still missing."""

    future: asyncio.Future[np.ndarray]
    out: np.ndarray
    remaining: int


@dataclass(eq=False)
class _Input:
    request: _Request
    row: int
    ids: list[int]


@dataclass
class _Batch:
    inputs: list[_Input] = field(default_factory=list)
    tokens: int = 0

    def add(self, item: _Input) -> None:
        self.inputs.append(item)
        self.tokens += len(item.ids)


class DynamicBatcher:
    """Batches token-id inputs from concurrent requests into single encoder forwards.

    `start` and `embed` run on the server's event loop; forwards run on one dedicated thread,
    so the model sees one batch at a time while requests keep queueing.
    """

    def __init__(self, encoder: FusedEncoder, *, max_batch_tokens: int, max_wait_ms: float,
                 metrics: ServerMetrics):
        self.encoder = encoder
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_ms / 1000.0
        self.metrics = metrics
        self._queue: asyncio.Queue[_Input] | None = None
        self._held: _Input | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def queue_depth(self) -> int:
        return (self._queue.qsize() if self._queue is not None else 0) + (self._held is not None)

    async def start(self) -> None:
        """Warm the encoder up with one forward (a broken model fails here, not on a user), then collect."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hybridfast-forward")
        warmup = self.encoder.tokenizer(["warm-up"])["input_ids"]
        await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: self.encoder.encode_token_ids(warmup, max_batch_tokens=self.max_batch_tokens)
        )
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._collect_forever(), name="hybridfast-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        while self._queue is not None and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.request.future.done():
                item.request.future.set_exception(APIError(503, "the server is shutting down"))

    async def embed(self, token_ids: Sequence[list[int]]) -> np.ndarray:
        """Embed tokenized inputs: [n, dim] float32, in input order."""
        if self._queue is None or not self.alive:
            raise APIError(503, "the encoder worker is not running", code="worker_unavailable")
        loop = asyncio.get_running_loop()
        request = _Request(loop.create_future(), np.empty((len(token_ids), self.encoder.dim), np.float32),
                           len(token_ids))
        if not token_ids:
            return request.out
        for row, ids in enumerate(token_ids):
            self._queue.put_nowait(_Input(request, row, ids))
        return await request.future

    async def _next(self, timeout: float | None) -> _Input | None:
        """The next input whose request still waits; None when `timeout` runs out first."""
        assert self._queue is not None
        while True:
            if self._held is not None:
                item, self._held = self._held, None
            elif timeout is None:
                item = await self._queue.get()
            else:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    if timeout <= 0:
                        return None
                    try:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                    except TimeoutError:
                        return None
            if not item.request.future.done():
                return item

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next(None)
            assert first is not None
            batch = _Batch()
            batch.add(first)
            deadline = loop.time() + self.max_wait_s
            while True:
                item = await self._next(deadline - loop.time())
                if item is None:
                    break
                if batch.tokens + len(item.ids) > self.max_batch_tokens:
                    self._held = item
                    break
                batch.add(item)
            try:
                await self._run(batch)
            except Exception:  # the collector must outlive any batch
                logger.exception("batch of %d inputs failed outside the encoder", len(batch.inputs))

    async def _run(self, batch: _Batch) -> None:
        loop = asyncio.get_running_loop()
        try:
            rows = await loop.run_in_executor(self._executor, self._forward, [item.ids for item in batch.inputs])
        except Exception as err:
            self.metrics.batch_failures.inc()
            requests = list(dict.fromkeys(item.request for item in batch.inputs))
            if len(requests) == 1:
                logger.warning("encoder forward failed: %r", err)
                _fail(requests[0], err)
                return
            for request in requests:
                alone = _Batch()
                for item in batch.inputs:
                    if item.request is request:
                        alone.add(item)
                await self._run(alone)
            return
        for item, row in zip(batch.inputs, rows, strict=True):
            request = item.request
            if request.future.done():
                continue
            request.out[item.row] = row
            request.remaining -= 1
            if request.remaining == 0:
                request.future.set_result(request.out)

    def _forward(self, token_ids: list[list[int]]) -> np.ndarray:
        """Embed one collected batch on the forward thread: [n, dim] float32 in input order.

        `FusedEncoder.encode_token_ids` is the lean path of `encode` (length-sorted batches
        within the token budget, packed or padded), so the server embeds exactly as `encode`.
        """
        start = time.perf_counter()
        rows = self.encoder.encode_token_ids(token_ids, max_batch_tokens=self.max_batch_tokens)
        self.metrics.forward_seconds.observe(time.perf_counter() - start)
        self.metrics.batch_inputs.observe(len(token_ids))
        self.metrics.batch_tokens.observe(sum(len(ids) for ids in token_ids))
        self.metrics.inputs.inc(amount=len(token_ids))
        return rows


def _fail(request: _Request, err: Exception) -> None:
    if not request.future.done():
        message = f"the encoder failed on this request: {type(err).__name__}: {err}"
        request.future.set_exception(APIError(500, message, code="encoder_error"))


# ---------------------------------------------------------------------------------------------
# Request bodies and tokenization
# ---------------------------------------------------------------------------------------------


class EmbeddingRequest(BaseModel):
    """`POST /v1/embeddings`: OpenAI's body plus `input_type` (which checkpoint prefix to add)."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[Any]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    input_type: InputType = Field(
        "passage",
        description='"passage" (default) or "query" adds the checkpoint\'s prefix (e5: "passage: " / '
                    '"query: "); "raw" embeds the text as given.',
    )


class SearchRequest(BaseModel):
    """`POST /search`: one `query` or a list of `queries`, and `k` hits per query."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = None
    queries: list[str] | None = None
    k: int = Field(10, ge=1, le=MAX_SEARCH_K)


def _texts(raw: str | list[Any]) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    for i, value in enumerate(raw):
        if isinstance(value, int) or (isinstance(value, list) and all(isinstance(v, int) for v in value)):
            raise APIError(400, f"input[{i}]: token-id arrays are not supported; send text (this server "
                                "tokenizes with the model's own tokenizer)", code="unsupported_input", param="input")
        if not isinstance(value, str):
            raise APIError(400, f"input[{i}]: expected a string, got {type(value).__name__}", param="input")
    return list(raw)


def tokenize_inputs(tokenizer: ParallelTokenizer, encoder: FusedEncoder, texts: Sequence[str],
                    kind: TextKind | None, settings: ServerSettings) -> list[list[int]]:
    """Prefix and tokenize `texts` for `kind`; truncate or reject inputs over the token limit.

    The limit is the smaller of `max_tokens_per_input` and the checkpoint's length limit for
    `kind`, special tokens included. Without truncation, texts are tokenized one token past
    the limit, which is enough to tell that they are too long.
    """
    limit = min(settings.max_tokens_per_input, encoder.config.length_limit(kind))
    prefix = encoder.config.prefix(kind)
    ids = tokenizer.token_ids([prefix + text for text in texts], limit if settings.truncate else limit + 1)
    for i, row in enumerate(ids):
        if len(row) > limit:
            raise APIError(413, f"input[{i}] has more than {limit} tokens, the limit per input; shorten it, or "
                                "start the server with --truncate", code="input_too_long", param="input")
    return ids


class TokenizerPool:
    """Tokenization off the event loop, on a few threads that share one thread-safe
    :class:`~hybridfast.tokenization.ParallelTokenizer` (one Rust tokenizer copy per length limit, so query and
    passage limits never mix; a large request is itself split over that tokenizer's threads)."""

    def __init__(self, encoder: FusedEncoder, settings: ServerSettings, workers: int = 2):
        self.encoder = encoder
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hybridfast-request")
        self._tokenizer = ParallelTokenizer(encoder.tokenizer)

    async def tokenize(self, texts: Sequence[str], kind: TextKind | None) -> list[list[int]]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._tokenize, texts, kind)

    def _tokenize(self, texts: Sequence[str], kind: TextKind | None) -> list[list[int]]:
        return tokenize_inputs(self._tokenizer, self.encoder, texts, kind, self.settings)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


# ---------------------------------------------------------------------------------------------
# Middleware: auth, body size, request metrics
# ---------------------------------------------------------------------------------------------


class _Gatekeeper:
    """Pure ASGI middleware: counts and times every request, checks the bearer key, caps the body.

    The body is read here, before FastAPI parses it, so an oversize body is refused without
    being held whole, and a bad key is refused before the body is even looked at.
    """

    def __init__(self, app: ASGIApp, settings: ServerSettings, metrics: ServerMetrics):
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self._key = settings.api_key.encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        start = time.perf_counter()
        status = [500]

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_counted)
        finally:
            self.metrics.requests.inc(endpoint, str(status[0]))
            if status[0] >= 400:
                self.metrics.errors.inc(endpoint)
            self.metrics.latency.observe(time.perf_counter() - start, endpoint)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._key is not None and scope["path"] not in OPEN_PATHS:
            error = self._auth_error(scope)
            if error is not None:
                await error.response()(scope, receive, send)
                return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        limit = self.settings.max_body_bytes
        too_large = APIError(413, f"request body exceeds {limit} bytes (--max-body-bytes)", code="body_too_large")
        if declared is not None:
            if not declared.isdigit():
                await APIError(400, "invalid Content-Length header").response()(scope, receive, send)
                return
            if int(declared) > limit:
                await too_large.response()(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await too_large.response()(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _auth_error(self, scope: Scope) -> APIError | None:
        assert self._key is not None
        header = dict(scope["headers"]).get(b"authorization")
        if header is None:
            return APIError(401, "missing API key: send the header 'Authorization: Bearer <key>'",
                            code="invalid_api_key")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not secrets.compare_digest(token.strip(), self._key):
            return APIError(401, "incorrect API key provided", code="invalid_api_key")
        return None


# ---------------------------------------------------------------------------------------------
# The application
# ---------------------------------------------------------------------------------------------


def _validation_message(err: RequestValidationError) -> str:
    messages = []
    for detail in err.errors():
        location = [str(part) for part in detail.get("loc", ()) if part != "body"]
        if detail.get("type") == "json_invalid":
            where = f" at character {location[0]}" if location else ""
            return f"malformed JSON body{where}: {detail.get('ctx', {}).get('error', 'cannot parse')}"
        if detail.get("type") == "extra_forbidden":
            messages.append(f"{'.'.join(location)}: unknown field")
        elif not location:
            messages.append("the request body must be a JSON object (Content-Type: application/json)")
        else:
            messages.append(f"{'.'.join(location)}: {detail.get('msg', 'invalid value')}")
    return "; ".join(dict.fromkeys(messages)) or "invalid request body"


def create_app(encoder: FusedEncoder, settings: ServerSettings | None = None, *,
               index: Any = None, doc_ids: Sequence[str] | None = None, model_name: str | None = None) -> FastAPI:
    """The FastAPI app serving `encoder` (and `index` with its `doc_ids` for `/search`).

    The dynamic batcher starts and stops with the app's lifespan, so run the app under an
    ASGI server (uvicorn) rather than calling routes directly.
    """
    settings = settings or ServerSettings()
    if (index is None) != (doc_ids is None):
        raise HybridfastError("create_app: pass index and doc_ids together")
    if index is not None and index.d != encoder.dim:
        raise HybridfastError(f"the index holds {index.d}-dimensional vectors, the model makes {encoder.dim}")
    served_name = model_name or encoder.source or "hybridfast"
    metrics = ServerMetrics()
    batcher = DynamicBatcher(encoder, max_batch_tokens=settings.max_batch_tokens or encoder.default_batch_tokens,
                             max_wait_ms=settings.max_wait_ms, metrics=metrics)
    metrics.queue_depth = batcher.queue_depth
    tokenizers = TokenizerPool(encoder, settings)
    documents = list(doc_ids) if doc_ids is not None else []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            tokenizers.shutdown()

    app = FastAPI(title="hybridfast", summary="Multilingual dense-retrieval embeddings and search.",
                  lifespan=lifespan)
    app.state.settings, app.state.metrics, app.state.batcher = settings, metrics, batcher

    @app.exception_handler(APIError)
    async def api_error(_: Request, err: APIError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        return APIError(400, _validation_message(err), code="invalid_request").response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return APIError(err.status_code, str(err.detail)).response()

    async def embed(texts: list[str], kind: TextKind | None) -> tuple[np.ndarray, int]:
        if not texts:
            raise APIError(400, "input must not be empty", param="input")
        if len(texts) > settings.max_inputs_per_request:
            raise APIError(413, f"{len(texts)} inputs in one request; the limit is {settings.max_inputs_per_request} "
                                "(--max-inputs-per-request)", code="too_many_inputs", param="input")
        ids = await tokenizers.tokenize(texts, kind)
        return await batcher.embed(ids), sum(len(row) for row in ids)

    @app.post("/v1/embeddings", summary="OpenAI-compatible embeddings.")
    async def embeddings(body: EmbeddingRequest) -> JSONResponse:
        texts = _texts(body.input)
        if body.dimensions is not None and body.dimensions != encoder.dim:
            raise APIError(400, f"dimensions={body.dimensions} is not supported: this model only makes "
                                f"{encoder.dim}-dimensional embeddings", code="unsupported_dimensions",
                           param="dimensions")
        vectors, tokens = await embed(texts, INPUT_KINDS[body.input_type])
        if body.encoding_format == "base64":
            encoded: list[Any] = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in vectors]
        else:
            encoded = vectors.tolist()
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(encoded)]
        return JSONResponse({"object": "list", "data": data, "model": served_name,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.post("/search", summary="Top-k documents of the loaded index for one or more queries.")
    async def search(body: SearchRequest) -> JSONResponse:
        if index is None:
            raise APIError(404, "no index is loaded: start the server with --index DIR", code="no_index")
        if (body.query is None) == (body.queries is None):
            raise APIError(400, "send exactly one of 'query' (a string) or 'queries' (a list of strings)")
        texts = [body.query] if body.query is not None else list(body.queries or [])
        vectors, tokens = await embed(texts, "query")
        scores, ids = await asyncio.to_thread(search_index, index, vectors, body.k)
        results = [
            {"query": text, "hits": [{"id": documents[j], "score": float(s)}
                                     for j, s in zip(row_ids, row_scores, strict=True) if j >= 0]}
            for text, row_ids, row_scores in zip(texts, ids.tolist(), scores.tolist(), strict=True)
        ]
        return JSONResponse({"object": "list", "model": served_name, "results": results,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.get("/health", summary="Liveness: 200 while the encoder worker runs, 503 otherwise.")
    async def health() -> JSONResponse:
        body = {"status": "ok" if batcher.alive else "unavailable", "model": served_name,
                "dimensions": encoder.dim, "device": str(encoder.device),
                "index_documents": len(documents) if index is not None else None}
        return JSONResponse(body, status_code=200 if batcher.alive else 503)

    @app.get("/metrics", summary="Prometheus metrics: requests, errors, latency, batch sizes.")
    async def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    app.add_middleware(_Gatekeeper, settings=settings, metrics=metrics)
    return app
