"""The HTTP server on 127.0.0.1 with the tiny encoder: httpx and the official `openai` client.

Servers run in-process (uvicorn in a thread) so that tests can read the encoder they serve;
`test_http_load.py` drives the `hybridfast serve` command in its own process.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

import hybridfast
from hybridfast.encoder import EncoderConfig, FusedEncoder
from hybridfast.index import build_index, search_index
from hybridfast.serve.server import ServerSettings, create_app, serve_in_thread
from hybridfast.testing import DEFAULT_TEXTS, build_tiny_encoder

API_KEY = "test-key-5c1e"
POISON = "<mask>"
DOCS = [f"{text} ({i})" for i, text in enumerate(DEFAULT_TEXTS)]
MAIN_SETTINGS = ServerSettings(max_batch_tokens=256, max_wait_ms=10, max_inputs_per_request=16,
                               max_body_bytes=64 * 1024)
STRICT_SETTINGS = ServerSettings(max_inputs_per_request=16, truncate=False, api_key=API_KEY)


def poisoned(encoder: FusedEncoder) -> FusedEncoder:
    """Make the transformer raise on any batch holding the <mask> token (a stand-in for a crash)."""
    mask_id = encoder.tokenizer.mask_token_id

    def hook(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is not None and bool((input_ids == mask_id).any()):
            raise RuntimeError("poisoned input")

    encoder.model.register_forward_pre_hook(hook, with_kwargs=True)
    return encoder


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> FusedEncoder:
    return hybridfast.load(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def doc_index(reference: FusedEncoder) -> Any:
    return build_index(reference.encode_passages(DOCS), "flat", use_gpu=False)


@pytest.fixture(scope="module")
def base_url(tiny_model_dir: Path, doc_index: Any) -> Iterator[str]:
    encoder = poisoned(hybridfast.load(str(tiny_model_dir), device="cpu"))
    app = create_app(encoder, MAIN_SETTINGS, index=doc_index, doc_ids=[f"doc{i}" for i in range(len(DOCS))],
                     model_name="tiny")
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def strict_url(tiny_model_dir: Path) -> Iterator[str]:
    with serve_in_thread(create_app(hybridfast.load(str(tiny_model_dir), device="cpu"), STRICT_SETTINGS)) as url:
        yield url


@pytest.fixture()
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"} and error["message"]
    return error


def metric(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(selector) + r"\}" if labels else "") + r" (\S+)$"
    match = re.search(pattern, text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


# ------------------------------------------------------------------ embeddings ----------------


@pytest.mark.parametrize("input_type", ["passage", "query", "raw", None])
def test_embeddings_match_the_encoder(client: httpx.Client, reference: FusedEncoder, input_type: str | None) -> None:
    body: dict[str, Any] = {"input": DOCS, "model": "tiny"}
    if input_type is not None:
        body["input_type"] = input_type
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["object"] == "list" and payload["model"] == "tiny"
    assert [item["index"] for item in payload["data"]] == list(range(len(DOCS)))
    assert all(item["object"] == "embedding" for item in payload["data"])
    got = np.array([item["embedding"] for item in payload["data"]], dtype=np.float32)
    kind = {"passage": "passage", None: "passage", "query": "query", "raw": None}[input_type]
    expected = reference.encode(DOCS, kind)
    assert got.shape == expected.shape == (len(DOCS), reference.dim)
    assert cosines(got, expected).min() >= 0.9999
    tokens = int(reference.tokenize(DOCS, kind)["attention_mask"].sum())
    assert payload["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_single_string_and_dimensions_equal_to_the_model(client: httpx.Client, reference: FusedEncoder) -> None:
    response = client.post("/v1/embeddings", json={"input": DOCS[2], "dimensions": reference.dim})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 1
    assert cosines(np.array([data[0]["embedding"]]), reference.encode_passages([DOCS[2]]))[0] >= 0.9999


def test_long_input_is_truncated_to_the_checkpoint_limit(client: httpx.Client, reference: FusedEncoder) -> None:
    long_text = " ".join(DEFAULT_TEXTS * 4)
    response = client.post("/v1/embeddings", json={"input": [DOCS[0], long_text]})
    assert response.status_code == 200, response.text
    limit = reference.config.length_limit("passage")
    short = len(reference.tokenize([DOCS[0]], "passage")["input_ids"][0])
    assert response.json()["usage"]["prompt_tokens"] == short + limit
    got = np.array([item["embedding"] for item in response.json()["data"]])
    assert cosines(got, reference.encode_passages([DOCS[0], long_text])).min() >= 0.9999


def test_openai_client_float_and_base64(base_url: str, reference: FusedEncoder) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    texts = DOCS[:5]
    expected = reference.encode_passages(texts)

    as_float = client.embeddings.create(model="tiny", input=texts, encoding_format="float")
    assert [d.index for d in as_float.data] == list(range(len(texts)))
    assert cosines(np.array([d.embedding for d in as_float.data]), expected).min() >= 0.9999
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens > 0

    as_base64 = client.embeddings.create(model="tiny", input=texts, encoding_format="base64")
    decoded = np.array([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in as_base64.data])
    np.testing.assert_allclose(decoded, np.array([d.embedding for d in as_float.data]), rtol=0, atol=1e-6)

    default = client.embeddings.create(model="tiny", input=texts)  # the client asks for base64 and decodes
    np.testing.assert_allclose(np.array([d.embedding for d in default.data]), decoded, rtol=0, atol=1e-6)

    queries = client.embeddings.create(model="tiny", input=texts[0], extra_body={"input_type": "query"})
    assert cosines(np.array([queries.data[0].embedding]), reference.encode_queries(texts[:1]))[0] >= 0.9999

    with pytest.raises(openai.BadRequestError, match="token-id arrays"):
        client.embeddings.create(model="tiny", input=[[1, 2, 3]], encoding_format="float")


# ------------------------------------------------------------------ search --------------------


def test_search_matches_faiss_on_encoder_queries(client: httpx.Client, reference: FusedEncoder,
                                                 doc_index: Any) -> None:
    queries = [DOCS[1], DOCS[7]]
    response = client.post("/search", json={"queries": queries, "k": 3})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    scores, ids = search_index(doc_index, reference.encode_queries(queries), 3)
    assert [r["query"] for r in results] == queries
    for result, row_ids, row_scores in zip(results, ids, scores, strict=True):
        assert [hit["id"] for hit in result["hits"]] == [f"doc{j}" for j in row_ids]
        np.testing.assert_allclose([hit["score"] for hit in result["hits"]], row_scores, atol=1e-4)

    single = client.post("/search", json={"query": DOCS[1], "k": 1000})
    assert single.status_code == 200, single.text
    assert len(single.json()["results"]) == 1
    assert len(single.json()["results"][0]["hits"]) == len(DOCS)  # k is capped at the index size


@pytest.mark.parametrize("body, needle", [
    ({"query": "a", "queries": ["b"]}, "exactly one"),
    ({"k": 3}, "exactly one"),
    ({"query": "a", "k": 0}, "k"),
    ({"query": "a", "k": 100000}, "k"),
    ({"queries": []}, "must not be empty"),
    ({"query": "a", "top_k": 3}, "top_k: unknown field"),
])
def test_search_rejects_bad_bodies(client: httpx.Client, body: dict[str, Any], needle: str) -> None:
    assert needle in error_of(client.post("/search", json=body), 400)["message"]


# ------------------------------------------------------------------ errors --------------------


@pytest.mark.parametrize("content, needle", [
    (b'{"input": ["a", ', "malformed JSON"),
    (b"not json at all", "malformed JSON"),
    (b'["a", "b"]', "JSON object"),
    (b'{"model": "tiny"}', "input: Field required"),
    (b'{"input": ["a"], "inputs": ["b"]}', "inputs: unknown field"),
    (b'{"input": [[1, 2, 3]]}', "input[0]: token-id arrays are not supported"),
    (b'{"input": [1, 2, 3]}', "input[0]: token-id arrays are not supported"),
    (b'{"input": ["a", {"text": "b"}]}', "input[1]: expected a string"),
    (b'{"input": []}', "must not be empty"),
    (b'{"input": "a", "encoding_format": "int8"}', "encoding_format"),
    (b'{"input": "a", "input_type": "document"}', "input_type"),
    (b'{"input": "a", "dimensions": 8}', "dimensions=8 is not supported"),
])
def test_bad_embedding_requests_get_400_with_a_message(client: httpx.Client, content: bytes, needle: str) -> None:
    response = client.post("/v1/embeddings", content=content, headers={"Content-Type": "application/json"})
    error = error_of(response, 400)
    assert needle in error["message"]
    assert error["type"] == "invalid_request_error"


def test_too_many_inputs_get_413(client: httpx.Client) -> None:
    error = error_of(client.post("/v1/embeddings", json={"input": ["a"] * 17}), 413)
    assert "17 inputs" in error["message"] and "16" in error["message"]


def test_oversize_bodies_get_413_declared_or_streamed(client: httpx.Client) -> None:
    big = b'{"input": "' + b"x" * (64 * 1024) + b'"}'
    declared = client.post("/v1/embeddings", content=big, headers={"Content-Type": "application/json"})
    assert error_of(declared, 413)["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    streamed = client.post("/v1/embeddings", content=chunks(), headers={"Content-Type": "application/json"})
    assert error_of(streamed, 413)["code"] == "body_too_large"


def test_unknown_routes_and_methods_answer_in_openai_shape(client: httpx.Client) -> None:
    assert error_of(client.get("/v1/nope"), 404)["type"] == "not_found_error"
    error_of(client.get("/v1/embeddings"), 405)


def test_a_failing_request_does_not_take_the_worker_down(client: httpx.Client, base_url: str) -> None:
    error = error_of(client.post("/v1/embeddings", json={"input": ["fine", f"bad {POISON}"]}), 500)
    assert error["type"] == "server_error" and "poisoned input" in error["message"]
    assert client.post("/v1/embeddings", json={"input": "fine"}).status_code == 200

    async def burst() -> list[int]:  # the poison shares batches with good requests; only it fails
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            bodies = [{"input": [f"{POISON} {i}"] if i % 8 == 0 else [DOCS[i % len(DOCS)]]} for i in range(32)]
            responses = await asyncio.gather(*(http.post("/v1/embeddings", json=b) for b in bodies))
            return [r.status_code for r in responses]

    statuses = asyncio.run(burst())
    assert statuses == [500 if i % 8 == 0 else 200 for i in range(32)]
    assert client.get("/health").json()["status"] == "ok"


# ------------------------------------------------------------------ health, metrics, batching ---


def test_health(client: httpx.Client, reference: FusedEncoder) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model": "tiny", "dimensions": reference.dim, "device": "cpu",
                               "index_documents": len(DOCS),
                               "queue": {"requests": 0, "tokens": 0, "max_tokens": 64 * 256, "saturation": 0.0}}


def test_metrics_count_requests_errors_and_batches(client: httpx.Client, base_url: str) -> None:
    before = client.get("/metrics").text
    for _ in range(3):
        assert client.post("/v1/embeddings", json={"input": ["a", "b"]}).status_code == 200
    error_of(client.post("/v1/embeddings", content=b"{", headers={"Content-Type": "application/json"}), 400)

    async def concurrent() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            responses = await asyncio.gather(*(http.post("/v1/embeddings", json={"input": DOCS[i % len(DOCS)]})
                                               for i in range(48)))
            assert all(r.status_code == 200 for r in responses)

    asyncio.run(concurrent())
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("hybridfast_http_requests_total", endpoint="/v1/embeddings", status="200") == 51
    assert delta("hybridfast_http_requests_total", endpoint="/v1/embeddings", status="400") == 1
    assert delta("hybridfast_http_errors_total", endpoint="/v1/embeddings") == 1
    assert delta("hybridfast_http_request_duration_seconds_count", endpoint="/v1/embeddings") == 52
    assert delta("hybridfast_embedded_inputs_total") == 54
    batches = delta("hybridfast_batch_inputs_count")
    assert 0 < batches < 51, "48 concurrent single-input requests should share batches"
    assert delta("hybridfast_batch_inputs_sum") == 54
    assert metric(after, "hybridfast_queue_depth") == 0
    assert delta("hybridfast_batch_tokens_count") == batches
    assert 'hybridfast_batch_duration_seconds_bucket{le="+Inf"}' in after


# ------------------------------------------------------------------ strict server: key, no-truncate, no index --


def test_api_key_is_required_except_on_health(strict_url: str, tiny_model_dir: Path) -> None:
    with httpx.Client(base_url=strict_url, timeout=30) as http:
        body = {"input": "hello"}
        assert error_of(http.post("/v1/embeddings", json=body), 401)["code"] == "invalid_api_key"
        wrong = http.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer nope"})
        assert error_of(wrong, 401)["message"] == "incorrect API key provided"
        error_of(http.post("/v1/embeddings", content=b"{", headers={"Content-Type": "application/json"}), 401)
        error_of(http.get("/metrics"), 401)
        assert http.get("/health").status_code == 200
        auth = {"Authorization": f"Bearer {API_KEY}"}
        assert http.post("/v1/embeddings", json=body, headers=auth).status_code == 200
        assert http.get("/metrics", headers=auth).status_code == 200

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{strict_url}/v1", api_key="nope", max_retries=0).embeddings.create(
            model=tiny_model_dir.name, input="hello")
    good = openai.OpenAI(base_url=f"{strict_url}/v1", api_key=API_KEY, max_retries=0)
    served = good.embeddings.create(model=tiny_model_dir.name, input=["a", "b"])  # the folder's name by default
    assert len(served.data) == 2 and served.model == tiny_model_dir.name


def test_no_truncate_rejects_long_inputs_naming_them(strict_url: str) -> None:
    long_text = " ".join(DEFAULT_TEXTS * 4)
    with httpx.Client(base_url=strict_url, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        error = error_of(http.post("/v1/embeddings", json={"input": ["short", long_text]}), 413)
        assert error["code"] == "input_too_long" and error["message"].startswith("input[1] has more than")


def test_search_without_an_index_is_404(strict_url: str) -> None:
    with httpx.Client(base_url=strict_url, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        error = error_of(http.post("/search", json={"query": "a"}), 404)
        assert "--index" in error["message"] and error["code"] == "no_index"
        assert http.get("/health").json()["index_documents"] is None


def test_int8_quantized_encoder_serves_close_embeddings(tiny_model_dir: Path, reference: FusedEncoder) -> None:
    encoder = hybridfast.load(str(tiny_model_dir), device="cpu", quantize="int8")
    with serve_in_thread(create_app(encoder, ServerSettings(max_wait_ms=1))) as url:
        response = httpx.post(f"{url}/v1/embeddings", json={"input": DOCS}, timeout=30)
    assert response.status_code == 200, response.text
    got = np.array([item["embedding"] for item in response.json()["data"]])
    np.testing.assert_allclose(got, encoder.encode_passages(DOCS), atol=1e-5)
    assert cosines(got, reference.encode_passages(DOCS)).min() >= 0.99


def test_concurrent_requests_with_different_length_limits_tokenize_correctly(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A shared fast tokenizer keeps one truncation setting; per-call limits must not leak across threads."""
    config = EncoderConfig(query_prefix="query: ", passage_prefix="passage: ", max_length=64, query_max_length=8)
    encoder = hybridfast.load(str(build_tiny_encoder(tmp_path_factory.mktemp("limits"), encoder_config=config)),
                              device="cpu")
    long_text = " ".join(DEFAULT_TEXTS)
    expected = {kind: len(encoder.tokenize([long_text], kind)["input_ids"][0]) for kind in ("query", "passage")}
    assert expected == {"query": 8, "passage": 64}

    async def burst(url: str) -> list[tuple[str, int, int]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            kinds = ["query" if i % 2 else "passage" for i in range(64)]
            responses = await asyncio.gather(*(
                http.post("/v1/embeddings", json={"input": [long_text] * 4, "input_type": kind}) for kind in kinds))
            return [(kind, r.status_code, r.json().get("usage", {}).get("prompt_tokens", -1))
                    for kind, r in zip(kinds, responses, strict=True)]

    with serve_in_thread(create_app(encoder, ServerSettings(max_wait_ms=1))) as url:
        outcomes = asyncio.run(burst(url))
    assert [(status, tokens) for _, status, tokens in outcomes] == [(200, 4 * expected[k]) for k, _, _ in outcomes]
