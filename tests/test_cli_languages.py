"""Language codes at the command line, as a user types them: the README's `--task tatoeba --langs de,fr,zh` on
files laid out as the LASER release names them, ISO 639-3 codes and names for XQuAD-R, and the errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridfast.cli import app

runner = CliRunner()
PAIRS = 12  # lines per language taken from the shared Tatoeba files


@pytest.fixture(scope="module")
def tatoeba_subset(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first lines of four real Tatoeba pairs, under their real names (`v1/tatoeba.deu-eng.deu.gz`, ...)."""
    folder = tmp_path_factory.mktemp("tatoeba-laser") / "v1"
    folder.mkdir()
    for lang in ("deu", "fra", "cmn", "ita"):
        for side in (lang, "eng"):
            name = f"tatoeba.{lang}-eng.{side}.gz"
            with gzip.open(data_root / "tatoeba-laser" / "v1" / name, "rt", encoding="utf-8") as source:
                lines = [next(source) for _ in range(PAIRS)]
            with gzip.open(folder / name, "wt", encoding="utf-8") as target:
                target.writelines(lines)
    return folder.parent


def _eval(model: Path, *args: str):
    return runner.invoke(app, ["eval", "--model", str(model), *args, "--device", "cpu", "--no-progress"])


def test_readme_tatoeba_command_takes_iso_639_1_codes(tiny_model_dir: Path, tatoeba_subset: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "tatoeba.json"
    result = _eval(tiny_model_dir, "--task", "tatoeba", "--data", str(tatoeba_subset), "--langs", "de,fr,zh",
                   "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = [line.split("|")[1].strip() for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["deu", "fra", "cmn", "**macro**"]
    saved = json.loads(out.read_text())
    assert saved["settings"]["langs"] == ["deu", "fra", "cmn"]
    assert {lang: row["pairs"] for lang, row in saved["per_language"].items()} == dict.fromkeys(["deu", "fra", "cmn"],
                                                                                               PAIRS)
    # ISO 639-3 codes and English names name the same pairs.
    same = _eval(tiny_model_dir, "--task", "tatoeba", "--data", str(tatoeba_subset), "--langs", "deu,French,cmn")
    assert same.exit_code == 0, same.output
    assert [line for line in same.stdout.splitlines() if line.startswith("| ")] == [
        line for line in result.stdout.splitlines() if line.startswith("| ")]


@pytest.mark.parametrize(
    ("langs", "message"),
    [
        ("de,xx", "unknown language code 'xx'; use an ISO 639-1 code such as 'de', an ISO 639-3 code such as 'deu', "
                  "or an English name such as 'German'"),
        ("no", "tatoeba.nor-eng.nor: file not found (also tried .gz): no Norwegian pair; the folder has 4 languages: "
               "cmn, deu, fra, ita"),
    ],
)
def test_bad_tatoeba_languages_name_the_accepted_forms(tiny_model_dir: Path, tatoeba_subset: Path, langs: str,
                                                       message: str) -> None:
    result = _eval(tiny_model_dir, "--task", "tatoeba", "--data", str(tatoeba_subset), "--langs", langs)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def _lareqa_file(path: Path, lang: str) -> None:
    """A one-article LAReQA (XQuAD-R) file: two paragraphs of two sentences, a question on each."""
    paragraphs = []
    for n in range(2):
        sentences = [f"{lang} sentence {n} one.", f"{lang} sentence {n} two."]
        context = " ".join(sentences)
        paragraphs.append({
            "context": context, "sentences": sentences,
            "sentence_breaks": [[0, len(sentences[0])], [len(sentences[0]) + 1, len(context)]],
            "qas": [{"id": f"q{n}", "question": f"{lang} question {n}?",
                     "answers": [{"text": "x", "answer_start": 0}]}],
        })
    path.write_text(json.dumps({"data": [{"title": "Article", "paragraphs": paragraphs}], "version": "1.1"}))


def test_lareqa_langs_take_iso_639_3_codes_and_names(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "xquad-r"
    folder.mkdir()
    for lang in ("de", "en", "es"):
        _lareqa_file(folder / f"{lang}.json", lang)
    out = tmp_path / "lareqa.json"
    result = _eval(tiny_model_dir, "--task", "lareqa", "--data", str(folder), "--langs", "deu,English", "--out",
                   str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["settings"]["langs"] == ["de", "en"]
    missing = _eval(tiny_model_dir, "--task", "lareqa", "--data", str(folder), "--langs", "fra")
    assert missing.exit_code == 2
    assert f"{folder}: no French (fra) here; it has 3 languages: de, en, es" in missing.stderr


def test_data_stats_names_the_languages(tatoeba_subset: Path) -> None:
    result = runner.invoke(app, ["data", "stats", str(tatoeba_subset), "--json"])
    assert result.exit_code == 0, result.output
    (stats,) = json.loads(result.stdout)
    assert stats["rows"] == [{"language": code, "name": name, "pairs": PAIRS} for code, name in
                             (("cmn", "Chinese"), ("deu", "German"), ("fra", "French"), ("ita", "Italian"))]
