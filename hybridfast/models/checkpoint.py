"""Checkpoint directories: atomic writing, hybridfast's encoder config, sentence-transformers files.

A checkpoint is written into a temporary sibling directory and renamed into place only when
complete, so a failure (bad input, a full disk, Ctrl-C) never leaves a half-written model
where a loader would find it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hybridfast.errors import HybridfastError

ENCODER_CONFIG_FILE = "hybridfast_encoder.json"
E5_ENCODER_CONFIG: dict[str, Any] = {
    "pooling": "mean",
    "normalize": True,
    "query_prefix": "query: ",
    "passage_prefix": "passage: ",
    "max_length": 512,
}
_ST_POOLING_MODES = ("cls", "mean", "max")


class OutputExistsError(HybridfastError):
    """The output directory exists and overwriting was not asked for."""


@contextmanager
def atomic_directory(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory beside `out`; on success it replaces `out`.

    `out` must not exist unless `force`; on any exception the temporary directory is removed
    and `out` is left as it was.
    """
    out = Path(out).expanduser()
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: already exists (pass --force to replace it)")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
        _default_permissions(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(old / out.name)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _default_permissions(directory: Path) -> None:
    """Give the finished tree the modes a plain mkdir/open would (mkdtemp and safetensors use 0o700/0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def write_encoder_files(directory: str | Path, encoder_config: Mapping[str, Any], hidden_size: int) -> None:
    """Write `hybridfast_encoder.json` and the sentence-transformers module files into `directory`.

    `encoder_config` holds hybridfast's keys (pooling, normalize, query_prefix, passage_prefix,
    max_length, ...); the sentence-transformers files mirror it (Transformer -> Pooling ->
    Normalize, prompts "query"/"passage"), so `SentenceTransformer(directory)` embeds the same way.
    """
    directory = Path(directory)
    config = dict(encoder_config)
    pooling = config.get("pooling", "mean")
    if pooling not in _ST_POOLING_MODES:
        raise HybridfastError(f"encoder config: pooling must be one of {_ST_POOLING_MODES}, not {pooling!r}")
    _write_json(directory / ENCODER_CONFIG_FILE, config)

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if config.get("normalize", True):
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (directory / "2_Normalize").mkdir(exist_ok=True)
    _write_json(directory / "modules.json", modules)
    # model_args reach AutoModel.from_pretrained: without add_pooling_layer=False sentence-transformers builds
    # XLM-R's pooler, which these checkpoints do not hold (pooling is mean/cls over token states), and
    # transformers reports its weights as newly initialized.
    _write_json(
        directory / "sentence_bert_config.json",
        {"max_seq_length": int(config.get("max_length", 512)), "do_lower_case": False,
         "model_args": {"add_pooling_layer": False}},
    )
    pooling_config = {"word_embedding_dimension": hidden_size}
    pooling_config.update({f"pooling_mode_{m}_token" if m == "cls" else f"pooling_mode_{m}_tokens": m == pooling
                           for m in _ST_POOLING_MODES})
    pooling_config.update(
        pooling_mode_mean_sqrt_len_tokens=False, pooling_mode_weightedmean_tokens=False,
        pooling_mode_lasttoken=False, include_prompt=True,
    )
    (directory / "1_Pooling").mkdir(exist_ok=True)
    _write_json(directory / "1_Pooling" / "config.json", pooling_config)
    _write_json(
        directory / "config_sentence_transformers.json",
        {
            "prompts": {"query": config.get("query_prefix", ""), "passage": config.get("passage_prefix", "")},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
