"""Tatoeba bitext retrieval (Artetxe & Schwenk 2019; the XTREME and MTEB "Tatoeba" task).

For a language pair with n aligned sentence pairs (x_i, e_i), each sentence is matched to its nearest
neighbour by cosine similarity among all n sentences of the other side:

    accuracy(x -> eng) = (1/n) sum_i [ argmax_j cos(x_i, e_j) == i ],   and likewise eng -> x.

XTREME reports the x -> eng direction; both are reported here, with their mean. Both sides carry the query
prefix: the task is symmetric, and multilingual-e5 uses "query: " for symmetric tasks. Embeddings are
L2-normalized here, so the similarity is cosine whatever the checkpoint's own normalization.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridfast.errors import HybridfastError
from hybridfast.eval.encoding import EncodeTimer, encode_texts
from hybridfast.eval.results import encoder_info, finite_mean, markdown_table, new_result, per_query_block

if TYPE_CHECKING:
    from hybridfast.data.records import BitextPair
    from hybridfast.encoder import FusedEncoder


def bitext_matches(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sentence hits of nearest-neighbour matching by cosine: (source -> target, target -> source).

    Row i of `source` translates row i of `target`; a tie goes to the lower index, as argmax does.
    """
    if source.shape != target.shape or source.ndim != 2:
        raise ValueError(f"bitext embeddings must be two [n, d] arrays of one shape, got {source.shape} and {target.shape}")
    similarity = _unit(source) @ _unit(target).T
    expected = np.arange(len(source))
    forward = (similarity.argmax(axis=1) == expected).astype(np.float64)
    backward = (similarity.argmax(axis=0) == expected).astype(np.float64)
    return forward, backward


def evaluate_tatoeba(
    encoder: FusedEncoder,
    pairs: Mapping[str, Sequence[BitextPair]],
    *,
    batch_size: int = 64,
    progress: bool = True,
    data: str = "",
    extra_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Bitext retrieval accuracy in both directions for every language in `pairs` (`{lang: pairs}`)."""
    start = time.perf_counter()
    if not pairs:
        raise HybridfastError("no Tatoeba language pairs to evaluate")
    timer = EncodeTimer()
    table: dict[str, dict[str, Any]] = {}
    per_query: dict[str, dict[str, list[Any]]] = {}
    for lang, bitext in pairs.items():
        if not bitext:
            raise HybridfastError(f"Tatoeba pair {lang}-eng has no sentences")
        source = encode_texts(encoder, [p.source for p in bitext], "query", batch_size=batch_size,
                              label=f"{lang}", progress=progress, timer=timer)
        english = encode_texts(encoder, [p.english for p in bitext], "query", batch_size=batch_size,
                               label=f"{lang} eng", progress=progress, timer=timer)
        forward, backward = bitext_matches(source, english)
        table[lang] = {
            "to_eng": float(forward.mean()),
            "from_eng": float(backward.mean()),
            "mean": float((forward.mean() + backward.mean()) / 2),
            "pairs": len(bitext),
        }
        ids = [str(i) for i in range(len(bitext))]
        per_query[f"{lang}->eng"] = per_query_block(ids, {"accuracy": forward})
        per_query[f"eng->{lang}"] = per_query_block(ids, {"accuracy": backward})

    settings = {"langs": list(pairs), "batch_size": batch_size, **(extra_settings or {})}
    result = new_result("tatoeba", getattr(encoder, "source", ""), data, settings, encoder_info(encoder))
    to_eng = finite_mean(np.array([row["to_eng"] for row in table.values()]))
    from_eng = finite_mean(np.array([row["from_eng"] for row in table.values()]))
    result["metrics"] = {"tatoeba": {"accuracy": (to_eng + from_eng) / 2, "accuracy_to_eng": to_eng,
                                     "accuracy_from_eng": from_eng}}
    result["per_language"] = table
    result["per_query"] = per_query
    result["counts"] = {"languages": len(table), "pairs": sum(row["pairs"] for row in table.values())}
    result["timing"] = {"encode_s": round(timer.seconds, 3), "texts_encoded": timer.texts,
                        "total_s": round(time.perf_counter() - start, 3)}
    return result


def tatoeba_markdown(result: dict[str, Any]) -> str:
    """One row per language (x -> eng, eng -> x, mean) and the macro row."""
    rows = [[lang, row["to_eng"], row["from_eng"], row["mean"], row["pairs"]] for lang, row in result["per_language"].items()]
    metrics = result["metrics"]["tatoeba"]
    rows.append(["**macro**", metrics["accuracy_to_eng"], metrics["accuracy_from_eng"], metrics["accuracy"], ""])
    return markdown_table(["lang", "x→eng acc", "eng→x acc", "mean", "pairs"], rows)


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
