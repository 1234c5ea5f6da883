"""The lean encode path (FusedEncoder.encode) against the unfused baseline, any order, any batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridfast.encoder import FusedEncoder
from hybridfast.errors import HybridfastError
from hybridfast.serve.baseline import UnfusedEncoder

TEXTS = [
    "Where is the river Rhine?",
    "Der Rhein fließt durch Deutschland und die Niederlande in die Nordsee, vorbei an Köln.",
    "莱茵河在哪里？",
    "x",
    "",
    "Где находится река Рейн? Она течёт через Германию и Нидерланды. " * 3,
    "Sông Rhine ở đâu?",
    "what when who how many which year " * 5,
    "أين يقع نهر الراين؟",
    "Nehir Ren nerede? Almanya ve Hollanda'dan akar.",
]


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


@pytest.fixture(scope="module")
def lean(tiny_model_dir) -> FusedEncoder:
    return FusedEncoder.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def baseline_embeddings(tiny_model_dir) -> np.ndarray:
    return UnfusedEncoder.from_pretrained(tiny_model_dir).encode(TEXTS, "passage", batch_size=3)


@pytest.mark.parametrize("max_batch_tokens", [1, 40, 100, 16384])
@pytest.mark.parametrize("seed", [0, 1])
def test_lean_matches_baseline_in_any_order_and_batching(lean, baseline_embeddings, max_batch_tokens, seed):
    order = np.random.default_rng(seed).permutation(len(TEXTS))
    out = lean.encode_passages([TEXTS[i] for i in order], max_batch_tokens=max_batch_tokens)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), lean.dim)
    assert _min_cosine(out, baseline_embeddings[order]) >= 0.9999


def test_padding_free_path_matches_baseline(tiny_model_dir, baseline_embeddings):
    packed = FusedEncoder.from_pretrained(tiny_model_dir, device="cpu", padding_free=True)
    out = packed.encode_passages(TEXTS, max_batch_tokens=64)
    assert packed.inference_backend.startswith("padding-free")
    assert _min_cosine(out, baseline_embeddings) >= 0.9999
    # The model still encodes padded batches correctly (training / embed path) after the switch.
    padded = packed.embed(TEXTS[:4], "passage").detach().numpy()
    assert _min_cosine(padded, baseline_embeddings[:4]) >= 0.9999


def test_duplicates_batch_size_cap_and_tensor_output(lean, baseline_embeddings):
    texts = TEXTS + TEXTS[:3]
    out = lean.encode_passages(texts, batch_size=2, as_tensor=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device.type == "cpu"
    np.testing.assert_allclose(out[-3:].numpy(), out[:3].numpy(), atol=1e-6)
    assert _min_cosine(out[: len(TEXTS)].numpy(), baseline_embeddings) >= 0.9999


def test_queries_use_query_prefix_and_progress_counts_every_text(lean, tiny_model_dir):
    seen: list[int] = []
    queries = lean.encode_queries(TEXTS, on_batch=lambda texts, _tokens: seen.append(texts), max_batch_tokens=50)
    assert sum(seen) == len(TEXTS)
    reference = UnfusedEncoder.from_pretrained(tiny_model_dir).encode(TEXTS, "query")
    assert _min_cosine(queries, reference) >= 0.9999
    assert _min_cosine(queries, lean.encode_passages(TEXTS)) < 0.9999


def test_max_length_override_truncates(lean, tiny_model_dir):
    long_text = ["word " * 200]
    short = lean.encode_passages(long_text, max_length=8)
    reference = UnfusedEncoder.from_pretrained(tiny_model_dir).encode(long_text, "passage", max_length=8)
    assert _min_cosine(short, reference) >= 0.9999


def test_default_token_budget_depends_on_device(lean):
    assert lean.default_batch_tokens == 2048  # CPU: batches that stay in cache
    seen: list[int] = []
    lean.encode_passages(["word " * 100] * 40, max_length=60, on_batch=lambda texts, _tokens: seen.append(texts))
    assert seen == [34, 6]  # 60-token texts: 34 fit in 2048 tokens
    seen.clear()
    lean.encode_passages(["word " * 100] * 40, max_length=60, on_batch=lambda texts, _tokens: seen.append(texts), max_batch_tokens=16384)
    assert seen == [40]


def test_compiled_encoder_matches_baseline(tiny_model_dir, baseline_embeddings):
    compiled = FusedEncoder.from_pretrained(tiny_model_dir, device="cpu", compile=True)
    order = np.random.default_rng(5).permutation(len(TEXTS))
    out = compiled.encode_passages([TEXTS[i] for i in order], max_batch_tokens=64)  # several batch shapes
    assert _min_cosine(out, baseline_embeddings[order]) >= 0.9999


def test_empty_input_and_bad_input(lean):
    assert lean.encode([]).shape == (0, lean.dim)
    with pytest.raises(HybridfastError, match="not a single string"):
        lean.encode("one string")
    with pytest.raises(HybridfastError, match="not a string"):
        lean.encode(["ok", 3])
    with pytest.raises(HybridfastError, match=r"text 1 is not valid Unicode: surrogates not allowed at character 4"):
        lean.encode(["ok", "bad \ud800 x"])
    with pytest.raises(HybridfastError, match="max_batch_tokens"):
        lean.encode(["ok"], max_batch_tokens=0)
    with pytest.raises(HybridfastError, match="quantize"):
        lean.configure_inference(quantize="int4")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("padding_free", [False, None])
def test_cuda_bf16_matches_fp32_baseline(tiny_model_dir, baseline_embeddings, padding_free):
    encoder = FusedEncoder.from_pretrained(tiny_model_dir, device="cuda", dtype="bfloat16", padding_free=padding_free)
    order = np.random.default_rng(3).permutation(len(TEXTS))
    out = encoder.encode_passages([TEXTS[i] for i in order], max_batch_tokens=64)
    assert _min_cosine(out, baseline_embeddings[order]) >= 0.999


def test_chunk_bounds_grow_from_a_small_first_chunk() -> None:
    from hybridfast.encoder import _chunk_bounds

    assert _chunk_bounds(0) == []
    assert _chunk_bounds(100) == [(0, 100)]
    assert _chunk_bounds(1000) == [(0, 256), (256, 768), (768, 1000)]
    sizes = [end - start for start, end in _chunk_bounds(20_000)]
    assert sizes[:5] == [256, 512, 1024, 2048, 4096] and max(sizes) == 4096 and sum(sizes) == 20_000


@pytest.mark.parametrize("padding_free", [False, True])
def test_several_tokenize_chunks_keep_input_order(tiny_model_dir, baseline_embeddings, monkeypatch, padding_free):
    """Texts spread over chunks of 2, 4, 5, 5, ... texts: each planned and run separately, put back in input order."""
    import hybridfast.encoder as encoder_module

    monkeypatch.setattr(encoder_module, "_FIRST_TOKENIZE_CHUNK", 2)
    monkeypatch.setattr(encoder_module, "_TOKENIZE_CHUNK", 5)
    encoder = FusedEncoder.from_pretrained(tiny_model_dir, device="cpu", padding_free=padding_free)
    seen: list[int] = []
    out = encoder.encode_passages(TEXTS, max_batch_tokens=60, on_batch=lambda texts, _tokens: seen.append(texts))
    assert len(encoder_module._chunk_bounds(len(TEXTS))) >= 3
    assert sum(seen) == len(TEXTS)
    assert _min_cosine(out, baseline_embeddings) >= 0.9999
