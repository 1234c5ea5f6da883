"""`evaluate(model, task, data, ...)`: load data and encoder, run one task, return the result dict.

The Python twin of `hybridfast eval`: the CLI parses options, calls this, writes the JSON and prints
`result_markdown(result)`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybridfast.errors import HybridfastError

if TYPE_CHECKING:
    from hybridfast.encoder import FusedEncoder

TASKS = ("lareqa", "beir", "tatoeba")
DEFAULT_DATA_FOLDER = {"lareqa": "xquad-r", "beir": "beir-scifact", "tatoeba": "tatoeba-laser"}
ARTICLE_SPLITS = ("eval",)


def evaluate(
    model: str | FusedEncoder,
    task: str,
    data: str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
    langs: Sequence[str] | None = None,
    article_split: str | None = None,
    split: str = "test",
    with_context: bool = False,
    top_k: int = 100,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate `model` (a checkpoint directory, hub id, or a loaded encoder) on `task`.

    `data` defaults to the task's folder under the data root (`data_dir`, else `$HYBRIDFAST_DATA`, else `./data`):
    xquad-r, beir-scifact or tatoeba-laser. `langs` may name languages by any code or English name (`de`, `deu`,
    `German`); each is matched to the dataset's own code (ISO 639-1 in XQuAD-R, ISO 639-3 in Tatoeba). Warnings raised while reading the data (e.g. qrels naming unknown
    documents) are recorded in the result's `warnings`.
    """
    from hybridfast.data.files import resolve_data_root

    start = time.perf_counter()
    if task not in TASKS:
        raise HybridfastError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if batch_size < 1:
        raise HybridfastError(f"--batch-size must be at least 1, not {batch_size}")
    if article_split is not None and (task != "lareqa" or article_split not in ARTICLE_SPLITS):
        raise HybridfastError("--article-split eval applies to --task lareqa only")
    if task == "beir" and top_k < 10:
        raise HybridfastError(f"--top-k must be at least 10 (nDCG@10 and MRR@10 need 10 results), not {top_k}")
    if langs and task == "beir":
        raise HybridfastError("--langs applies to --task lareqa and tatoeba, not beir")
    directory = Path(data) if data is not None else resolve_data_root(data_dir) / DEFAULT_DATA_FOLDER[task]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset, extra = _load_data(task, directory, langs, article_split, split)
        encoder = _load_encoder(model, device)
        common = {"batch_size": batch_size, "progress": progress, "data": str(directory),
                  "extra_settings": {"device": str(encoder.device), **extra}}
        if task == "lareqa":
            from hybridfast.eval.lareqa import evaluate_lareqa

            langs = _lareqa_languages(langs, dataset.languages, directory) if langs else None
            result = evaluate_lareqa(encoder, dataset, langs=langs, with_context=with_context, **common)
        elif task == "beir":
            from hybridfast.eval.beir import evaluate_beir

            result = evaluate_beir(encoder, dataset, top_k=top_k, **common)
        else:
            from hybridfast.eval.tatoeba import evaluate_tatoeba

            result = evaluate_tatoeba(encoder, dataset, **common)
    result["model"] = model if isinstance(model, str) else getattr(model, "source", "")
    result["warnings"] = [str(w.message) for w in caught if _is_data_warning(w)] + result["warnings"]
    result["timing"]["wall_s"] = round(time.perf_counter() - start, 3)
    return result


def result_markdown(result: dict[str, Any]) -> str:
    """The task's markdown table for a result dict."""
    task = result.get("task")
    if task == "lareqa":
        from hybridfast.eval.lareqa import lareqa_markdown

        return lareqa_markdown(result)
    if task == "beir":
        from hybridfast.eval.beir import beir_markdown

        return beir_markdown(result)
    if task == "tatoeba":
        from hybridfast.eval.tatoeba import tatoeba_markdown

        return tatoeba_markdown(result)
    raise HybridfastError(f"unknown task {task!r} in result")


def _load_data(
    task: str, directory: Path, langs: Sequence[str] | None, article_split: str | None, split: str
) -> tuple[Any, dict[str, Any]]:
    if not directory.is_dir():
        raise HybridfastError(f"{directory}: data folder not found")
    if task == "lareqa":
        from hybridfast.data.split import article_split as split_articles
        from hybridfast.data.split import restrict_lareqa
        from hybridfast.data.squad import lareqa_files, load_lareqa
        from hybridfast.eval.lareqa import EmptyPoolError

        # All languages are read so that article keys (English titles) and the split match training's.
        dataset = load_lareqa(directory)
        empty = {lang: path for lang, path in lareqa_files(directory).items() if not dataset.candidates_in(lang)}
        if empty:
            lang, path = sorted(empty.items())[0]
            raise EmptyPoolError(f"{path}: language {lang!r} has an empty candidate pool (no sentences)")
        if article_split is None:
            return dataset, {"article_split": None}
        held_out = split_articles({c.article for c in dataset.candidates}).eval_articles
        return restrict_lareqa(dataset, held_out), {"article_split": "eval", "eval_articles": len(held_out)}
    if task == "beir":
        from hybridfast.data.beir import load_beir

        return load_beir(directory, split), {}
    from hybridfast.data.tatoeba import load_tatoeba

    return load_tatoeba(directory, list(langs) if langs else None), {}


def _lareqa_languages(langs: Sequence[str], available: Sequence[str], directory: Path) -> list[str]:
    """`--langs` in the dataset's codes (`deu` and `German` are `de` in XQuAD-R)."""
    from hybridfast.data.languages import describe_languages, language_name, match_language

    matched = []
    for code in langs:
        lang = match_language(code, available)
        if lang is None:
            raise HybridfastError(f"{directory}: no {language_name(code)} ({code}) here; it has "
                                  f"{describe_languages(available)}")
        matched.append(lang)
    return matched


def _load_encoder(model: str | FusedEncoder, device: str | None) -> FusedEncoder:
    if not isinstance(model, str):
        return model
    import hybridfast

    try:
        return hybridfast.load(model, device=device)
    except HybridfastError:
        raise
    except (OSError, ValueError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HybridfastError(f"{model}: cannot load the model: {first_line}") from error


def _is_data_warning(caught: warnings.WarningMessage) -> bool:
    from hybridfast.data.files import DataWarning

    return issubclass(caught.category, DataWarning)
