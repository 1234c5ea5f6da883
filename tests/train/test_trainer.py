"""The training loop in one process: loss goes down, checkpoints load everywhere, NaN and broken saves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import read_losses, write_config

import hybridfast
from hybridfast.train.checkpoint import checkpoint_dirs, latest_checkpoint
from hybridfast.train.config import load_config
from hybridfast.train.loop import TrainingDivergedError, train

TEXTS = ["Wo ist der Rhein?", "Where is the river Rhine? It flows through Germany.", "莱茵河在哪里？"]


def test_loss_decreases_and_logs(tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path) -> None:
    config = load_config(write_config(
        tmp_path, tiny_model_dir, parallel_jsonl,
        train={"steps": 18}, sampling={"alpha": 0.5, "batch_size": 6}, log={"save_every": 6, "keep_last": 2},
    ))
    result = train(config, show_progress=False)
    losses = [result.losses[s] for s in sorted(result.losses)]
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.1, losses
    rows = [json.loads(line) for line in result.metrics_file.read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 19))
    last = rows[-1]
    assert last["mono_batches"] + last["cross_batches"] == 18 and last["mono_batches"] > 0 and last["cross_batches"] > 0
    assert last["tokens_per_s"] > 0 and last["examples_per_s"] > 0 and last["temperature"] == pytest.approx(0.1)
    assert [step for step, _ in checkpoint_dirs(result.output_dir)] == [12, 18]  # keep_last = 2
    assert result.checkpoint == latest_checkpoint(result.output_dir)


def test_checkpoint_loads_in_transformers_and_sentence_transformers(
    tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path
) -> None:
    result = train(load_config(write_config(tmp_path, tiny_model_dir, parallel_jsonl, train={"steps": 2})),
                   show_progress=False)
    directory = str(result.checkpoint)
    ours = hybridfast.load(directory, device="cpu").encode_queries(TEXTS)
    assert not np.allclose(ours, hybridfast.load(str(tiny_model_dir), device="cpu").encode_queries(TEXTS))

    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = AutoModel.from_pretrained(directory).eval(), AutoTokenizer.from_pretrained(directory)
    batch = tokenizer(["query: " + t for t in TEXTS], padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    plain = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    np.testing.assert_allclose(plain, ours, atol=1e-5)

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(directory, device="cpu").encode(TEXTS, prompt_name="query")
    np.testing.assert_allclose(st, ours, atol=1e-5)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path
) -> None:
    def poison(encoder, *, step: int, output_dir: Path) -> None:
        with torch.no_grad():
            encoder.model.get_input_embeddings().weight.fill_(float("nan"))

    config = load_config(write_config(tmp_path, tiny_model_dir, parallel_jsonl, train={"steps": 6},
                                      log={"save_every": 2, "eval_every": 3}))
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at step 4 .*checkpoint-000002"):
        train(config, eval_fn=poison, show_progress=False)
    good = latest_checkpoint(config.train.output_dir)
    assert good is not None and good.name == "checkpoint-000002"
    assert np.isfinite(hybridfast.load(str(good), device="cpu").encode_queries(TEXTS)).all()


def test_interrupted_save_keeps_previous_checkpoint(
    tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hybridfast.train.checkpoint as checkpoint

    real = checkpoint.write_trainer_state
    calls = []

    def crash_on_second(directory: Path, *args, **kwargs) -> None:
        calls.append(directory)
        if len(calls) == 2:
            (directory / "model.safetensors").write_bytes(b"half written")
            raise OSError("disk full")
        real(directory, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "write_trainer_state", crash_on_second)
    config = load_config(write_config(tmp_path, tiny_model_dir, parallel_jsonl, train={"steps": 4},
                                      log={"save_every": 2}))
    with pytest.raises(OSError, match="disk full"):
        train(config, show_progress=False)
    out = Path(config.train.output_dir)
    assert [step for step, _ in checkpoint_dirs(out)] == [2]
    hybridfast.load(str(out / "checkpoint-000002"), device="cpu").encode_queries(TEXTS)

    monkeypatch.setattr(checkpoint, "write_trainer_state", real)
    resumed = train(config, show_progress=False)
    assert resumed.resumed_from == out / "checkpoint-000002" and resumed.steps == 4
    assert sorted(read_losses(out)) == [1, 2, 3, 4]
