"""Datasets: records, loaders, the article split (XQuAD family), LAReQA pools, BEIR, Tatoeba.

Everything here is plain Python (no torch), cheap to import.
"""

from hybridfast.data.beir import beir_splits, load_beir, load_beir_corpus, load_beir_qrels, load_beir_queries
from hybridfast.data.download import SOURCES, DownloadError, download_dataset
from hybridfast.data.files import DataWarning, MissingDataError, find_data_file, open_text, resolve_data_root
from hybridfast.data.jsonl import load_parallel_jsonl
from hybridfast.data.languages import (
    ISO_639_1,
    LANGUAGES,
    TATOEBA_LANGUAGES,
    UnknownLanguageError,
    check_language,
)
from hybridfast.data.records import (
    BeirDataset,
    BitextPair,
    LareqaCandidate,
    LareqaDataset,
    LareqaQuestion,
    ParallelRecord,
)
from hybridfast.data.split import ArticleSplit, article_split, restrict_lareqa, split_records
from hybridfast.data.squad import (
    article_keys,
    lareqa_files,
    load_lareqa,
    load_xquad,
    read_squad_file,
    xquad_files,
)
from hybridfast.data.stats import DatasetStats, DetectedDataset, dataset_stats, detect_datasets
from hybridfast.data.tatoeba import load_tatoeba, load_tatoeba_pair, tatoeba_languages

__all__ = [
    "SOURCES",
    "ArticleSplit",
    "BeirDataset",
    "BitextPair",
    "DataWarning",
    "DatasetStats",
    "DetectedDataset",
    "DownloadError",
    "ISO_639_1",
    "LANGUAGES",
    "LareqaCandidate",
    "LareqaDataset",
    "LareqaQuestion",
    "MissingDataError",
    "ParallelRecord",
    "TATOEBA_LANGUAGES",
    "UnknownLanguageError",
    "article_keys",
    "article_split",
    "beir_splits",
    "check_language",
    "dataset_stats",
    "detect_datasets",
    "download_dataset",
    "find_data_file",
    "lareqa_files",
    "load_beir",
    "load_beir_corpus",
    "load_beir_qrels",
    "load_beir_queries",
    "load_lareqa",
    "load_parallel_jsonl",
    "load_tatoeba",
    "load_tatoeba_pair",
    "load_xquad",
    "open_text",
    "read_squad_file",
    "resolve_data_root",
    "restrict_lareqa",
    "split_records",
    "tatoeba_languages",
    "xquad_files",
]
