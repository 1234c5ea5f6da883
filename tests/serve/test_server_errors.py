"""Errors in one shape and OpenAI compatibility, over real HTTP on 127.0.0.1 with the tiny model.

Every error is ``{"error": {"message", "type", "param", "code"}}`` with its status; invalid Unicode and empty
texts are 400s naming the input; an unknown model is OpenAI's 404; no traceback reaches a client; and the
keep-alive connection that carried a bad request serves the next one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

import hybridfast
from hybridfast.index import build_index
from hybridfast.serve.server import ServerSettings, create_app, default_served_name, serve_in_thread
from hybridfast.testing import DEFAULT_TEXTS

SETTINGS = ServerSettings(max_batch_tokens=256, max_wait_ms=2, max_inputs_per_request=16)


class BrokenIndex:
    """A FAISS index stand-in whose search raises what a library bug would: an error nobody handles."""

    def __init__(self, dim: int):
        self.d, self.ntotal = dim, 3

    def search(self, queries: np.ndarray, k: int) -> Any:
        raise RuntimeError("faiss internal failure at /src/faiss/IndexFlat.cpp:42")


@pytest.fixture(scope="module")
def url(tiny_model_dir: Path) -> Iterator[str]:
    """The model served under its default name (the checkpoint folder's), with an index of DEFAULT_TEXTS."""
    encoder = hybridfast.load(str(tiny_model_dir), device="cpu")
    index = build_index(encoder.encode_passages(DEFAULT_TEXTS), "flat", use_gpu=False)
    app = create_app(encoder, SETTINGS, index=index, doc_ids=[f"doc{i}" for i in range(len(DEFAULT_TEXTS))])
    with serve_in_thread(app) as base:
        yield base


@pytest.fixture(scope="module")
def broken_url(tiny_model_dir: Path) -> Iterator[str]:
    encoder = hybridfast.load(str(tiny_model_dir), device="cpu")
    app = create_app(encoder, SETTINGS, index=BrokenIndex(encoder.dim), doc_ids=["a", "b", "c"], model_name="tiny")
    with serve_in_thread(app) as base:
        yield base


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The OpenAI-shaped error of `response`, after checking its status and shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"] and error["type"]
    assert "Traceback" not in response.text
    return error


def post_json(http: httpx.Client, path: str, raw_json: str) -> httpx.Response:
    """POST a JSON text as written (json= would re-encode the escapes we want the server to parse)."""
    return http.post(path, content=raw_json.encode("ascii"), headers={"Content-Type": "application/json"})


def client_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


# ------------------------------------------------------------------ invalid texts --------------------


@pytest.mark.parametrize("path, raw_json, where", [
    ("/v1/embeddings", '{"input": ["fine", "bad \\ud800 text"]}', "input[1]"),
    ("/v1/embeddings", '{"input": "\\udfff"}', "input"),
    ("/v1/embeddings", '{"input": ["ok", "ok", "\\ud83d"], "input_type": "query"}', "input[2]"),
    ("/search", '{"query": "Rhein \\ud800"}', "query"),
    ("/search", '{"queries": ["Rhein", "x\\udc00y"]}', "queries[1]"),
])
def test_lone_surrogates_are_a_400_naming_the_input_and_the_connection_lives_on(
        url: str, path: str, raw_json: str, where: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        bad = post_json(http, path, raw_json)
        error = error_of(bad, 400)
        assert error["code"] == "invalid_unicode" and error["type"] == "invalid_request_error"
        assert error["message"].startswith(f"{where} is not valid Unicode: a lone surrogate U+")
        assert bad.headers.get("connection") != "close"
        port = client_port(bad)
        good = http.post(path, json={"input": ["fine"]} if path == "/v1/embeddings" else {"query": "Rhein"})
        assert good.status_code == 200, good.text
        assert client_port(good) == port  # the same keep-alive connection served it


def test_a_valid_surrogate_pair_is_one_character_and_embeds(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        response = post_json(http, "/v1/embeddings", '{"input": ["smile \\ud83d\\ude00"]}')
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("body, where", [
    ({"input": ""}, "input"),
    ({"input": ["a", ""]}, "input[1]"),
    ({"input": ["a", "b", " \n\t "]}, "input[2]"),
])
def test_empty_texts_are_a_400_naming_the_input(url: str, body: dict[str, Any], where: str) -> None:
    error = error_of(httpx.post(f"{url}/v1/embeddings", json=body, timeout=30), 400)
    assert error["message"] == f"{where} is empty or only whitespace; there is nothing to embed"
    assert error["code"] == "empty_input" and error["param"] == "input"


def test_empty_search_queries_are_a_400(url: str) -> None:
    error = error_of(httpx.post(f"{url}/search", json={"queries": ["Rhein", ""]}, timeout=30), 400)
    assert error["message"].startswith("queries[1] is empty") and error["param"] == "queries"


def test_a_body_that_is_not_utf8_is_a_400(url: str) -> None:
    response = httpx.post(f"{url}/v1/embeddings", content=b'{"input": "caf\xe9"}',
                          headers={"Content-Type": "application/json"}, timeout=30)
    error_of(response, 400)


# ------------------------------------------------------------------ models --------------------------


def test_unknown_model_is_openais_404_and_the_served_name_works(url: str, tiny_model_dir: Path) -> None:
    name = tiny_model_dir.name
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as raised:
        client.embeddings.create(model="text-embedding-3-small", input=["hello"])
    error = raised.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error["type"] == "invalid_request_error" and name in error["message"]
    served = client.embeddings.create(model=name, input=["hello"])
    assert served.model == name


def test_v1_models_lists_and_retrieves_the_served_name_only(url: str, tiny_model_dir: Path) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    listed = client.models.list()
    assert [model.id for model in listed.data] == [tiny_model_dir.name]
    assert listed.data[0].owned_by == "hybridfast" and listed.data[0].created > 0
    assert client.models.retrieve(tiny_model_dir.name).id == tiny_model_dir.name
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_no_response_names_the_checkpoint_path(url: str, tiny_model_dir: Path) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        responses = [http.get("/health"), http.get("/v1/models"), http.post("/v1/embeddings", json={"input": "a"}),
                     http.post("/search", json={"query": "Rhein"}), http.post("/v1/embeddings", json={"model": "x",
                                                                                                        "input": "a"})]
    for response in responses:
        assert str(tiny_model_dir.parent) not in response.text, response.text
    assert responses[0].json()["model"] == tiny_model_dir.name


def test_the_default_served_name_is_the_folder_name_or_the_hub_id(tmp_path: Path, monkeypatch: Any) -> None:
    folder = tmp_path / "multilingual-e5-small"
    folder.mkdir()
    (tmp_path / "alias").symlink_to(folder)
    assert default_served_name(f"{folder}/") == "multilingual-e5-small"
    assert default_served_name(str(tmp_path / "alias")) == "alias"
    monkeypatch.chdir(folder)
    assert default_served_name(".") == "multilingual-e5-small"
    assert default_served_name("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"  # a hub id
    assert default_served_name("") == "hybridfast"


def test_served_model_name_renames_the_model(tiny_model_dir: Path) -> None:
    encoder = hybridfast.load(str(tiny_model_dir), device="cpu")
    with serve_in_thread(create_app(encoder, SETTINGS, model_name="e5-tiny")) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        assert client.embeddings.create(model="e5-tiny", input="hi").model == "e5-tiny"
        assert httpx.get(f"{base}/health", timeout=30).json()["model"] == "e5-tiny"
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model=tiny_model_dir.name, input="hi")


# ------------------------------------------------------------------ health, routes, crashes -----------


def test_head_health_answers_like_get_without_a_body(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        head, get = http.head("/health"), http.get("/health")
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == "application/json"
    queue = get.json()["queue"]
    assert queue["requests"] == 0 and queue["tokens"] == 0 and queue["max_tokens"] == 64 * 256
    assert get.json()["status"] == "ok"


def test_unknown_routes_and_methods_answer_in_the_same_shape(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        assert error_of(http.get("/v2/embeddings"), 404)["type"] == "not_found_error"
        error_of(http.delete("/health"), 405)
        error_of(http.put("/v1/embeddings", json={}), 405)


def test_an_unexpected_exception_is_a_json_500_without_a_traceback(broken_url: str, caplog: Any) -> None:
    with httpx.Client(base_url=broken_url, timeout=30) as http:
        crashed = http.post("/search", json={"query": "Rhein"})
        error = error_of(crashed, 500)
        assert error["type"] == "server_error" and error["code"] == "internal"
        assert "faiss" not in crashed.text and "IndexFlat.cpp" not in crashed.text  # details stay in the log
        assert crashed.headers.get("connection") != "close"
        port = client_port(crashed)
        after = http.post("/v1/embeddings", json={"input": "still here"})
        assert after.status_code == 200 and client_port(after) == port
    assert any("faiss internal failure" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)
