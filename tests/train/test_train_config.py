"""Config validation: bad keys and values are reported with the key, before any heavy work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from train_helpers import write_config
from typer.testing import CliRunner

from hybridfast.train.cli import train_command
from hybridfast.train.config import ConfigError, load_config
from hybridfast.train.loop import train

CONFIGS = Path(__file__).resolve().parents[2] / "train" / "configs"


@pytest.mark.parametrize("name", ["paper.toml", "quickstart.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load_config(CONFIGS / name)
    assert config.model.name == "default" and config.sampling.alpha == 0.5
    if name == "paper.toml":
        assert (config.optim.lr, config.optim.weight_decay, config.sampling.batch_size) == (3e-5, 0.01, 100)


@pytest.mark.parametrize("stage", [2, 3])
def test_shipped_deepspeed_configs(tmp_path: Path, stage: int) -> None:
    ds = json.loads((CONFIGS / f"zero{stage}.json").read_text())
    assert ds["zero_optimization"]["stage"] == stage
    path = tmp_path / "c.toml"
    path.write_text(f'[train]\nsteps = 1\ndeepspeed = "{CONFIGS / f"zero{stage}.json"}"\n')
    assert load_config(path).deepspeed_path() == CONFIGS / f"zero{stage}.json"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[train]\nsteps = 1\n[optim]\nlrr = 1e-5\n", r"unknown key optim\.lrr"),
        ("[trainer]\nsteps = 1\n", r"unknown section \[trainer\]"),
        ("[train]\nsteps = 1\n[sampling]\nalpha = 1.5\n", r"sampling\.alpha: must be in \[0, 1\]"),
        ("[train]\nsteps = 1\n[sampling]\nalpha = -0.1\n", r"sampling\.alpha"),
        ("[train]\nsteps = 1\n[sampling]\nbatch_size = \"big\"\n", r"sampling\.batch_size: expected an integer"),
        ("[train]\nsteps = 2\nepochs = 1\n", r"train\.steps: give exactly one"),
        ("[train]\nsteps = 1\nprecision = \"fp8\"\n", r"train\.precision"),
        ("[train]\nsteps = 1\ndeepspeed = \"nope.json\"\n", r"train\.deepspeed: nope\.json: file not found"),
        ("[train]\nsteps = 1\n[log]\neval_hook = \"no_such_module_xyz:hook\"\n", r"log\.eval_hook: cannot import"),
        ("[train]\nsteps = 1\n[optim]\nschedule = \"step\"\n", r"optim\.schedule"),
        ("[train\nsteps = 1\n", r"invalid TOML"),
        ("[train]\nsteps = 1\n[log]\nsave_dtype = \"float16\"\n", r"log\.save_dtype: must be one of float32, bfloat16"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("weight_decay", "nan"), ("weight_decay", "inf"), ("weight_decay", "-0.01"),
        ("max_grad_norm", "nan"), ("max_grad_norm", "inf"), ("max_grad_norm", "-1.0"),
        ("lr", "nan"), ("lr", "inf"), ("lr", "-3e-5"),
        ("temperature", "nan"), ("temperature", "inf"), ("temperature", "0.0"),
        ("warmup_steps", "-1"),
    ],
)
def test_non_finite_or_negative_optimizer_values_name_the_key(tmp_path: Path, key: str, value: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[train]\nsteps = 1\n[optim]\n{key} = {value}\n")
    shown = value if key == "warmup_steps" else str(float(value))
    with pytest.raises(ConfigError, match=rf"bad\.toml: optim\.{key}: must be .*, not {re.escape(shown)}$"):
        load_config(path)


def test_eval_hook_with_the_wrong_signature_fails_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "two_arg_hook.py").write_text("def hook(encoder, step):\n    return {}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "c.toml"
    path.write_text('[train]\nsteps = 1\n[log]\neval_every = 1\neval_hook = "two_arg_hook:hook"\n')
    with pytest.raises(ConfigError, match=r"log\.eval_hook: two_arg_hook:hook: takes \(encoder, step\), but it is "
                                          r"called as hook\(encoder, step=\.\.\., output_dir=\.\.\.\)"):
        load_config(path)


def test_yaml_configs(tmp_path: Path) -> None:
    good = tmp_path / "c.yaml"
    good.write_text("train:\n  steps: 3\nsampling:\n  alpha: 0.25\n")
    assert load_config(good).sampling.alpha == 0.25
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: 3\n  seed: [1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_config(bad)


@pytest.fixture()
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Data and option errors must surface before the model is loaded."""
    from hybridfast.encoder import FusedEncoder

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the config was checked")

    monkeypatch.setattr(FusedEncoder, "from_pretrained", refuse)


@pytest.mark.parametrize(
    ("sections", "match"),
    [
        ({"sampling": {"batch_size": 25}}, r"sampling\.batch_size: a global batch of 25 pairs"),
        ({"data": {"languages": ["de", "fr"]}}, r"data\.languages: unknown language 'fr'"),
        ({"sampling": {"alpha": 0.5}, "data": {"languages": ["de"]}}, r"sampling\.alpha"),
        ({"model": {"name": "/no/such/model/dir"}}, r"model\.name"),
        ({"data": {"path": "missing.jsonl"}}, r"data\.path: .*missing\.jsonl not found"),
        ({"data": {"split": "train", "path": "NOARTICLE"}}, r"data\.split"),
    ],
)
def test_data_and_model_errors_come_before_heavy_work(
    tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path, no_model_loading: None, sections: dict, match: str
) -> None:
    if sections.get("data", {}).get("path") == "NOARTICLE":
        rows = [json.loads(line) for line in parallel_jsonl.read_text().splitlines()]
        plain = tmp_path / "plain.jsonl"
        plain.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "article"}) + "\n" for row in rows))
        sections["data"]["path"] = str(plain)
    config = load_config(write_config(tmp_path, tiny_model_dir, parallel_jsonl, **sections))
    with pytest.raises(ConfigError, match=match):
        train(config, show_progress=False)


def test_eval_fn_with_the_wrong_signature_fails_before_the_model_loads(
    tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path, no_model_loading: None
) -> None:
    config = load_config(write_config(tmp_path, tiny_model_dir, parallel_jsonl, log={"eval_every": 1}))
    with pytest.raises(ConfigError, match=r"train\(eval_fn=\.\.\.\): takes \(encoder\)"):
        train(config, eval_fn=lambda encoder: None, show_progress=False)


@pytest.mark.parametrize("key", ["query_max_length", "passage_max_length"])
def test_max_length_beyond_the_position_table_fails_before_step_1(
    tmp_path: Path, tiny_model_dir: Path, parallel_jsonl: Path, key: str
) -> None:
    # The tiny XLM-R has 66 position rows; positions start at padding_idx + 1 = 2, so 64 tokens fit.
    rows = json.loads((tiny_model_dir / "config.json").read_text())["max_position_embeddings"]
    config = load_config(write_config(tmp_path, tiny_model_dir, parallel_jsonl, model={key: rows - 1}))
    with pytest.raises(ConfigError, match=rf"model\.{key}: {rows - 1} is more than this model's {rows - 2} positions "
                                          rf"\(max_position_embeddings {rows} minus 2 reserved by xlm-roberta's"):
        train(config, show_progress=False)
    assert not (Path(config.train.output_dir) / "metrics.jsonl").exists()


def test_max_length_limit_follows_the_position_numbering() -> None:
    from transformers import BertConfig, XLMRobertaConfig

    from hybridfast.train.config import TrainConfig, check_against_model

    def config(length: int) -> TrainConfig:
        cfg = TrainConfig(source="c.toml")
        cfg.model.passage_max_length = length
        return cfg

    xlmr, bert = XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1), BertConfig(max_position_embeddings=512)
    check_against_model(config(512), xlmr)
    check_against_model(config(512), bert)
    with pytest.raises(ConfigError, match=r"model\.passage_max_length: 513 .* 512 positions"):
        check_against_model(config(513), xlmr)
    with pytest.raises(ConfigError, match=r"model\.passage_max_length: 513 .* 512 positions \(max_position_embeddings "
                                          r"512\); set it to at most 512"):
        check_against_model(config(513), bert)


def test_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nsteps = 1\n[sampling]\nalpha = 2.0\n")
    app = typer.Typer()
    app.command()(train_command)
    result = CliRunner().invoke(app, ["--config", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "sampling.alpha" in lines[0] and "Traceback" not in result.output


def test_languages_by_any_code_or_name_become_the_data_codes() -> None:
    from hybridfast.train.config import parse_config

    config = parse_config({"data": {"languages": ["deu", "German", "zh", "en"]},
                           "sampling": {"language_weights": {"deu": 2.0, "English": 1.0}}, "train": {"steps": 1}})
    assert config.data.languages == ["de", "zh", "en"]
    assert config.sampling.language_weights == {"de": 2.0, "en": 1.0}
    with pytest.raises(ConfigError, match=r"data\.languages: unknown language code 'xx1'.*'deu'"):
        parse_config({"data": {"languages": ["xx1"]}, "train": {"steps": 1}})
    with pytest.raises(ConfigError, match=r"sampling\.language_weights: unknown language"):
        parse_config({"sampling": {"language_weights": {"klingon-ish": 1.0}}, "train": {"steps": 1}})
