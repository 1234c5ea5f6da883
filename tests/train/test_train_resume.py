"""Resume: tolerant of a torn metrics line, and telling the user what it did (exactness: test_train_faults.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import typer
from train_helpers import read_losses, write_config
from typer.testing import CliRunner

from hybridfast.errors import DataFormatError
from hybridfast.train.cli import train_command
from hybridfast.train.metrics import trim_to_step

README = Path(__file__).resolve().parents[2] / "README.md"


def _rows(*steps: int) -> str:
    return "".join(json.dumps({"step": step, "loss": 1.0 / step}) + "\n" for step in steps)


def test_trim_drops_a_torn_last_line_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(_rows(1, 2, 3) + '{"step": 4, "lo')  # what SIGKILL during the append of step 4 leaves
    notes = trim_to_step(path, 3)
    assert path.read_text() == _rows(1, 2, 3)
    assert len(notes) == 1 and f"{path}:4: dropped a torn last line" in notes[0]


def test_trim_keeps_lines_up_to_the_step(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(_rows(1, 2) + json.dumps({"step": 2, "eval": {"map": 0.5}}) + "\n" + _rows(3, 4))
    assert trim_to_step(path, 2) == []
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 2]
    assert trim_to_step(tmp_path / "absent.jsonl", 2) == []


@pytest.mark.parametrize(("bad", "line"), [("{not json", 2), ('["a list"]', 2), ('{"loss": 1.0}', 2)])
def test_trim_rejects_a_bad_line_elsewhere_naming_file_and_line(tmp_path: Path, bad: str, line: int) -> None:
    path = tmp_path / "metrics.jsonl"
    original = _rows(1) + bad + "\n" + _rows(2, 3)
    path.write_text(original)
    with pytest.raises(DataFormatError, match=rf"metrics\.jsonl:{line}: "):
        trim_to_step(path, 3)
    assert path.read_text() == original  # nothing rewritten


def _cli(*args: str, progress: bool = False) -> tuple[int, str, str]:
    app = typer.Typer()
    app.command()(train_command)
    result = CliRunner().invoke(app, [*args, "--progress" if progress else "--no-progress"])
    return result.exit_code, result.stdout, result.stderr


def test_resume_after_torn_metrics_line_names_checkpoint_and_counts_steps(
    tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path
) -> None:
    config = write_config(tmp_path, tiny_model_dir, parallel_jsonl, train={"steps": 6}, log={"save_every": 3})
    code, _, stderr = _cli("--config", str(config))
    assert code == 0, stderr
    out = tmp_path / "out"
    # As if killed during step 5's append, after checkpoint 3: the newest checkpoint and its lines go.
    shutil.rmtree(out / "checkpoint-000006")
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])

    code, stdout, stderr = _cli("--config", str(config), progress=True)
    assert code == 0, stderr
    assert f"resumed from {out / 'checkpoint-000003'}; trained 3 steps (4-6) in " in stdout
    # Not a terminal: plain progress lines with step, ETA, loss, lr and tokens/s, rates over this run only.
    first = next(line for line in stderr.splitlines() if line.startswith("train: "))
    assert re.fullmatch(r"train: 4/6 steps \(67 %\), 3 done before this run, [\d.]+ steps/s, elapsed \d:\d\d:\d\d, "
                        r"ETA \d:\d\d:\d\d, loss \d\.\d{4}  lr \d\.\d\de-\d\d  [\d,]+ tokens/s", first), first
    assert "train: 6/6 steps (100 %)" in stderr
    assert "metrics.jsonl:5: dropped a torn last line" in stderr
    assert sorted(read_losses(out)) == [1, 2, 3, 4, 5, 6]


def test_finished_run_launched_again_says_so_without_loading_the_model(
    tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, tiny_model_dir, parallel_jsonl, train={"steps": 2})
    assert _cli("--config", str(config))[0] == 0

    from hybridfast.encoder import FusedEncoder

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run loaded the model again")

    monkeypatch.setattr(FusedEncoder, "from_pretrained", refuse)
    code, stdout, stderr = _cli("--config", str(config))
    assert code == 0, stderr
    checkpoint = tmp_path / "out" / "checkpoint-000002"
    assert f"nothing to train: {checkpoint} is at step 2 and this run has 2 steps (train.steps = 2)" in stderr
    assert 'train.resume = "never" (--resume never)' in stderr and "(--output-dir)" in stderr
    assert f"resumed from {checkpoint}; trained 0 steps" in stdout


def test_printed_next_eval_command_is_the_readmes(
    tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = [line.strip() for line in README.read_text().splitlines() if line.startswith("hybridfast eval --model runs/")]
    assert len(readme) == 1, readme
    # The README's run: output_dir runs/quickstart, 30 steps, relative to the working directory.
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, parallel_jsonl, train={"steps": 30, "output_dir": "runs/quickstart"})
    code, stdout, stderr = _cli("--config", str(config))
    assert code == 0, stderr
    printed = [line.strip() for line in stdout.splitlines() if line.strip().startswith("hybridfast eval")]
    assert printed == readme
