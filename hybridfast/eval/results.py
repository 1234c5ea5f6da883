"""Result files of `hybridfast eval`: one JSON document per run.

Layout (format `hybridfast-eval/1`):

    {"format", "task", "model", "data", "created", "settings", "encoder",
     "metrics":     {setting: {metric: value}},            # the headline numbers
     "per_language": {...},                               # task-specific tables
     "per_query":   {setting: {"ids": [...], metric: [...],   # paired tests read these
                               "clusters": {level: [...]}}},   # optional: e.g. question, article
     "counts", "warnings", "timing", "versions"}

`clusters` names, per query, the groups it is not independent of: in LAReQA every translation of one
question shares a "question" id and every question of one Wikipedia article an "article" id, so
significance tests resample those groups, not query rows (`hybridfast.eval.compare`). A block without
clusters has independent queries (BEIR, Tatoeba).

Per-query values are rounded to 6 significant decimals so that a full XQuAD-R run stays near 2 MB.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridfast.errors import HybridfastError

if TYPE_CHECKING:
    from hybridfast.encoder import FusedEncoder

RESULT_FORMAT = "hybridfast-eval/1"
_DECIMALS = 6
# Keys of a per-query block that are not metrics.
IDS_KEY = "ids"
CLUSTERS_KEY = "clusters"


class ResultFileError(HybridfastError):
    """A result file is missing, unreadable or not a `hybridfast eval` result."""


def encoder_info(encoder: FusedEncoder) -> dict[str, Any]:
    """The encoder's source, dimension and config, saying whether the config was defaulted."""
    info: dict[str, Any] = {
        "source": getattr(encoder, "source", ""),
        "dim": int(encoder.dim),
        "config": asdict(encoder.config),
        "config_was_defaulted": bool(getattr(encoder, "config_was_defaulted", False)),
    }
    if info["config_was_defaulted"]:
        info["note"] = (
            "the model directory has no hybridfast_encoder.json: used the defaults "
            "(mean pooling, L2 normalization, no query/passage prefixes, max length 512)"
        )
    return info


def versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("hybridfast", "torch", "transformers", "numpy", "faiss-cpu", "faiss-gpu-cu12",
                    "pytrec-eval-terrier", "tokenizers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def new_result(task: str, model: str, data: str, settings: dict[str, Any], encoder: dict[str, Any]) -> dict[str, Any]:
    """The skeleton of a result document; the task fills metrics, tables, per-query scores and counts."""
    return {
        "format": RESULT_FORMAT,
        "task": task,
        "model": model,
        "data": data,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": settings,
        "encoder": encoder,
        "metrics": {},
        "per_language": {},
        "per_query": {},
        "counts": {},
        "warnings": [],
        "timing": {},
        "versions": versions(),
    }


def per_query_block(
    ids: list[str], scores: dict[str, np.ndarray], clusters: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """`{"ids": ids, metric: rounded values, "clusters": {level: labels}}` for one setting."""
    block: dict[str, Any] = {IDS_KEY: list(ids)}
    for metric, values in scores.items():
        block[metric] = [_round(float(v)) for v in np.asarray(values).tolist()]
    if clusters:
        for level, labels in clusters.items():
            if len(labels) != len(ids):
                raise ValueError(f"cluster level {level!r} has {len(labels)} labels for {len(ids)} queries")
        block[CLUSTERS_KEY] = {level: [str(label) for label in labels] for level, labels in clusters.items()}
    return block


def block_metrics(block: dict[str, Any]) -> list[str]:
    """The metric names of a per-query block (every key but the ids and the cluster labels)."""
    return [key for key in block if key not in (IDS_KEY, CLUSTERS_KEY)]


def finite_mean(values: np.ndarray) -> float:
    """Mean over the finite entries (NaN marks a skipped query); NaN when there is none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def save_result(result: dict[str, Any], path: str | Path) -> Path:
    """Write `result` as JSON (NaN written as null), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(result), ensure_ascii=False, separators=(",", ":")) + "\n")
    return path


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a result file, checking that it is one and that its per-query blocks are well formed."""
    path = Path(path)
    if not path.is_file():
        raise ResultFileError(f"{path}: result file not found")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ResultFileError(f"{path}:{error.lineno}: malformed JSON: {error.msg}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ResultFileError(f"{path}: cannot read: {error}") from error
    if not isinstance(result, dict) or result.get("format") != RESULT_FORMAT:
        raise ResultFileError(f"{path}: not a hybridfast eval result (expected format {RESULT_FORMAT!r})")
    per_query = result.get("per_query")
    if not isinstance(per_query, dict):
        raise ResultFileError(f"{path}: no per_query scores")
    for setting, block in per_query.items():
        ids = block.get("ids") if isinstance(block, dict) else None
        if not isinstance(ids, list):
            raise ResultFileError(f"{path}: per_query[{setting!r}] has no ids list")
        for metric in block_metrics(block):
            values = block[metric]
            if not isinstance(values, list) or len(values) != len(ids):
                raise ResultFileError(f"{path}: per_query[{setting!r}][{metric!r}] does not match its ids")
        clusters = block.get(CLUSTERS_KEY, {})
        if not isinstance(clusters, dict):
            raise ResultFileError(f"{path}: per_query[{setting!r}][{CLUSTERS_KEY!r}] must map a level to labels")
        for level, labels in clusters.items():
            if not isinstance(labels, list) or len(labels) != len(ids):
                raise ResultFileError(f"{path}: per_query[{setting!r}][{CLUSTERS_KEY!r}][{level!r}] does not match its ids")
    return result


def format_value(value: Any, digits: int = 4) -> str:
    """A table cell: floats to `digits` decimals, missing values as a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[Any]], digits: int = 4) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(format_value(cell, digits) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _round(value: float) -> float | None:
    if not math.isfinite(value):
        return None
    if value == int(value):
        return int(value)
    return round(value, _DECIMALS)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
