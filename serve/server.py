"""The HTTP embeddings API: OpenAI-compatible `/v1/embeddings` and `/v1/models`, `/search`, `/health`, `/metrics`.

This module is the HTTP layer only: it validates bodies, tokenizes off the event loop, hands each request's
token ids to the :class:`~hybridfast.serve.scheduler.Scheduler` (bounded token queue, fair round-robin
batches, deadlines, cancellation) and translates results and errors into responses.

Request path:

1. :class:`_Gatekeeper` (ASGI middleware) checks the bearer key, reads the body within ``max_body_bytes``
   and ``read_timeout_s``, and turns any exception nobody handled into a JSON 500, so every error reaches the
   client in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, and the keep-alive
   connection stays usable. ``ERROR_KINDS`` is the one table from error kind to status and type.
2. A handler validates the texts (non-empty, valid Unicode: a JSON ``"\\ud800"`` decodes to a lone surrogate
   that no tokenizer accepts), checks ``model`` against the served name, and tokenizes in a worker thread.
3. The scheduler admits the request or answers 429 (queue full) / 413 (larger than the whole queue); the
   handler then waits for the rows, the deadline (504), or the client hanging up, which cancels the request.

uvicorn runs it with :func:`uvicorn_config`, whose h11 protocol also puts a deadline on request heads.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from hybridfast.encoder import FusedEncoder, TextKind
from hybridfast.errors import HybridfastError
from hybridfast.index import search_index
from hybridfast.serve.metrics import ServerMetrics
from hybridfast.serve.scheduler import (
    DeadlineExceeded,
    EncoderFailed,
    Job,
    QueueFull,
    RequestTooLarge,
    Scheduler,
    SchedulerError,
    SchedulerStopped,
)
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
ENDPOINTS = ("/v1/embeddings", "/v1/models", "/search", "/health", "/metrics")
# The default queue bound, in batches: on CPU (2,048-token batches) 131,072 tokens, one request at the
# default input limits (256 inputs × 512 tokens); see hybridfast.serve.scheduler for why tokens.
QUEUE_BATCHES = 64
# /health says "saturated" from this fraction of the queue bound on: new large requests may get 429.
SATURATED_AT = 0.9
# Seconds an idle keep-alive connection stays open. Longer than HTTP clients' own idle expiry (httpx: 5 s) so
# that the client, not the server, closes it: a server closing at the moment the client reuses the connection
# resets that request (uvicorn's default is 5 s, the same as httpx's, and lost such races under load).
KEEP_ALIVE_S = 30


@dataclass(frozen=True)
class ServerSettings:
    """Limits, timeouts and batching knobs of one server; the CLI flags of `hybridfast serve`."""

    max_batch_tokens: int | None = None  # None: the encoder's default_batch_tokens (GPU 16384, CPU 2048)
    max_wait_ms: float = 5.0
    max_queue_tokens: int | None = None  # None: QUEUE_BATCHES × max_batch_tokens
    max_inputs_per_request: int = 256
    max_tokens_per_input: int = 512
    truncate: bool = True
    max_body_bytes: int = 4 * 1024 * 1024
    request_timeout_s: float | None = 120.0
    read_timeout_s: float = 30.0
    api_key: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_queue_tokens", "max_inputs_per_request", "max_tokens_per_input",
                     "max_body_bytes"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise HybridfastError(f"server settings: {name} must be at least 1, not {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise HybridfastError(f"server settings: max_wait_ms must be at least 0, not {self.max_wait_ms}")
        for name in ("request_timeout_s", "read_timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise HybridfastError(f"server settings: {name} must be a positive number of seconds, not {value}")
        if self.api_key is not None and not self.api_key:
            raise HybridfastError("server settings: api_key must not be empty (leave it out to disable auth)")

    def batch_tokens(self, encoder: FusedEncoder) -> int:
        return self.max_batch_tokens or encoder.default_batch_tokens

    def queue_tokens(self, encoder: FusedEncoder) -> int:
        return self.max_queue_tokens or QUEUE_BATCHES * self.batch_tokens(encoder)


# ---------------------------------------------------------------------------------------------
# Errors: one table from kind to HTTP status and OpenAI error type
# ---------------------------------------------------------------------------------------------

ERROR_KINDS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "authentication": (401, "authentication_error"),
    "not_found": (404, "not_found_error"),
    "model_not_found": (404, "invalid_request_error"),  # what OpenAI answers for an unknown model
    "method_not_allowed": (405, "invalid_request_error"),
    "read_timeout": (408, "invalid_request_error"),
    "too_large": (413, "invalid_request_error"),
    "overloaded": (429, "rate_limit_error"),
    "client_closed": (499, "client_closed_request"),  # nginx's code; logged and counted, never received
    "internal": (500, "server_error"),
    "encoder_failed": (500, "server_error"),
    "unavailable": (503, "service_unavailable"),
    "timeout": (504, "timeout_error"),
}
SCHEDULER_ERROR_KINDS: dict[type[SchedulerError], tuple[str, str]] = {
    QueueFull: ("overloaded", "queue_full"),
    RequestTooLarge: ("too_large", "request_too_large"),
    DeadlineExceeded: ("timeout", "request_timeout"),
    EncoderFailed: ("encoder_failed", "encoder_error"),
    SchedulerStopped: ("unavailable", "worker_unavailable"),
}
HTTP_STATUS_KINDS = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


class APIError(Exception):
    """An error answered as OpenAI does: ``{"error": {"message", "type", "param", "code"}}``; see ERROR_KINDS."""

    def __init__(self, kind: str, message: str, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.type = ERROR_KINDS[kind]
        self.message = message
        self.code = code or kind
        self.param = param
        self.headers = dict(headers or {})
        if self.status == 401:
            self.headers["WWW-Authenticate"] = "Bearer"

    @classmethod
    def from_scheduler(cls, err: SchedulerError) -> APIError:
        kind, code = SCHEDULER_ERROR_KINDS[type(err)]
        headers = {"Retry-After": str(err.retry_after_s)} if isinstance(err, QueueFull) else None
        return cls(kind, str(err), code=code, headers=headers)

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return _ErrorResponse(body, status_code=self.status, headers=self.headers)


class _ErrorResponse(JSONResponse):
    """JSON escaped to ASCII: a message may quote client text holding lone surrogates, which UTF-8 cannot encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


# ---------------------------------------------------------------------------------------------
# Request bodies, text checks and tokenization
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


def checked_texts(raw: str | list[Any], param: str) -> list[str]:
    """The texts of `raw` (one string or a list), each a non-blank string of valid Unicode, else a 400
    naming the field and index."""
    texts = [raw] if isinstance(raw, str) else raw
    for i, value in enumerate(texts):
        where = param if isinstance(raw, str) else f"{param}[{i}]"
        if isinstance(value, int) or (isinstance(value, list) and all(isinstance(v, int) for v in value)):
            raise APIError("invalid_request", f"{where}: token-id arrays are not supported; send text (this "
                           "server tokenizes with the model's own tokenizer)", code="unsupported_input", param=param)
        if not isinstance(value, str):
            raise APIError("invalid_request", f"{where}: expected a string, got {type(value).__name__}",
                           param=param)
        if not value.strip():
            raise APIError("invalid_request", f"{where} is empty or only whitespace; there is nothing to embed",
                           code="empty_input", param=param)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise APIError("invalid_request", f"{where} is not valid Unicode: a lone surrogate "
                           f"U+{ord(value[err.start]):04X} at character {err.start} (a JSON \\u escape of half a "
                           "UTF-16 pair)", code="invalid_unicode", param=param) from None
    return list(texts)


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
            raise APIError("too_large", f"input[{i}] has more than {limit} tokens, the limit per input; shorten it, "
                           "or start the server with --truncate", code="input_too_long", param="input")
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


async def _until_hangup(receive: Receive) -> None:
    """Returns when the client disconnects (uvicorn answers `receive` with http.disconnect once it does)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def rows_unless_hangup(scheduler: Scheduler, job: Job, receive: Receive) -> np.ndarray:
    """`job`'s rows; cancels the job if the client hangs up first (or this handler is cancelled)."""
    hangup = asyncio.ensure_future(_until_hangup(receive))
    try:
        await asyncio.wait((job.result, hangup), return_when=asyncio.FIRST_COMPLETED)
    finally:
        hangup.cancel()
        if not job.finished:
            scheduler.cancel(job)
    if job.result.cancelled():
        raise APIError("client_closed", "the client closed the connection before the embeddings were ready")
    try:
        return job.result.result()
    except SchedulerError as err:
        raise APIError.from_scheduler(err) from None


# ---------------------------------------------------------------------------------------------
# Middleware: auth, body size and read deadline, request metrics, the last line of error handling
# ---------------------------------------------------------------------------------------------


class _Gatekeeper:
    """Pure ASGI middleware: counts and times every request, checks the bearer key, reads the body within its
    size and time limits, and answers any exception nobody handled with a JSON 500.

    The body is read here, before FastAPI parses it, so an oversize body is refused without
    being held whole, a slow one is cut off at ``read_timeout_s`` (408, connection closed), and a
    bad key is refused before the body is even looked at. Catching unhandled exceptions here,
    inside Starlette's ServerErrorMiddleware, keeps them from reaching uvicorn, which would
    answer in plain text and close the connection.
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
        endpoint = next((e for e in ENDPOINTS if scope["path"] == e or scope["path"].startswith(e + "/")), "other")
        start = time.perf_counter()
        status = [0]

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_counted)
        except Exception:
            logger.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            if not status[0]:
                error = APIError("internal", "internal server error (the server log has the details)")
                await error.response()(scope, receive, send_counted)
        finally:
            self.metrics.requests.inc(endpoint, str(status[0] or 500))
            if status[0] >= 400 or not status[0]:
                self.metrics.errors.inc(endpoint)
            self.metrics.latency.observe(time.perf_counter() - start, endpoint)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._key is not None and scope["path"] not in OPEN_PATHS:
            error = self._auth_error(scope)
            if error is not None:
                await error.response()(scope, receive, send)
                return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after answering 400/408/413 (or when the client has gone)."""
        declared = dict(scope["headers"]).get(b"content-length")
        limit = self.settings.max_body_bytes
        too_large = APIError("too_large", f"request body exceeds {limit} bytes (--max-body-bytes)",
                             code="body_too_large", headers={"Connection": "close"})
        if declared is not None and not declared.isdigit():
            await APIError("invalid_request", "invalid Content-Length header",
                           headers={"Connection": "close"}).response()(scope, receive, send)
            return None
        if declared is not None and int(declared) > limit:
            await too_large.response()(scope, receive, send)
            return None
        deadline = time.monotonic() + self.settings.read_timeout_s
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                timeout = APIError("read_timeout", f"the request body did not arrive within "
                                   f"{self.settings.read_timeout_s:g} s (--read-timeout)", code="read_timeout",
                                   headers={"Connection": "close"})
                await timeout.response()(scope, receive, send)
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await too_large.response()(scope, receive, send)
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _auth_error(self, scope: Scope) -> APIError | None:
        assert self._key is not None
        header = dict(scope["headers"]).get(b"authorization")
        if header is None:
            return APIError("authentication", "missing API key: send the header 'Authorization: Bearer <key>'",
                            code="invalid_api_key")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not secrets.compare_digest(token.strip(), self._key):
            return APIError("authentication", "incorrect API key provided", code="invalid_api_key")
        return None


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


# ---------------------------------------------------------------------------------------------
# The application
# ---------------------------------------------------------------------------------------------


def default_served_name(source: str) -> str:
    """The name a model is served under unless told otherwise: its checkpoint folder's name (so no response
    shows a path; ``multilingual-e5-small`` for the default model), its hub id, or "hybridfast" without a source."""
    if not source:
        return "hybridfast"
    path = os.path.expanduser(source)
    # abspath, not resolve: "." or "ckpt/" name their folder, and a symlinked folder keeps the name it was given
    return os.path.basename(os.path.abspath(path)) if os.path.isdir(path) else source


def create_app(encoder: FusedEncoder, settings: ServerSettings | None = None, *,
               index: Any = None, doc_ids: Sequence[str] | None = None, model_name: str | None = None) -> FastAPI:
    """The FastAPI app serving `encoder` (and `index` with its `doc_ids` for `/search`).

    `model_name` is what responses, `/health` and `/v1/models` call the model, and the only
    `model` a request may name (default: :func:`default_served_name` of the encoder's source).
    The scheduler starts and stops with the app's lifespan, so run the app under an ASGI
    server (uvicorn, see :func:`uvicorn_config`) rather than calling routes directly.
    """
    settings = settings or ServerSettings()
    if (index is None) != (doc_ids is None):
        raise HybridfastError("create_app: pass index and doc_ids together")
    if index is not None and index.d != encoder.dim:
        raise HybridfastError(f"the index holds {index.d}-dimensional vectors, the model makes {encoder.dim}")
    served_name = model_name or default_served_name(encoder.source)
    metrics = ServerMetrics()
    batch_tokens = settings.batch_tokens(encoder)
    scheduler = Scheduler(functools.partial(encoder.encode_token_ids, max_batch_tokens=batch_tokens), encoder.dim,
                          max_batch_tokens=batch_tokens, max_queue_tokens=settings.queue_tokens(encoder),
                          max_wait_ms=settings.max_wait_ms, metrics=metrics)
    tokenizers = TokenizerPool(encoder, settings)
    documents = list(doc_ids) if doc_ids is not None else []
    model_card = {"id": served_name, "object": "model", "created": int(time.time()), "owned_by": "hybridfast"}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await scheduler.start(warmup=encoder.tokenizer(["warm-up"])["input_ids"])
        try:
            yield
        finally:
            await scheduler.stop()
            tokenizers.shutdown()

    app = FastAPI(title="hybridfast", summary="Multilingual dense-retrieval embeddings and search.",
                  lifespan=lifespan)
    app.state.settings, app.state.metrics, app.state.scheduler = settings, metrics, scheduler

    @app.exception_handler(APIError)
    async def api_error(_: Request, err: APIError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        return APIError("invalid_request", _validation_message(err)).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = HTTP_STATUS_KINDS.get(err.status_code, "internal" if err.status_code >= 500 else "invalid_request")
        return APIError(kind, str(err.detail), headers=err.headers).response()

    def check_model(requested: str | None) -> None:
        if requested is not None and requested != served_name:
            raise APIError("model_not_found", f"the model {requested!r} does not exist here; this server serves "
                           f"{served_name!r} (GET /v1/models)", code="model_not_found", param="model")

    async def embed(request: Request, texts: list[str], kind: TextKind | None) -> tuple[np.ndarray, int]:
        start = time.monotonic()
        if not texts:
            raise APIError("invalid_request", "input must not be empty", param="input")
        if len(texts) > settings.max_inputs_per_request:
            raise APIError("too_large", f"{len(texts)} inputs in one request; the limit is "
                           f"{settings.max_inputs_per_request} (--max-inputs-per-request)", code="too_many_inputs",
                           param="input")
        ids = await tokenizers.tokenize(texts, kind)
        try:
            job = scheduler.submit(ids, settings.request_timeout_s, started=start)
        except SchedulerError as err:
            raise APIError.from_scheduler(err) from None
        return await rows_unless_hangup(scheduler, job, request.receive), sum(len(row) for row in ids)

    @app.post("/v1/embeddings", summary="OpenAI-compatible embeddings.")
    async def embeddings(request: Request, body: EmbeddingRequest) -> JSONResponse:
        check_model(body.model)
        texts = checked_texts(body.input, "input")
        if body.dimensions is not None and body.dimensions != encoder.dim:
            raise APIError("invalid_request", f"dimensions={body.dimensions} is not supported: this model only makes "
                           f"{encoder.dim}-dimensional embeddings", code="unsupported_dimensions",
                           param="dimensions")
        vectors, tokens = await embed(request, texts, INPUT_KINDS[body.input_type])
        if body.encoding_format == "base64":
            encoded: list[Any] = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in vectors]
        else:
            encoded = vectors.tolist()
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(encoded)]
        return JSONResponse({"object": "list", "data": data, "model": served_name,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.get("/v1/models", summary="OpenAI-compatible model list: the one model this server serves.")
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model_card]})

    @app.get("/v1/models/{model:path}", summary="OpenAI-compatible model lookup.")
    async def model(model: str) -> JSONResponse:
        check_model(model)
        return JSONResponse(model_card)

    @app.post("/search", summary="Top-k documents of the loaded index for one or more queries.")
    async def search(request: Request, body: SearchRequest) -> JSONResponse:
        if index is None:
            raise APIError("not_found", "no index is loaded: start the server with --index DIR", code="no_index")
        if (body.query is None) == (body.queries is None):
            raise APIError("invalid_request", "send exactly one of 'query' (a string) or 'queries' (a list of "
                           "strings)")
        texts = checked_texts(body.query, "query") if body.query is not None else checked_texts(body.queries or [],
                                                                                                 "queries")
        vectors, tokens = await embed(request, texts, "query")
        scores, ids = await asyncio.to_thread(search_index, index, vectors, body.k)
        results = [
            {"query": text, "hits": [{"id": documents[j], "score": float(s)}
                                     for j, s in zip(row_ids, row_scores, strict=True) if j >= 0]}
            for text, row_ids, row_scores in zip(texts, ids.tolist(), scores.tolist(), strict=True)
        ]
        return JSONResponse({"object": "list", "model": served_name, "results": results,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.api_route("/health", methods=["GET", "HEAD"],
                   summary="Readiness: 200 while the encoder worker runs (status ok or saturated), else 503.")
    async def health() -> JSONResponse:
        saturation = scheduler.saturation
        status = "unavailable" if not scheduler.alive else "saturated" if saturation >= SATURATED_AT else "ok"
        body = {"status": status, "model": served_name, "dimensions": encoder.dim, "device": str(encoder.device),
                "index_documents": len(documents) if index is not None else None,
                "queue": {"requests": len(scheduler.queue), "tokens": scheduler.queue.waiting_tokens,
                          "max_tokens": scheduler.queue.max_queue_tokens, "saturation": round(saturation, 4)}}
        return JSONResponse(body, status_code=503 if status == "unavailable" else 200)

    @app.get("/metrics", summary="Prometheus metrics: requests, errors, latency, batches, the queue.")
    async def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    app.add_middleware(_Gatekeeper, settings=settings, metrics=metrics)
    return app


# ---------------------------------------------------------------------------------------------
# Running under uvicorn
# ---------------------------------------------------------------------------------------------


class HeadDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head.

    uvicorn closes a keep-alive connection that stays idle between requests (KEEP_ALIVE_S), but stops that
    timer at the first byte and never times a new connection, so a client that sends its headers a byte at a
    time (slowloris) holds the connection forever. Here a request head must be complete `read_timeout_s` after
    the connection opened, or after the head's first byte on a kept-alive connection; otherwise the connection
    is closed. The deadline starts at that first byte, not at the last response, so idle time between requests
    stays KEEP_ALIVE_S whatever `read_timeout_s` is. Bodies have their own deadline in :class:`_Gatekeeper`.
    """

    def __init__(self, *args: Any, read_timeout_s: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.read_timeout_s = read_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_cycle: Any = None  # the cycle (None: no request yet) current when the deadline was armed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        between_requests = self.cycle is not None and self.cycle.response_complete
        if between_requests and self._head_cycle is not self.cycle:  # the first byte of the next head
            self._arm_head_deadline()
        super().data_received(data)

    def _arm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_cycle = self.cycle
        self._head_timer = self.loop.call_later(self.read_timeout_s, self._head_overdue, self.cycle)

    def _head_overdue(self, cycle_when_armed: Any) -> None:
        if self.cycle is cycle_when_armed and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8080,
                   log_level: str = "info") -> uvicorn.Config:
    """uvicorn settings for `app` (made by :func:`create_app`): the h11 protocol with the head deadline (the
    app's ``read_timeout_s``), and idle keep-alive connections closed after KEEP_ALIVE_S."""
    settings: ServerSettings = app.state.settings
    protocol = functools.partial(HeadDeadlineH11Protocol, read_timeout_s=settings.read_timeout_s)
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", http=protocol,  # type: ignore[arg-type]
                          timeout_keep_alive=KEEP_ALIVE_S)


@contextmanager
def serve_in_thread(app: FastAPI, *, log_level: str = "warning",
                    startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Run `app` under uvicorn on a free 127.0.0.1 port in a background thread; yield its base URL.

    For tests, notebooks and scripts; `hybridfast serve` runs the same configuration in the foreground.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="hybridfast-uvicorn")
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise HybridfastError("the server did not start (see its log)")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
