"""`hybridfast serve`: the HTTP embeddings API (see `hybridfast.serve.server`)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from hybridfast.serve.cli import INT8_HELP


def serve_command(
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint directory or model id to serve."),
    index: Path | None = typer.Option(
        None, "--index", help="FAISS index directory written by `hybridfast index`; enables POST /search."
    ),
    served_model_name: str | None = typer.Option(
        None, "--served-model-name",
        help="The name responses, /health and /v1/models give the model, and the only 'model' a request may "
             "name (others get 404). Default: the checkpoint folder's name (multilingual-e5-small for "
             "--model default, the id for hub models).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; the default answers this machine only."),
    port: int = typer.Option(8080, "--port", help="TCP port to listen on."),
    max_batch_tokens: int | None = typer.Option(
        None, "--max-batch-tokens",
        help="Tokens gathered from concurrent requests into one batch (default: 16384 on GPU, 2048 on CPU).",
    ),
    max_wait_ms: float = typer.Option(
        5.0, "--max-wait-ms", help="How long a batch waits for more requests after its first input."
    ),
    max_queue_tokens: int | None = typer.Option(
        None, "--max-queue-tokens",
        help="Tokens that may wait for the encoder (default: 64 batches, 131072 on CPU). Past it requests get 429 "
             "with Retry-After; a request larger than the whole queue gets 413.",
    ),
    request_timeout: float = typer.Option(
        120.0, "--request-timeout",
        help="Seconds a request may take from its body's arrival to its answer (tokenizing, queueing and "
             "embedding; --read-timeout bounds the reading); later ones get 504 and their remaining work is "
             "dropped. 0: no limit.",
    ),
    read_timeout: float = typer.Option(
        30.0, "--read-timeout",
        help="Seconds a client may take to send a request's headers, and again its body; slower ones get 408 "
             "(or a closed connection) so that slow clients cannot hold connections open.",
    ),
    max_inputs_per_request: int = typer.Option(
        256, "--max-inputs-per-request", help="More inputs in one request get 413."
    ),
    max_tokens_per_input: int = typer.Option(
        512, "--max-tokens-per-input",
        help="Token limit per input (special tokens and prefix included; capped by the checkpoint's max length).",
    ),
    truncate: bool = typer.Option(
        True, "--truncate/--no-truncate", help="Cut longer inputs to the limit, or answer them with 413."
    ),
    max_body_bytes: int = typer.Option(4 * 1024 * 1024, "--max-body-bytes", help="Larger request bodies get 413."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="HYBRIDFAST_API_KEY",
        help="Require 'Authorization: Bearer KEY' on every endpoint except /health.",
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: cuda if present)."),
    dtype: str | None = typer.Option(None, "--dtype", help="float32, bfloat16 or float16 (default: the checkpoint's)."),
    int8: bool = typer.Option(False, "--int8", help=INT8_HELP),
    quantize: str | None = typer.Option(None, "--quantize", hidden=True, help="Deprecated: --quantize int8 is --int8."),
    threads: int | None = typer.Option(
        None, "--threads", min=1,
        help="CPU threads per forward (torch intra-op). Default on CPU: all cores but one, which stays free for "
             "HTTP and tokenization (oversubscribed threads make forwards many times slower).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: debug, info, warning, error."),
) -> None:
    """Serve embeddings (OpenAI-compatible POST /v1/embeddings, GET /v1/models) and search (POST /search) over HTTP.

    Concurrent requests share batches of up to --max-batch-tokens (a batch waits at most --max-wait-ms for
    company); a large request is cut into such batches, taking turns with everyone else's, so one client cannot
    hold the encoder. At most --max-queue-tokens wait (then 429), each request has --request-timeout seconds
    (then 504), and a client that hangs up has its remaining work dropped.

    An embeddings request may add "input_type": "passage" (the default), "query" or "raw" to pick the
    checkpoint's prefix (e5: "passage: " / "query: " / none). POST /search takes {"query": "..."} or
    {"queries": [...]}, and "k" (default 10), and always embeds queries. Errors come as OpenAI's
    {"error": {"message", "type", "param", "code"}}. GET or HEAD /health reports readiness and the queue,
    GET /metrics Prometheus metrics.
    """
    import torch
    import uvicorn

    import hybridfast
    from hybridfast.errors import HybridfastError
    from hybridfast.index import load_index
    from hybridfast.serve.server import ServerSettings, create_app, uvicorn_config

    try:
        if quantize is not None:
            if quantize != "int8":
                raise HybridfastError(f"--quantize {quantize}: quantize must be None or 'int8' (the flag is --int8)")
            typer.echo("hybridfast serve: --quantize int8 is deprecated; use --int8", err=True)
        settings = ServerSettings(
            max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, max_queue_tokens=max_queue_tokens,
            max_inputs_per_request=max_inputs_per_request, max_tokens_per_input=max_tokens_per_input,
            truncate=truncate, max_body_bytes=max_body_bytes, request_timeout_s=request_timeout if request_timeout != 0 else None,
            read_timeout_s=read_timeout, api_key=api_key,
        )
        encoder = hybridfast.load(model, device=device, dtype=dtype,
                                  quantize="int8" if int8 or quantize == "int8" else None)
        loaded = load_index(index) if index is not None else (None, None)
        app = create_app(encoder, settings, index=loaded[0], doc_ids=loaded[1],
                         model_name=served_model_name)
    except HybridfastError as err:
        typer.echo(f"hybridfast serve: {err}", err=True)
        raise typer.Exit(1) from err
    if threads is not None or encoder.device.type == "cpu":
        torch.set_num_threads(threads or _cpu_threads_for_forward())
    if encoder.config_was_defaulted:
        typer.echo(f"hybridfast serve: {model} has no hybridfast_encoder.json; using mean pooling, L2 "
                   "normalization and no prefixes", err=True)
    uvicorn.Server(uvicorn_config(app, host=host, port=port, log_level=log_level)).run()


def _cpu_threads_for_forward() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)
