"""BEIR evaluation (Thakur et al. 2021, arXiv 2104.08663): dense retrieval over a corpus, scored by pytrec_eval.

Documents are encoded as `(title + " " + text).strip()` with the passage prefix, as BEIR's dense models
join them; queries with the query prefix. Retrieval is exact inner-product search (FAISS `IndexFlatIP`
through `hybridfast.index`, on GPU when faiss-gpu sees one). As BEIR's exact search does, the top k + 1
documents are fetched and a document whose id equals the query id is dropped (this matters on ArguAna and
Quora), keeping k.

Metrics, all from `pytrec_eval` (trec_eval's definitions):
- nDCG@10 (`ndcg_cut.10`): DCG@10 / IDCG@10 with DCG@10 = sum_{i<=10} rel_i / log2(i + 1) (trec_eval's
  linear gain; the same as 2^rel - 1 for binary judgments such as SciFact's);
- recall@k (`recall.k`): relevant documents in the top k / relevant documents judged;
- MRR@10 (`recip_rank` on the run cut to its top 10): 1 / rank of the first relevant document, 0 if none;
- MAP@k (`map_cut.k`): average precision of the top-k list, normalized by the number of relevant documents.
A judged query with no retrieved document scores 0 on every metric.
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridfast.data.files import DataWarning
from hybridfast.errors import HybridfastError
from hybridfast.eval.encoding import EncodeTimer, encode_texts
from hybridfast.eval.results import encoder_info, markdown_table, new_result, per_query_block

if TYPE_CHECKING:
    from hybridfast.data.records import BeirDataset
    from hybridfast.encoder import FusedEncoder


def beir_document_text(title: str, text: str) -> str:
    """BEIR's document string: title and text joined by one space, stripped."""
    return (title + " " + text).strip()


def beir_run(
    query_ids: list[str],
    doc_ids: list[str],
    scores: np.ndarray,
    indices: np.ndarray,
    k: int,
    ignore_identical_ids: bool = True,
) -> dict[str, dict[str, float]]:
    """Turn top-(k + 1) search results into a run `{query_id: {doc_id: score}}` of at most k documents.

    With `ignore_identical_ids`, a retrieved document whose id equals the query id is dropped (BEIR).
    """
    run: dict[str, dict[str, float]] = {}
    for row, query_id in enumerate(query_ids):
        ranked: dict[str, float] = {}
        for score, index in zip(scores[row].tolist(), indices[row].tolist(), strict=True):
            if index < 0 or len(ranked) == k:
                continue
            doc_id = doc_ids[index]
            if ignore_identical_ids and doc_id == query_id:
                continue
            ranked[doc_id] = float(score)
        run[query_id] = ranked
    return run


def beir_measures(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], k: int = 100
) -> dict[str, dict[str, float]]:
    """Per-query nDCG@10, recall@k, MRR@10 and MAP@k with pytrec_eval; every judged query gets a row."""
    import pytrec_eval

    if k < 10:
        raise HybridfastError(f"top-k must be at least 10 (nDCG@10 and MRR@10 need 10 results), not {k}")
    names = {"ndcg@10": "ndcg_cut_10", f"recall@{k}": f"recall_{k}", f"map@{k}": f"map_cut_{k}"}
    main = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", f"recall.{k}", f"map_cut.{k}"})
    reciprocal = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    top = {qid: _cut(ranked, k) for qid, ranked in run.items()}
    top10 = {qid: _cut(ranked, 10) for qid, ranked in run.items()}
    evaluated = main.evaluate(top)
    rr = reciprocal.evaluate(top10)
    per_query: dict[str, dict[str, float]] = {}
    for qid in qrels:
        row = evaluated.get(qid, {})
        values = {name: float(row.get(key, 0.0)) for name, key in names.items()}
        values["mrr@10"] = float(rr.get(qid, {}).get("recip_rank", 0.0))
        per_query[qid] = {name: values[name] for name in ("ndcg@10", f"recall@{k}", "mrr@10", f"map@{k}")}
    return per_query


def evaluate_beir(
    encoder: FusedEncoder,
    dataset: BeirDataset,
    *,
    top_k: int = 100,
    batch_size: int = 64,
    progress: bool = True,
    ignore_identical_ids: bool = True,
    data: str = "",
    extra_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Encode the corpus and the judged queries, retrieve the top k, and score with pytrec_eval."""
    from hybridfast.index import build_index, search_index

    start = time.perf_counter()
    if not dataset.corpus:
        raise HybridfastError("the BEIR corpus is empty")
    qrels, unknown_docs = _known_qrels(dataset)
    query_ids = [qid for qid in qrels if qid in dataset.queries]
    missing_queries = len(qrels) - len(query_ids)
    qrels = {qid: qrels[qid] for qid in query_ids}
    if not query_ids:
        raise HybridfastError(f"no judged queries with text in split {dataset.split!r}")

    timer = EncodeTimer()
    doc_ids = list(dataset.corpus)
    documents = [beir_document_text(*dataset.corpus[doc_id]) for doc_id in doc_ids]
    doc_embeddings = encode_texts(encoder, documents, "passage", batch_size=batch_size, label="corpus",
                                  progress=progress, timer=timer)
    query_embeddings = encode_texts(encoder, [dataset.queries[qid] for qid in query_ids], "query",
                                    batch_size=batch_size, label="queries", progress=progress, timer=timer)

    search_start = time.perf_counter()
    index = build_index(doc_embeddings, "flat")
    scores, indices = search_index(index, query_embeddings, top_k + 1)
    run = beir_run(query_ids, doc_ids, scores, indices, top_k, ignore_identical_ids)
    search_seconds = time.perf_counter() - search_start
    per_query = beir_measures(qrels, run, top_k)

    metric_names = list(next(iter(per_query.values())))
    settings = {"split": dataset.split, "top_k": top_k, "batch_size": batch_size,
                "ignore_identical_ids": ignore_identical_ids, **(extra_settings or {})}
    result = new_result("beir", getattr(encoder, "source", ""), data, settings, encoder_info(encoder))
    columns = {m: np.array([per_query[qid][m] for qid in query_ids]) for m in metric_names}
    result["metrics"] = {dataset.split: {m: float(v.mean()) for m, v in columns.items()}}
    result["per_query"] = {dataset.split: per_query_block(query_ids, columns)}
    result["counts"] = {
        "documents": len(doc_ids),
        "queries": len(query_ids),
        "qrels": sum(len(judged) for judged in qrels.values()),
        "qrels_unknown_documents": unknown_docs,
        "judged_queries_without_text": missing_queries,
        "queries_without_results": sum(1 for qid in query_ids if not run[qid]),
        "identical_ids_dropped": sum(
            1 for row, qid in enumerate(query_ids) for i in indices[row].tolist() if i >= 0 and doc_ids[i] == qid
        ) if ignore_identical_ids else 0,
    }
    if unknown_docs:
        result["warnings"].append(f"skipped {unknown_docs} qrels entries naming documents not in the corpus")
    if missing_queries:
        result["warnings"].append(f"skipped {missing_queries} judged queries that have no query text")
    result["timing"] = {
        "encode_s": round(timer.seconds, 3),
        "texts_encoded": timer.texts,
        "search_s": round(search_seconds, 3),
        "total_s": round(time.perf_counter() - start, 3),
    }
    return result


def beir_markdown(result: dict[str, Any]) -> str:
    """One row per split with the four metrics."""
    rows = [[split, *values.values()] for split, values in result["metrics"].items()]
    header = ["split", *next(iter(result["metrics"].values()))]
    return markdown_table(header, rows)


def _known_qrels(dataset: BeirDataset) -> tuple[dict[str, dict[str, int]], int]:
    qrels: dict[str, dict[str, int]] = {}
    unknown = 0
    for qid, judged in dataset.qrels.items():
        known = {doc_id: int(score) for doc_id, score in judged.items() if doc_id in dataset.corpus}
        unknown += len(judged) - len(known)
        if known:
            qrels[qid] = known
    if unknown:
        warnings.warn(f"qrels name {unknown} documents that are not in the corpus; skipped", DataWarning, stacklevel=3)
    return qrels, unknown


def _cut(ranked: dict[str, float], k: int) -> dict[str, float]:
    return dict(list(ranked.items())[:k])
