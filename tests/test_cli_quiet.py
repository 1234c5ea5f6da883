"""Quiet by default: the third-party noise a user saw (tqdm bars of transformers, DeepSpeed's CPU notice, the pooler
load report) is gone from a real run, and `--verbose` brings it back."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridfast.quiet import VERBOSE_ENV, DropPoolerOnlyLoadReport, quiet_third_party

NOISE = ("Writing model shards", "Loading weights", "Setting accelerator to CPU", "LOAD REPORT")

# Saves a checkpoint (transformers' shard bar; DeepSpeed's notice when it has no GPU), loads it twice (transformers'
# weight bar), and builds the pooler that the checkpoint lacks unless model_args say otherwise.
SCRIPT = """
import sys
from pathlib import Path
if sys.argv[1] == "quiet":
    from hybridfast.quiet import quiet_third_party
    quiet_third_party()
from transformers import AutoModel
import hybridfast
from hybridfast.testing import build_tiny_encoder
directory = build_tiny_encoder(Path(sys.argv[2]))
hybridfast.load(str(directory))
AutoModel.from_pretrained(str(directory))  # builds XLM-R's pooler: a pooler-only load report
print("done")
"""


def _run(mode: str, directory: Path) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_DISABLE_PROGRESS_BARS", VERBOSE_ENV)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(directory)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_third_party_noise_is_dropped_and_verbose_keeps_it(tmp_path: Path) -> None:
    loud = _run("verbose", tmp_path / "loud")
    assert all(noise in loud for noise in ("Writing model shards", "Loading weights", "LOAD REPORT")), loud
    quiet = _run("quiet", tmp_path / "quiet")
    assert quiet.strip().endswith("done")
    assert [noise for noise in NOISE if noise in quiet] == [], quiet
    if "Setting accelerator to CPU" in loud:  # DeepSpeed says it only on machines without a GPU
        assert "Setting accelerator to CPU" not in quiet


def _report(*keys: str) -> logging.LogRecord:
    rows = "\n".join(f"{key} | MISSING | " for key in keys)
    message = f"XLMRobertaModel LOAD REPORT from: /x\nKey | Status | \n----+--------+-\n{rows}\n\nNotes:\n- MISSING"
    return logging.LogRecord("transformers.modeling_utils", logging.WARNING, "f", 1, message, None, None)


def test_only_a_pooler_only_load_report_is_dropped() -> None:
    keep = DropPoolerOnlyLoadReport()
    assert not keep.filter(_report("pooler.dense.weight", "pooler.dense.bias"))
    assert keep.filter(_report("pooler.dense.weight", "encoder.layer.0.output.dense.weight"))
    assert keep.filter(_report("embeddings.word_embeddings.weight"))
    other = logging.LogRecord("transformers.modeling_utils", logging.WARNING, "f", 1, "something else", None, None)
    assert keep.filter(other)


def test_our_checkpoints_do_not_build_the_pooler_in_sentence_transformers(tiny_model_dir: Path, tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridfast.models.checkpoint import write_encoder_files

    sentence_transformers = pytest.importorskip("sentence_transformers")
    directory = Path(shutil.copytree(tiny_model_dir, tmp_path / "encoder"))
    encoder_config = json.loads((directory / "hybridfast_encoder.json").read_text())
    write_encoder_files(directory, encoder_config, json.loads((directory / "config.json").read_text())["hidden_size"])
    config = json.loads((directory / "sentence_bert_config.json").read_text())
    assert config["model_args"] == {"add_pooling_layer": False}
    # Any test that ran the CLI in this process left quiet_third_party's filter here, which would drop the very
    # report this test looks for.
    monkeypatch.setattr(logging.getLogger("transformers.modeling_utils"), "filters", [])
    transformers_logger = logging.getLogger("transformers")  # does not propagate to the root's capture handler
    transformers_logger.addHandler(caplog.handler)
    try:
        model = sentence_transformers.SentenceTransformer(str(directory), device="cpu")
    finally:
        transformers_logger.removeHandler(caplog.handler)
    assert "LOAD REPORT" not in caplog.text
    assert not any("pooler" in name for name, _ in model.named_parameters())


def test_the_cli_quiets_unless_verbose(monkeypatch: pytest.MonkeyPatch, data_root: Path) -> None:
    from hybridfast import cli

    calls: list[str] = []
    monkeypatch.setattr(cli, "quiet_third_party", lambda: calls.append("quiet"))
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    runner = CliRunner()
    assert runner.invoke(cli.app, ["data", "stats", str(data_root / "xquad-r"), "--json"]).exit_code == 0
    assert calls == ["quiet"]
    assert runner.invoke(cli.app, ["--verbose", "data", "stats", str(data_root / "xquad-r"), "--json"]).exit_code == 0
    assert calls == ["quiet"] and os.environ[VERBOSE_ENV] == "1"  # train's own --verbose reads it
    monkeypatch.delenv(VERBOSE_ENV)
    # `hybridfast train --verbose`: the group leaves quieting to train, whose own --verbose decides
    assert runner.invoke(cli.app, ["train", "--help"]).exit_code == 0
    assert calls == ["quiet"]


def test_quiet_third_party_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # the user's choice wins
    quiet_third_party()
    quiet_third_party()
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
    for name in ("DeepSpeed", "transformers.modeling_utils"):
        kinds = [type(f) for f in logging.getLogger(name).filters]
        assert len(kinds) == len(set(kinds)) == 1
