"""Progress you can see without a terminal: plain lines at the first update, every N seconds and at the end, with
rates and an ETA that count only this run's work; and the per-batch lines of `hybridfast eval` in a log."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from rich.progress import TextColumn
from typer.testing import CliRunner

from hybridfast.cli import app
from hybridfast.progress import BatchCounter, rich_progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _plain_progress(clock: Clock, **kwargs):
    log = io.StringIO()
    console = Console(file=log, force_terminal=False, width=300)
    return rich_progress(console=console, get_time=clock, **kwargs), log


def test_plain_lines_every_n_seconds_with_rates_and_eta() -> None:
    clock = Clock()
    progress, log = _plain_progress(clock, log_every=10.0)
    with progress:
        task = progress.add_task("encoding corpus.jsonl", total=100, unit="texts")
        for _ in range(10):  # 10 texts and 500 tokens every 3 s
            clock.now += 3
            progress.advance(task, 10, tokens=500)
    assert log.getvalue().splitlines() == [
        # the first batch, then each first batch at least 10 s after the line before, then the end
        "encoding corpus.jsonl: 10/100 texts (10 %), 3.3 texts/s, 167 tokens/s, elapsed 0:00:03, ETA 0:00:27",
        "encoding corpus.jsonl: 50/100 texts (50 %), 3.3 texts/s, 167 tokens/s, elapsed 0:00:15, ETA 0:00:15",
        "encoding corpus.jsonl: 90/100 texts (90 %), 3.3 texts/s, 167 tokens/s, elapsed 0:00:27, ETA 0:00:03",
        "encoding corpus.jsonl: 100/100 texts (100 %), 3.3 texts/s, 167 tokens/s, elapsed 0:00:30",
    ]


def test_work_done_before_this_run_counts_toward_done_not_toward_rates() -> None:
    clock = Clock()
    progress, log = _plain_progress(clock, log_every=60.0)
    with progress:
        task = progress.add_task("encoding c", total=1000, unit="texts")
        progress.skip(task, 600)
        clock.now += 4
        progress.advance(task, 40, tokens=2000)
    lines = log.getvalue().splitlines()
    assert lines[0] == "encoding c: 600/1,000 texts (60 %), 600 done before this run, elapsed 0:00:00"
    # 40 texts in 4 s is 10 texts/s (not 160): 360 texts left is 36 s; the display's end prints the last state.
    assert lines[-1] == ("encoding c: 640/1,000 texts (64 %), 600 done before this run, 10 texts/s, 500 tokens/s, "
                         "elapsed 0:00:04, ETA 0:00:36")


def test_training_fields_resumed_steps_and_status() -> None:
    """What train's loop passes: an extra status column, resumed steps as `completed`, markup in the name."""
    clock = Clock()
    progress, log = _plain_progress(clock, log_every=10.0)
    with progress:
        task = progress.add_task("[bold]train", total=30, completed=12, unit="steps", status="")
        for step in range(13, 16):
            clock.now += 2.5
            progress.update(task, advance=1, status=f"loss {1 / step:.4f}  lr 3.00e-05")
    lines = log.getvalue().splitlines()
    assert lines[0] == ("train: 13/30 steps (43 %), 12 done before this run, 0.4 steps/s, elapsed 0:00:02, "
                        "ETA 0:00:42, loss 0.0769  lr 3.00e-05")
    assert lines[-1].startswith("train: 15/30 steps (50 %), 12 done before this run, 0.4 steps/s, elapsed 0:00:08")
    assert lines[-1].endswith("loss 0.0667  lr 3.00e-05")


def test_terminal_bar_and_disabled_progress_print_no_plain_lines() -> None:
    clock = Clock()
    log = io.StringIO()
    terminal = Console(file=log, force_terminal=True, width=200)
    with rich_progress(TextColumn("{task.fields[status]}"), console=terminal, get_time=clock,
                       transient=True) as progress:
        task = progress.add_task("train", total=3, unit="steps", status="")
        progress.update(task, advance=3, status="loss 0.1")
    assert "train: 3/3 steps" not in log.getvalue()
    quiet = io.StringIO()
    with rich_progress(enabled=False, console=Console(file=quiet, force_terminal=False)) as progress:
        progress.advance(progress.add_task("x", total=2), 2)
    assert quiet.getvalue() == ""


def test_batch_counter_totals() -> None:
    clock = Clock()
    progress, log = _plain_progress(clock)
    with progress:
        counter = BatchCounter(progress, progress.add_task("encoding", total=5, unit="texts"))
        counter(3, 120)
        counter(2, 40)
    assert (counter.texts, counter.tokens) == (5, 160)
    assert counter.summary().startswith("5 texts (160 tokens) in ")


def test_eval_in_a_log_prints_per_batch_lines(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tatoeba"
    folder.mkdir()
    (folder / "tatoeba.deu-eng.deu").write_text("".join(f"Satz Nummer {i}.\n" for i in range(40)))
    (folder / "tatoeba.deu-eng.eng").write_text("".join(f"Sentence number {i}.\n" for i in range(40)))
    result = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dir), "--task", "tatoeba", "--data",
                                      str(folder), "--device", "cpu", "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("deu: ")]
    # stderr is not a terminal: a line at the first batch of 8 and one at the end, each with both rates
    assert lines[0].startswith("deu: 8/40 texts (20 %), ") and lines[-1].startswith("deu: 40/40 texts (100 %), ")
    assert all("texts/s" in line and "tokens/s" in line for line in lines)
