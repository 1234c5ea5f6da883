"""`hybridfast data stats` and `hybridfast data download` through typer's test runner."""

from __future__ import annotations

import io
import json
import re
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridfast.data import SOURCES, DownloadError, detect_datasets, download_dataset, load_beir, load_xquad
from hybridfast.data.cli import app
from hybridfast.data.download import DatasetSource

runner = CliRunner()


def _stats_json(*args: str) -> dict[str, list[dict[str, object]]]:
    result = runner.invoke(app, ["stats", *args, "--json"])
    assert result.exit_code == 0, result.output
    return {dataset["name"]: dataset["rows"] for dataset in json.loads(result.stdout)}


def _source_md(data_root: Path, folder: str) -> str:
    return (data_root / folder / "SOURCE.md").read_text(encoding="utf-8")


def test_stats_match_source_md(data_root: Path) -> None:
    stats = _stats_json("--data-dir", str(data_root))
    assert sorted(stats) == ["beir-scifact", "tatoeba-laser", "xquad", "xquad-r"]

    for folder, prefix, with_sentences in (("xquad", "xquad.", False), ("xquad-r", "", True)):
        pattern = (
            rf"\| {re.escape(prefix)}(\w+)\.json\.gz \|.*?(\d+) articles, (\d+) paragraphs, (\d+) questions"
        )
        pattern += r", (\d+) sentences" if with_sentences else ""
        expected = {m[0]: [int(n) for n in m[1:]] for m in re.findall(pattern, _source_md(data_root, folder))}
        assert len(expected) == (11 if with_sentences else 12)
        columns = ["articles", "paragraphs", "questions"] + (["candidates"] if with_sentences else [])
        assert {row["language"]: [row[c] for c in columns] for row in stats[folder]} == expected

    tatoeba = dict(re.findall(r"(\w+)-eng:(\d+)", _source_md(data_root, "tatoeba-laser")))
    assert len(tatoeba) == 112
    assert {row["language"]: row["pairs"] for row in stats["tatoeba-laser"]} == {
        k: int(v) for k, v in tatoeba.items()
    }

    beir_md = _source_md(data_root, "beir-scifact")
    docs, test_queries, test_qrels = (int(n.replace(",", "")) for n in re.search(
        r"([\d,]+) docs, (\d+) test queries / (\d+) test qrels", beir_md
    ).groups())  # fmt: skip
    train_qrels, train_queries = map(
        int, re.search(r"(\d+) judgments, (\d+) queries, score 1; identical", beir_md).groups()
    )
    all_queries = int(
        re.search(r"([\d,]+) queries \(809 train \+ 300 test\)", beir_md).group(1).replace(",", "")
    )
    beir = {row["part"]: row for row in stats["beir-scifact"]}
    assert beir["corpus"]["documents"] == docs == 5183
    assert beir["queries"]["queries"] == all_queries == 1109
    assert (beir["qrels/test"]["queries"], beir["qrels/test"]["qrels"]) == (test_queries, test_qrels)
    assert (beir["qrels/train"]["queries"], beir["qrels/train"]["qrels"]) == (train_queries, train_qrels)


def test_stats_table_and_single_dataset_dir(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDFAST_DATA", str(data_root))
    result = runner.invoke(app, ["stats", str(data_root / "xquad-r")])
    assert result.exit_code == 0, result.output
    assert "xquad-r (lareqa)" in result.stdout and "1,276" in result.stdout and "852" in result.stdout
    assert [dataset.kind for dataset in detect_datasets(data_root / "xquad")] == ["xquad"]


def test_stats_on_written_data(
    tmp_path: Path, squad_writer, text_writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    squad_writer(tmp_path / "mini-xquad" / "xquad.en.json", [("T", [("One. Two.", [("q", "?", 0)])])])
    text_writer(tmp_path / "mini-tatoeba" / "tatoeba.deu-eng.deu.gz", "a\nb\n")
    text_writer(tmp_path / "mini-tatoeba" / "tatoeba.deu-eng.eng.gz", "a\nb\n")
    (tmp_path / "notes").mkdir()
    monkeypatch.setenv("HYBRIDFAST_DATA", str(tmp_path))
    stats = _stats_json()
    assert stats == {
        "mini-tatoeba": [{"language": "deu", "name": "German", "pairs": 2}],
        "mini-xquad": [{"language": "en", "name": "English", "articles": 1, "paragraphs": 1, "questions": 1}],
    }


@pytest.mark.parametrize("make_bad", ["missing", "empty", "malformed"])
def test_stats_bad_input_exits_2_with_one_line(
    tmp_path: Path, squad_writer, text_writer, make_bad: str
) -> None:
    if make_bad == "empty":
        (tmp_path / "nothing").mkdir()
    if make_bad == "malformed":
        text_writer(tmp_path / "xq" / "xquad.de.json", '{"data": [\n}')
    target = tmp_path / ("absent" if make_bad == "missing" else "nothing" if make_bad == "empty" else "")
    result = runner.invoke(app, ["stats", str(target)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    if make_bad == "malformed":
        assert "xquad.de.json:2: malformed JSON" in result.stderr


def test_download_offline_fails_fast_with_placement_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, timeout: float) -> None:
        assert timeout <= 10
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    result = runner.invoke(app, ["download", "xquad", "--to", str(tmp_path)])
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot download xquad") and "Name or service not known" in last
    assert f"copy the files into {tmp_path / 'xquad'}/ by hand: xquad.{{lang}}.json" in last
    with pytest.raises(DownloadError, match="unknown dataset 'squad'"):
        download_dataset("squad", tmp_path)


def test_download_real_network_error_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Port 9 on localhost refuses at once: the real urllib path, no waiting."""
    monkeypatch.setitem(
        SOURCES, "xquad", DatasetSource("xquad", (("http://127.0.0.1:9/x.json", "x.json"),), "x")
    )
    with pytest.raises(DownloadError, match="without network, copy the files"):
        download_dataset("xquad", tmp_path, timeout=2)


def test_download_writes_loader_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, squad_writer) -> None:
    upstream = squad_writer(
        tmp_path / "upstream" / "xquad.en.json", [("T", [("One. Two.", [("q", "?", 0)])])]
    )
    monkeypatch.setitem(
        SOURCES, "xquad", DatasetSource("xquad", ((upstream.as_uri(), "xquad.en.json"),), "xquad.{lang}.json")
    )
    result = runner.invoke(app, ["download", "xquad", "--to", str(tmp_path / "root")])
    assert result.exit_code == 0, result.output
    assert [r.qid for r in load_xquad(tmp_path / "root" / "xquad")] == ["q"]

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("scifact/corpus.jsonl", '{"_id": "d", "text": "t"}\n')
        zipped.writestr("scifact/queries.jsonl", '{"_id": "q", "text": "x"}\n')
        zipped.writestr("scifact/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq\td\t1\n")
    (tmp_path / "scifact.zip").write_bytes(archive.getvalue())
    source = SOURCES["beir-scifact"]
    monkeypatch.setitem(
        SOURCES,
        "beir-scifact",
        DatasetSource(source.folder, (((tmp_path / "scifact.zip").as_uri(), "./"),), "", "scifact/"),
    )
    target = download_dataset("beir-scifact", tmp_path / "root")
    assert load_beir(target).qrels == {"q": {"d": 1}}


def test_download_sources_cover_the_shared_layout() -> None:
    assert sorted(SOURCES) == ["beir-scifact", "tatoeba", "xquad", "xquad-r"]
    assert len(SOURCES["tatoeba"].files) == 224
    assert all(url.startswith("https://") for source in SOURCES.values() for url, _ in source.files)
