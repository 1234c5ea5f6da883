"""`hybridfast serve`: the HTTP embeddings API (see `hybridfast.serve.server`)."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def serve_command(
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint directory or model id to serve."),
    index: Path | None = typer.Option(
        None, "--index", help="FAISS index directory written by `hybridfast index`; enables POST /search."
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
        help="Require 'Authorization: Bearer KEY' on every endpoint except GET /health.",
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: cuda if present)."),
    dtype: str | None = typer.Option(None, "--dtype", help="float32, bfloat16 or float16 (default: the checkpoint's)."),
    quantize: str | None = typer.Option(
        None, "--quantize", help="int8: int8 linear layers with per-token activation scales (CPU, float32 models)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1,
        help="CPU threads per forward (torch intra-op). Default on CPU: all cores but one, which stays free for "
             "HTTP and tokenization (oversubscribed threads make forwards many times slower).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: debug, info, warning, error."),
) -> None:
    """Serve embeddings (OpenAI-compatible POST /v1/embeddings) and search (POST /search) over HTTP.

    Concurrent requests are batched together (up to --max-batch-tokens, waiting at most
    --max-wait-ms). An embeddings request may add "input_type": "passage" (the default),
    "query" or "raw" to pick the checkpoint's prefix (e5: "passage: " / "query: " / none);
    /search always embeds queries. GET /health answers liveness, GET /metrics Prometheus metrics.
    """
    import torch
    import uvicorn

    import hybridfast
    from hybridfast.errors import HybridfastError
    from hybridfast.index import load_index
    from hybridfast.serve.server import ServerSettings, create_app

    try:
        settings = ServerSettings(
            max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms,
            max_inputs_per_request=max_inputs_per_request, max_tokens_per_input=max_tokens_per_input,
            truncate=truncate, max_body_bytes=max_body_bytes, api_key=api_key,
        )
        encoder = hybridfast.load(model, device=device, dtype=dtype, quantize=quantize)
        loaded = load_index(index) if index is not None else (None, None)
        app = create_app(encoder, settings, index=loaded[0], doc_ids=loaded[1], model_name=model)
    except HybridfastError as err:
        typer.echo(f"hybridfast serve: {err}", err=True)
        raise typer.Exit(1) from err
    if threads is not None or encoder.device.type == "cpu":
        torch.set_num_threads(threads or _cpu_threads_for_forward())
    if encoder.config_was_defaulted:
        typer.echo(f"hybridfast serve: {model} has no hybridfast_encoder.json; using mean pooling, L2 "
                   "normalization and no prefixes", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _cpu_threads_for_forward() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)
