"""Fetch the supported public datasets from their official sources, pinned to the commits the shared
copies were taken from, into `{to}/{folder}/` in the layout the loaders read."""

from __future__ import annotations

import io
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hybridfast.data.languages import TATOEBA_LANGUAGES
from hybridfast.errors import HybridfastError

DEFAULT_TIMEOUT_S = 10.0

_XQUAD = "https://raw.githubusercontent.com/google-deepmind/xquad/7d30520c717524000f0d9d2f9c10a069acd9d285"
_LAREQA = "https://raw.githubusercontent.com/google-research-datasets/lareqa/9bc8c7fb6dd8d01d72a05a93c2cb96882b0d299c"
_LASER = "https://raw.githubusercontent.com/facebookresearch/LASER/74bc6ae7ffb7cba670fe0f428d0ede9f666fb821"
_BEIR = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
_XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
_XQUAD_R_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")


class DownloadError(HybridfastError):
    """A dataset could not be fetched (no network, or the source failed)."""


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from: `(url, path under the dataset folder)` per file.

    A file whose path ends in `/` is a zip archive; its members under `archive_prefix` are unpacked there.
    """

    folder: str
    files: tuple[tuple[str, str], ...]
    layout: str
    archive_prefix: str = ""


SOURCES: dict[str, DatasetSource] = {
    "xquad": DatasetSource(
        "xquad",
        tuple((f"{_XQUAD}/xquad.{lang}.json", f"xquad.{lang}.json") for lang in _XQUAD_LANGUAGES),
        "xquad.{lang}.json[.gz] for each language",
    ),
    "xquad-r": DatasetSource(
        "xquad-r",
        tuple((f"{_LAREQA}/xquad-r/{lang}.json", f"{lang}.json") for lang in _XQUAD_R_LANGUAGES),
        "{lang}.json[.gz] for each language",
    ),
    "beir-scifact": DatasetSource(
        "beir-scifact",
        ((f"{_BEIR}/scifact.zip", "./"),),
        "corpus.jsonl[.gz], queries.jsonl[.gz], qrels/test.tsv, qrels/train.tsv",
        archive_prefix="scifact/",
    ),
    "tatoeba": DatasetSource(
        "tatoeba-laser",
        tuple(
            (f"{_LASER}/data/tatoeba/v1/tatoeba.{lang}-eng.{side}", f"v1/tatoeba.{lang}-eng.{side}")
            for lang in TATOEBA_LANGUAGES
            for side in (lang, "eng")
        ),
        "v1/tatoeba.{xxx}-eng.{xxx} and v1/tatoeba.{xxx}-eng.eng[.gz] for each language",
    ),
}


def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _write(path: Path, payload: bytes) -> None:
    """Write through a temporary file, so an interrupted download never leaves a half file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=f".{path.name}.") as handle:
        handle.write(payload)
    Path(handle.name).replace(path)


def _unpack(payload: bytes, prefix: str, target: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        for member in archive.infolist():
            if member.is_dir() or not member.filename.startswith(prefix):
                continue
            relative = Path(member.filename[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise DownloadError(f"refusing archive member with an unsafe path: {member.filename}")
            with archive.open(member) as source:
                _write(target / relative, source.read())


def download_dataset(
    name: str,
    to: Path,
    timeout: float = DEFAULT_TIMEOUT_S,
    on_file: Callable[[int, int, str], None] | None = None,
) -> Path:
    """Download dataset `name` (a key of `SOURCES`) into `to/{folder}/` and return that folder.

    `on_file(done, total, relative_path)` is called after each file. Without network the first request
    fails within `timeout` seconds and `DownloadError` says where to put the files by hand.
    """
    if name not in SOURCES:
        raise DownloadError(f"unknown dataset {name!r}; supported: {', '.join(SOURCES)}")
    source = SOURCES[name]
    target = to / source.folder
    for done, (url, relative) in enumerate(source.files, start=1):
        try:
            payload = _fetch(url, timeout)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise DownloadError(
                f"cannot download {name} from {url} ({reason}); without network, copy the files into "
                f"{target}/ by hand: {source.layout}"
            ) from error
        if relative.endswith("/"):
            _unpack(payload, source.archive_prefix, target / relative)
        else:
            _write(target / relative, payload)
        if on_file is not None:
            on_file(done, len(source.files), relative)
    return target
