"""LAReQA evaluation (Roy et al. 2020, arXiv 2004.05484): answer retrieval from mono-, cross- and multilingual
pools, with language bias as rank distance.

Every sentence of every paragraph is a candidate; a question's relevant set is its gold sentence (the one
holding the answer start) in every language where the question exists. Queries carry the encoder's query
prefix, candidates its passage prefix (by default the sentence alone, optionally followed by its paragraph).
Each language's questions and candidates are encoded once; one score matrix per query language against the
multilingual pool serves every setting, because a language's pool is a column slice of it:

- **mono**: questions of language X against X's pool; macro-average over languages.
- **cross**: questions of X against Y's pool for every ordered pair X != Y (110 pairs for 11 languages);
  macro-average over pairs.
- **multi**: questions of X against the union of all pools (all relevant candidates together); reported per
  query language and macro-averaged; rank distance (max - min rank of the relevant candidates) measures
  language bias here.

Metrics per query (see `hybridfast.eval.metrics`): average precision over the full pool (mAP is its mean over
the evaluated queries); in mono and cross, where a question has one gold sentence per pool, R@1 and R@10; in
multi, where it has one per language (11 in XQuAD-R), Hit@1 and Hit@10 (any of its answers ranked first / in
the top 10): R@1 would be capped at 1/11 there. A query whose question has no gold candidate in the searched
pool is skipped and counted. Per-query scores stored for paired tests are one value per (query language,
question): the query's value in mono, its mean over the cross pools, its value in multi; each carries its
cluster labels, the question (shared by its translations) and the article, because those queries are not
independent samples.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridfast.errors import HybridfastError
from hybridfast.eval.encoding import EncodeTimer, encode_texts
from hybridfast.eval.metrics import average_precision, hit_at_k, rank_distance, recall_at_k, relevant_ranks
from hybridfast.eval.results import encoder_info, finite_mean, markdown_table, new_result, per_query_block

if TYPE_CHECKING:
    from hybridfast.data.records import LareqaCandidate, LareqaDataset
    from hybridfast.encoder import FusedEncoder

LAREQA_SETTINGS = ("mono", "cross", "multi")
LAREQA_METRICS = ("map", "r@1", "r@10")  # mono and cross: one relevant candidate per pool
MULTI_METRICS = ("map", "hit@1", "hit@10", "rank_distance")  # multi: one relevant candidate per language


class EmptyPoolError(HybridfastError):
    """A language selected for evaluation has no candidates (or no language has questions)."""


def evaluate_lareqa(
    encoder: FusedEncoder,
    dataset: LareqaDataset,
    *,
    langs: Sequence[str] | None = None,
    with_context: bool = False,
    batch_size: int = 64,
    progress: bool = True,
    data: str = "",
    extra_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate `encoder` on a LAReQA dataset in the mono, cross and multi settings; returns a result dict.

    `langs` restricts both the query languages and the pools (default: every language of the dataset).
    """
    start = time.perf_counter()
    languages = _select_languages(dataset, langs)
    pools = {lang: [c for c in dataset.candidates if c.lang == lang] for lang in languages}
    questions = {lang: [q for q in dataset.questions if q.lang == lang] for lang in languages}
    for lang, pool in pools.items():
        if not pool:
            raise EmptyPoolError(f"language {lang!r} has an empty candidate pool (no sentences in its file)")
    query_languages = [lang for lang in languages if questions[lang]]
    if not query_languages:
        raise EmptyPoolError(f"no questions in any of the languages {', '.join(languages)}")

    timer = EncodeTimer()
    candidate_embeddings = []
    for lang in languages:
        texts = [candidate_text(c, with_context) for c in pools[lang]]
        candidate_embeddings.append(
            encode_texts(encoder, texts, "passage", batch_size=batch_size, label=f"{lang} candidates", progress=progress, timer=timer)
        )
    query_embeddings = {
        lang: encode_texts(encoder, [q.question for q in questions[lang]], "query", batch_size=batch_size,
                           label=f"{lang} questions", progress=progress, timer=timer)
        for lang in query_languages
    }
    pool_matrix = np.concatenate(candidate_embeddings, axis=0)

    score_start = time.perf_counter()
    column_of = {c.index: column for column, c in enumerate(c for lang in languages for c in pools[lang])}
    offsets = np.cumsum([0] + [len(pools[lang]) for lang in languages])
    pool_columns = {lang: slice(int(offsets[i]), int(offsets[i + 1])) for i, lang in enumerate(languages)}
    lang_of_column = np.repeat(np.arange(len(languages)), np.diff(offsets))

    pair_tables: dict[str, dict[str, dict[str, Any]]] = {}
    multi_table: dict[str, dict[str, Any]] = {}
    per_query: dict[str, dict[str, list[np.ndarray]]] = {s: {} for s in LAREQA_SETTINGS}
    ids: list[str] = []
    clusters: dict[str, list[str]] = {"question": [], "article": []}
    for x in query_languages:
        scores = query_embeddings[x] @ pool_matrix.T
        relevant_columns = [
            np.array(sorted(column_of[i] for i in dataset.relevance[q.qid] if i in column_of), dtype=np.int64)
            for q in questions[x]
        ]
        ids.extend(f"{x}:{q.qid}" for q in questions[x])
        clusters["question"].extend(q.qid for q in questions[x])
        clusters["article"].extend(q.article for q in questions[x])
        cross_values: dict[str, list[np.ndarray]] = {m: [] for m in LAREQA_METRICS}
        pair_tables[x] = {}
        for y_index, y in enumerate(languages):
            columns = pool_columns[y]
            in_pool = [cols[lang_of_column[cols] == y_index] - columns.start for cols in relevant_columns]
            values = _query_metrics(scores[:, columns], in_pool)
            pair_tables[x][y] = _summary(values)
            if y == x:
                _append(per_query["mono"], values)
            else:
                for metric in LAREQA_METRICS:
                    cross_values[metric].append(values[metric])
        if len(languages) > 1:
            _append(per_query["cross"], {m: _nanmean_rows(np.stack(v)) for m, v in cross_values.items()})
        multi_values = _query_metrics(scores, relevant_columns, multilingual=True)
        multi_table[x] = _summary(multi_values)
        _append(per_query["multi"], multi_values)
    score_seconds = time.perf_counter() - score_start

    settings = {"langs": list(languages), "with_context": with_context, "batch_size": batch_size,
                **(extra_settings or {})}
    result = new_result("lareqa", getattr(encoder, "source", ""), data, settings, encoder_info(encoder))
    mono_table = {x: pair_tables[x][x] for x in query_languages}
    cross_table = {x: {y: row for y, row in pair_tables[x].items() if y != x} for x in query_languages}
    result["metrics"] = {
        "mono": _macro(mono_table.values(), LAREQA_METRICS),
        "multi": _macro(multi_table.values(), MULTI_METRICS),
    }
    if len(languages) > 1:
        result["metrics"]["cross"] = _macro([row for rows in cross_table.values() for row in rows.values()], LAREQA_METRICS)
    result["metrics"] = {s: result["metrics"][s] for s in LAREQA_SETTINGS if s in result["metrics"]}
    result["per_language"] = {"mono": mono_table, "multi": multi_table}
    if len(languages) > 1:
        result["per_language"]["cross"] = cross_table
    result["per_query"] = {
        setting: per_query_block(ids, {m: np.concatenate(v) for m, v in blocks.items()}, clusters)
        for setting, blocks in per_query.items()
        if blocks
    }
    result["counts"] = {
        "candidates": {lang: len(pools[lang]) for lang in languages},
        "questions": {lang: len(questions[lang]) for lang in languages},
        "multilingual_pool": int(pool_matrix.shape[0]),
        "skipped_queries": {
            "mono": sum(row["skipped"] for row in mono_table.values()),
            "cross": sum(row["skipped"] for rows in cross_table.values() for row in rows.values()),
            "multi": sum(row["skipped"] for row in multi_table.values()),
        },
    }
    if len(languages) == 1:
        result["warnings"].append("only one language selected: the cross setting is empty")
    result["timing"] = {
        "encode_s": round(timer.seconds, 3),
        "texts_encoded": timer.texts,
        "score_s": round(score_seconds, 3),
        "total_s": round(time.perf_counter() - start, 3),
    }
    return result


def candidate_text(candidate: LareqaCandidate, with_context: bool) -> str:
    """The text encoded for a candidate: its sentence, or (LAReQA's format, Roy et al. 2020) the sentence
    followed by its paragraph, so that the encoder sees the answer in context."""
    return f"{candidate.sentence} {candidate.context}" if with_context else candidate.sentence


def lareqa_markdown(result: dict[str, Any]) -> str:
    """Per-language table (mono, cross as query language, multi, rank distance) with the macro row."""
    tables = result["per_language"]
    cross = tables.get("cross", {})
    rows = []
    for lang in result["settings"]["langs"]:
        cross_rows = list(cross.get(lang, {}).values())
        rows.append([
            lang,
            tables["mono"].get(lang, {}).get("map"),
            finite_mean(np.array([r["map"] for r in cross_rows], dtype=float)) if cross_rows else None,
            tables["multi"].get(lang, {}).get("map"),
            tables["multi"].get(lang, {}).get("hit@1"),
            tables["multi"].get(lang, {}).get("rank_distance"),
        ])
    metrics = result["metrics"]
    rows.append([
        "**macro**",
        metrics["mono"]["map"],
        metrics.get("cross", {}).get("map"),
        metrics["multi"]["map"],
        metrics["multi"]["hit@1"],
        metrics["multi"]["rank_distance"],
    ])
    header = ["lang", "mono mAP", "cross mAP (as query)", "multi mAP", "multi Hit@1", "rank distance"]
    return markdown_table(header, rows)


def _select_languages(dataset: LareqaDataset, langs: Sequence[str] | None) -> list[str]:
    available = list(dataset.languages)
    if not available:
        raise EmptyPoolError("the dataset has no candidates and no questions")
    if langs is None or len(langs) == 0:
        return available
    unknown = [lang for lang in langs if lang not in available]
    if unknown:
        raise HybridfastError(f"languages {', '.join(unknown)} are not in the data (it has {', '.join(available)})")
    return sorted(set(langs))


def _query_metrics(scores: np.ndarray, relevant: list[np.ndarray], multilingual: bool = False) -> dict[str, np.ndarray]:
    """`LAREQA_METRICS` of one language's pool, or `MULTI_METRICS` of the multilingual pool."""
    ranks = relevant_ranks(scores, relevant)
    if multilingual:
        return {"map": average_precision(ranks), "hit@1": hit_at_k(ranks, 1), "hit@10": hit_at_k(ranks, 10),
                "rank_distance": rank_distance(ranks)}
    return {"map": average_precision(ranks), "r@1": recall_at_k(ranks, 1), "r@10": recall_at_k(ranks, 10)}


def _summary(values: dict[str, np.ndarray]) -> dict[str, Any]:
    evaluated = np.isfinite(values["map"])
    row: dict[str, Any] = {metric: finite_mean(v) for metric, v in values.items()}
    row["queries"] = int(evaluated.sum())
    row["skipped"] = int((~evaluated).sum())
    return row


def _macro(rows: Any, metrics: Sequence[str]) -> dict[str, float]:
    rows = [row for row in rows if row["queries"] > 0]
    return {metric: finite_mean(np.array([row[metric] for row in rows], dtype=float)) for metric in metrics}


def _nanmean_rows(stacked: np.ndarray) -> np.ndarray:
    counts = np.isfinite(stacked).sum(axis=0)
    totals = np.where(np.isfinite(stacked), stacked, 0.0).sum(axis=0)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def _append(target: dict[str, list[np.ndarray]], values: dict[str, np.ndarray]) -> None:
    for metric, array in values.items():
        target.setdefault(metric, []).append(array)
