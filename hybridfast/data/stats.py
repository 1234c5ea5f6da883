"""Find the datasets under a data root and count what they hold, per language or split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hybridfast.data.beir import beir_splits, load_beir_corpus, load_beir_qrels, load_beir_queries
from hybridfast.data.files import MissingDataError, strip_gz
from hybridfast.data.languages import LANGUAGES, language_name
from hybridfast.data.squad import lareqa_files, load_lareqa, read_squad_file, xquad_files
from hybridfast.data.tatoeba import load_tatoeba_pair, tatoeba_folder, tatoeba_languages
from hybridfast.errors import HybridfastError

KINDS = ("xquad", "lareqa", "beir", "tatoeba")
"""Dataset formats `detect_kind` recognizes: XQuAD, LAReQA (XQuAD-R / MLQA-R), BEIR, Tatoeba."""


@dataclass(frozen=True)
class DetectedDataset:
    """A folder holding one dataset of a known `kind`."""

    name: str
    kind: str
    path: Path


@dataclass(frozen=True)
class DatasetStats:
    """Counts for one dataset: a table with one row per language (or BEIR part); `None` is an empty cell."""

    name: str
    kind: str
    path: Path
    columns: tuple[str, ...]
    rows: tuple[tuple[str | int | None, ...], ...]

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view: `{"name", "kind", "path", "rows": [{column: value}, ...]}`."""
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "rows": [dict(zip(self.columns, row, strict=True)) for row in self.rows],
        }


def detect_kind(directory: Path) -> str | None:
    """The format of the dataset in `directory`, or None when it holds none of `KINDS`."""
    names = {strip_gz(path.name) for path in directory.iterdir() if path.is_file()}
    if any(name.startswith("xquad.") and name.endswith(".json") for name in names):
        return "xquad"
    if "corpus.jsonl" in names:
        return "beir"
    try:
        tatoeba_folder(directory)
        return "tatoeba"
    except MissingDataError:
        pass
    if any(name.endswith(".json") and name[: -len(".json")] in LANGUAGES for name in names):
        return "lareqa"
    return None


def detect_datasets(root: Path) -> list[DetectedDataset]:
    """The datasets under `root`: `root` itself if it is one, else each sub-folder that is one (sorted)."""
    if not root.is_dir():
        raise MissingDataError(
            f"{root}: data folder not found (pass --data-dir, set HYBRIDFAST_DATA, or run `hybridfast data download`)"
        )
    kind = detect_kind(root)
    if kind is not None:
        return [DetectedDataset(root.resolve().name, kind, root)]
    found = [
        DetectedDataset(child.name, child_kind, child)
        for child in sorted(root.iterdir())
        if child.is_dir() and (child_kind := detect_kind(child)) is not None
    ]
    if not found:
        raise HybridfastError(
            f"{root}: no datasets found (expected folders such as xquad/, xquad-r/, beir-scifact/, tatoeba-laser/)"
        )
    return found


def _squad_stats(dataset: DetectedDataset) -> DatasetStats:
    lareqa = dataset.kind == "lareqa"
    files = lareqa_files(dataset.path) if lareqa else xquad_files(dataset.path)
    pool = load_lareqa(dataset.path) if lareqa else None
    rows = []
    for lang, path in sorted(files.items()):
        articles = read_squad_file(path)
        paragraphs = [paragraph for article in articles for paragraph in article.paragraphs]
        questions = sum(len(paragraph.questions) for paragraph in paragraphs)
        row: tuple[str | int | None, ...] = (lang, language_name(lang), len(articles), len(paragraphs), questions)
        if pool is not None:
            row += (len(pool.candidates_in(lang)),)
        rows.append(row)
    columns = ("language", "name", "articles", "paragraphs", "questions") + (("candidates",) if lareqa else ())
    return DatasetStats(dataset.name, dataset.kind, dataset.path, columns, tuple(rows))


def _beir_stats(dataset: DetectedDataset) -> DatasetStats:
    corpus = load_beir_corpus(dataset.path)
    queries = load_beir_queries(dataset.path)
    rows: list[tuple[str | int | None, ...]] = [
        ("corpus", len(corpus), None, None),
        ("queries", None, len(queries), None),
    ]
    for split in beir_splits(dataset.path):
        qrels = load_beir_qrels(dataset.path, split, set(corpus), set(queries))
        judged_docs = {doc_id for judged in qrels.values() for doc_id in judged}
        rows.append(
            (f"qrels/{split}", len(judged_docs), len(qrels), sum(len(judged) for judged in qrels.values()))
        )
    return DatasetStats(
        dataset.name, dataset.kind, dataset.path, ("part", "documents", "queries", "qrels"), tuple(rows)
    )


def _tatoeba_stats(dataset: DetectedDataset) -> DatasetStats:
    rows = tuple(
        (lang, language_name(lang), len(load_tatoeba_pair(dataset.path, lang)))
        for lang in tatoeba_languages(dataset.path)
    )
    return DatasetStats(dataset.name, dataset.kind, dataset.path, ("language", "name", "pairs"), rows)


def dataset_stats(dataset: DetectedDataset) -> DatasetStats:
    """Read, validate and count `dataset`."""
    if dataset.kind in ("xquad", "lareqa"):
        return _squad_stats(dataset)
    if dataset.kind == "beir":
        return _beir_stats(dataset)
    return _tatoeba_stats(dataset)
