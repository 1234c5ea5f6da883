"""Tatoeba bitext (LASER release): `tatoeba.{xxx}-eng.{xxx}` and `tatoeba.{xxx}-eng.eng`, line i of one
translating line i of the other; files may sit in the folder itself or in its `v1/`, `.gz` or plain."""

from __future__ import annotations

import re
from pathlib import Path

from hybridfast.data.files import MissingDataError, find_data_file, iter_lines, strip_gz
from hybridfast.data.languages import check_language, describe_languages, match_language, require_language
from hybridfast.data.records import BitextPair
from hybridfast.errors import DataFormatError

_SOURCE_FILE = re.compile(r"^tatoeba\.([a-z]+)-eng\.\1$")


def tatoeba_folder(directory: Path) -> Path:
    """The folder holding the `tatoeba.*` files: `directory` itself or its `v1/`."""
    for folder in (directory, directory / "v1"):
        if folder.is_dir() and any(_SOURCE_FILE.match(strip_gz(p.name)) for p in folder.iterdir()):
            return folder
    raise MissingDataError(f"{directory}: no tatoeba.{{xxx}}-eng.{{xxx}}[.gz] files here or in v1/")


def tatoeba_languages(directory: Path) -> list[str]:
    """The ISO 639-3 codes with a Tatoeba pair under `directory`, sorted."""
    folder = tatoeba_folder(directory)
    languages = set()
    for path in folder.iterdir():
        match = _SOURCE_FILE.match(strip_gz(path.name))
        if match:
            languages.add(check_language(match.group(1), path, None))
    return sorted(languages)


def _sentences(path: Path) -> list[str]:
    sentences = []
    for line, sentence in iter_lines(path):
        if not sentence.strip():
            raise DataFormatError(path, line, "empty sentence")
        sentences.append(sentence)
    return sentences


def load_tatoeba_pair(directory: Path, lang: str) -> list[BitextPair]:
    """The sentence pairs of one language; the two files must have the same number of lines."""
    folder = tatoeba_folder(directory)
    source_path = find_data_file(folder, f"tatoeba.{lang}-eng.{lang}")
    english_path = find_data_file(folder, f"tatoeba.{lang}-eng.eng")
    check_language(lang, source_path, None)
    sources, english = _sentences(source_path), _sentences(english_path)
    if len(sources) != len(english):
        shorter = source_path if len(sources) < len(english) else english_path
        raise DataFormatError(
            shorter,
            min(len(sources), len(english)) + 1,
            f"line counts differ: {source_path.name} has {len(sources)} lines, {english_path.name} has {len(english)}",
        )
    return [BitextPair(lang, source, target) for source, target in zip(sources, english, strict=True)]


def load_tatoeba(directory: Path, languages: list[str] | None = None) -> dict[str, list[BitextPair]]:
    """`{lang: pairs}` for `languages` (default: every pair under `directory`), keyed by the files' ISO 639-3
    codes; `languages` may name them by any code or English name (`de`, `deu`, `German`; `zh` is `cmn`)."""
    available = tatoeba_languages(directory)
    selected = []
    for code in languages or available:
        lang = match_language(code, available)
        if lang is None:
            language = require_language(code)
            iso3 = language.codes[-1]  # the table lists the code Tatoeba uses last (`cmn` for Chinese, `pes` for Persian)
            raise MissingDataError(
                f"{tatoeba_folder(directory) / f'tatoeba.{iso3}-eng.{iso3}'}: file not found (also tried .gz): no "
                f"{language.name} pair; the folder has {describe_languages(available)}"
            )
        selected.append(lang)
    return {lang: load_tatoeba_pair(directory, lang) for lang in selected}
