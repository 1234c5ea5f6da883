"""BEIR-format loader: `corpus.jsonl`, `queries.jsonl` (each `.gz` or plain) and `qrels/{split}.tsv`."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from hybridfast.data.files import DataWarning, MissingDataError, find_data_file, iter_jsonl, iter_lines
from hybridfast.data.records import BeirDataset
from hybridfast.errors import DataFormatError


def _string_field(record: dict[str, Any], key: str, path: Path, line: int, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        what = "is missing" if value is None else f"should be a string, got {type(value).__name__}"
        raise DataFormatError(path, line, f"field {key!r} {what}")
    return value


def _read_id(record: dict[str, Any], path: Path, line: int, seen: dict[str, Any]) -> str:
    record_id = _string_field(record, "_id", path, line).strip()
    if not record_id:
        raise DataFormatError(path, line, "empty '_id'")
    if record_id in seen:
        raise DataFormatError(path, line, f"duplicate '_id' {record_id!r}")
    return record_id


def load_beir_corpus(directory: Path) -> dict[str, tuple[str, str]]:
    """`{doc_id: (title, text)}` from `corpus.jsonl[.gz]`; a document with neither title nor text is an error."""
    path = find_data_file(directory, "corpus.jsonl")
    corpus: dict[str, tuple[str, str]] = {}
    for line, record in iter_jsonl(path):
        doc_id = _read_id(record, path, line, corpus)
        title = _string_field(record, "title", path, line, required=False)
        text = _string_field(record, "text", path, line)
        if not (title.strip() or text.strip()):
            raise DataFormatError(path, line, f"document {doc_id!r} has an empty passage (no title, no text)")
        corpus[doc_id] = (title, text)
    return corpus


def load_beir_queries(directory: Path) -> dict[str, str]:
    """`{query_id: text}` for every query of `queries.jsonl[.gz]`; an empty query text is an error."""
    path = find_data_file(directory, "queries.jsonl")
    queries: dict[str, str] = {}
    for line, record in iter_jsonl(path):
        query_id = _read_id(record, path, line, queries)
        text = _string_field(record, "text", path, line)
        if not text.strip():
            raise DataFormatError(path, line, f"query {query_id!r} is empty")
        queries[query_id] = text
    return queries


def beir_splits(directory: Path) -> list[str]:
    """The splits with a qrels file, `qrels/{split}.tsv[.gz]`, sorted."""
    qrels_dir = directory / "qrels"
    if not qrels_dir.is_dir():
        raise MissingDataError(f"{qrels_dir}: folder not found (BEIR keeps judgments in qrels/{{split}}.tsv)")
    return sorted({path.name.removesuffix(".gz").removesuffix(".tsv") for path in qrels_dir.glob("*.tsv*")})


def load_beir_qrels(
    directory: Path, split: str, corpus_ids: set[str] | None = None, query_ids: set[str] | None = None
) -> dict[str, dict[str, int]]:
    """`{query_id: {doc_id: score}}` from `qrels/{split}.tsv[.gz]` (tab-separated, header row).

    Rows naming a document outside `corpus_ids` or a query outside `query_ids` are skipped with one
    counted `DataWarning`, as BEIR's own loader does; a row that is not `query-id, corpus-id, integer
    score` is an error naming the line.
    """
    path = find_data_file(directory / "qrels", f"{split}.tsv")
    qrels: dict[str, dict[str, int]] = {}
    unknown_docs: list[int] = []
    unknown_queries: list[int] = []
    for line, row in iter_lines(path):
        if not row.strip():
            continue
        fields = row.split("\t")
        if len(fields) != 3:
            raise DataFormatError(
                path, line, f"expected 3 tab-separated fields (query-id, corpus-id, score), got {len(fields)}"
            )
        query_id, doc_id, score_text = (field.strip() for field in fields)
        try:
            score = int(score_text)
        except ValueError:
            if line == 1:
                continue  # the header row
            raise DataFormatError(path, line, f"score {score_text!r} is not an integer") from None
        if not query_id or not doc_id:
            raise DataFormatError(path, line, "empty query-id or corpus-id")
        if corpus_ids is not None and doc_id not in corpus_ids:
            unknown_docs.append(line)
            continue
        if query_ids is not None and query_id not in query_ids:
            unknown_queries.append(line)
            continue
        qrels.setdefault(query_id, {})[doc_id] = score
    for skipped, what in (
        (unknown_docs, "documents not in the corpus"),
        (unknown_queries, "queries not in queries.jsonl"),
    ):
        if skipped:
            warnings.warn(
                f"{path}: skipped {len(skipped)} qrels rows naming {what} (first at line {skipped[0]})",
                DataWarning,
                stacklevel=2,
            )
    return qrels


def load_beir(directory: Path, split: str = "test") -> BeirDataset:
    """A BEIR folder → `BeirDataset` for one split; `queries` keeps only the queries judged in that split."""
    corpus = load_beir_corpus(directory)
    all_queries = load_beir_queries(directory)
    qrels = load_beir_qrels(directory, split, set(corpus), set(all_queries))
    queries = {query_id: all_queries[query_id] for query_id in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, split=split)
