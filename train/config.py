"""Training configuration: a TOML or YAML file, validated before any heavy work.

Sections and keys (every key optional; unknown keys are errors that name the key)::

    [model]     name, query_max_length, passage_max_length, gradient_checkpointing, freeze_embeddings
    [data]      dataset ("xquad" | "jsonl"), path, split ("train" | "eval" | "all"), eval_fraction,
                split_seed, languages
    [sampling]  alpha, alpha_schedule ("exact" | "bernoulli"), language_weights ("uniform" | "size" |
                {lang = weight}), batch_size, hard_negatives, allow_parallel_duplicates, pairs_per_qid
    [optim]     lr, weight_decay, warmup_steps, schedule ("linear" | "cosine" | "constant"),
                max_grad_norm, temperature, learn_temperature, symmetric
    [train]     steps, epochs, precision ("fp32" | "bf16" | "fp16"), deepspeed, output_dir, seed,
                resume ("auto" | "never" | a checkpoint dir), loss_backend, embed_chunk_size (texts per
                encoder call, 0 = off: the cached step of `hybridfast.train.step`), padding_free
                (true | false | "auto": packed varlen batches on CUDA in bf16/fp16)
    [log]       log_every, save_every, keep_last, eval_every, eval_hook ("module:function"),
                save_dtype ("float32" | "bfloat16": dtype of the saved model weights)

Paths: `data.path` resolves against the data root ($HYBRIDFAST_DATA or --data-dir), `train.output_dir`
against the working directory, `train.deepspeed` against the config file's folder, then the
working directory. `model.name` is a checkpoint folder, a hub id, or "default" (the offline
multilingual-e5-small).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridfast.errors import HybridfastError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ConfigError(HybridfastError, ValueError):
    """A training config is invalid; the message names the file and the offending key."""


@dataclass
class ModelConfig:
    name: str = "default"
    query_max_length: int = 32
    passage_max_length: int = 128
    gradient_checkpointing: bool = False
    freeze_embeddings: bool = False


@dataclass
class DataConfig:
    dataset: str = "xquad"
    path: str = "xquad"
    split: str = "train"
    eval_fraction: float = 0.2
    split_seed: int = 0
    languages: list[str] = field(default_factory=list)


@dataclass
class SamplingConfig:
    alpha: float = 0.5
    # "exact": floor(α·S + 1/2) of the run's S steps are monolingual, in a seeded random order;
    # "bernoulli": an independent draw per step (see hybridfast.sampling).
    alpha_schedule: str = "exact"
    language_weights: str | dict[str, float] = "uniform"
    batch_size: int = 100
    hard_negatives: int = 0
    allow_parallel_duplicates: bool = False
    pairs_per_qid: int = 2


@dataclass
class OptimConfig:
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_steps: int = 0
    schedule: str = "linear"
    max_grad_norm: float = 1.0
    temperature: float = 0.05
    learn_temperature: bool = False
    symmetric: bool = False


@dataclass
class RunConfig:
    steps: int = 0
    epochs: int = 0
    precision: str = "fp32"
    deepspeed: str = ""
    output_dir: str = "runs/hybridfast"
    seed: int = 0
    resume: str = "auto"
    loss_backend: str = "auto"
    embed_chunk_size: int = 0
    padding_free: bool | str = "auto"


@dataclass
class LogConfig:
    log_every: int = 1
    save_every: int = 0
    keep_last: int = 2
    eval_every: int = 0
    eval_hook: str = ""
    save_dtype: str = "float32"


@dataclass
class TrainConfig:
    """A validated training config; `source` is the file it came from."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: str = "<config>"

    def to_dict(self) -> dict[str, Any]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def deepspeed_path(self) -> Path | None:
        """The DeepSpeed JSON: relative to the config file's folder first, then the working directory."""
        if not self.train.deepspeed:
            return None
        path = Path(self.train.deepspeed).expanduser()
        if not path.is_absolute():
            beside = Path(self.source).parent / path
            path = beside if beside.is_file() else Path.cwd() / path
        return path


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "sampling": SamplingConfig,
    "optim": OptimConfig,
    "train": RunConfig,
    "log": LogConfig,
}

ALPHA_SCHEDULES = ("exact", "bernoulli")
PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("linear", "cosine", "constant")
DATASETS = ("xquad", "jsonl")
SPLITS = ("train", "eval", "all")
SAVE_DTYPES = ("float32", "bfloat16")


def _read(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: invalid TOML: {err}") from err
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ConfigError(f"{where}: invalid YAML: {getattr(err, 'problem', err)}") from err
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        return raw
    raise ConfigError(f"{path}: config files are .toml, .yaml or .yml")


def _check_type(where: str, value: Any, annotation: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: expected {expected}, got {value!r}")

    if annotation == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if annotation == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if annotation == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if annotation == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return list(value)
    if annotation == "bool | str":
        if isinstance(value, bool) or value == "auto":
            return value
        raise bad('true, false or "auto"')
    if annotation == "str | dict[str, float]":
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) for k, v in value.items()
        ):
            return {k: float(v) for k, v in value.items()}
        raise bad('"uniform", "size" or a table language = weight')
    raise AssertionError(f"unhandled annotation {annotation}")


def parse_config(raw: Mapping[str, Any], source: str = "<config>") -> TrainConfig:
    """Build and validate a `TrainConfig` from nested mappings (as read from TOML / YAML)."""
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{name}]; known sections: {', '.join(SECTIONS)}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table of keys")
        cls = SECTIONS[name]
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, item in value.items():
            if key not in known:
                raise ConfigError(f"{source}: unknown key {name}.{key}; known keys in [{name}]: {', '.join(known)}")
            values[key] = _check_type(f"{source}: {name}.{key}", item, str(known[key].type))
        sections[name] = cls(**values)
    config = TrainConfig(**sections, source=source)
    validate(config)
    return config


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read, merge `overrides` ({"section.key": value}) into, and validate a TOML / YAML config."""
    path = Path(path)
    raw = {name: dict(section) if isinstance(section, Mapping) else section for name, section in _read(path).items()}
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        raw.setdefault(section, {})[key] = value
    return parse_config(raw, source=str(path))


def validate(config: TrainConfig) -> None:
    """Range and choice checks that need no data or model (those come in `hybridfast.train.loop` and
    `check_against_model`)."""
    s = config.source

    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{s}: {key}: {message}")

    m, d, smp, o, t, lg = config.model, config.data, config.sampling, config.optim, config.train, config.log
    if not m.name:
        fail("model.name", "empty; give a checkpoint folder, a hub id or 'default'")
    for key in ("query_max_length", "passage_max_length"):
        if getattr(m, key) < 2:
            fail(f"model.{key}", f"must be at least 2, not {getattr(m, key)}")
    if d.dataset not in DATASETS:
        fail("data.dataset", f"must be one of {', '.join(DATASETS)}, not {d.dataset!r}")
    if d.split not in SPLITS:
        fail("data.split", f"must be one of {', '.join(SPLITS)}, not {d.split!r}")
    if not 0.0 < d.eval_fraction < 1.0:
        fail("data.eval_fraction", f"must be in (0, 1), not {d.eval_fraction}")
    if not 0.0 <= smp.alpha <= 1.0 or math.isnan(smp.alpha):
        fail("sampling.alpha", f"must be in [0, 1], not {smp.alpha}")
    if smp.alpha_schedule not in ALPHA_SCHEDULES:
        fail("sampling.alpha_schedule", f"must be one of {', '.join(ALPHA_SCHEDULES)}, not {smp.alpha_schedule!r}")
    if isinstance(smp.language_weights, str) and smp.language_weights not in ("uniform", "size"):
        fail("sampling.language_weights", f"must be 'uniform', 'size' or a table, not {smp.language_weights!r}")
    # Languages by any code or name (de, deu, German), kept as the preferred code the data loaders produce.
    d.languages = list(dict.fromkeys(_language(code, f"{s}: data.languages") for code in d.languages))
    if isinstance(smp.language_weights, dict):
        smp.language_weights = {_language(code, f"{s}: sampling.language_weights"): weight
                                for code, weight in smp.language_weights.items()}
    if smp.batch_size < 1:
        fail("sampling.batch_size", f"must be at least 1, not {smp.batch_size}")
    if smp.hard_negatives < 0:
        fail("sampling.hard_negatives", f"must be >= 0, not {smp.hard_negatives}")
    if smp.pairs_per_qid < 1:
        fail("sampling.pairs_per_qid", f"must be at least 1, not {smp.pairs_per_qid}")
    if not o.lr > 0 or not math.isfinite(o.lr):
        fail("optim.lr", f"must be a positive number, not {o.lr}")
    if not o.weight_decay >= 0 or not math.isfinite(o.weight_decay):
        fail("optim.weight_decay", f"must be a finite number >= 0, not {o.weight_decay}")
    if o.warmup_steps < 0:
        fail("optim.warmup_steps", f"must be >= 0, not {o.warmup_steps}")
    if o.schedule not in SCHEDULES:
        fail("optim.schedule", f"must be one of {', '.join(SCHEDULES)}, not {o.schedule!r}")
    if not o.max_grad_norm >= 0 or not math.isfinite(o.max_grad_norm):
        fail("optim.max_grad_norm", f"must be a finite number >= 0 (0 turns clipping off), not {o.max_grad_norm}")
    if not o.temperature > 0 or not math.isfinite(o.temperature):
        fail("optim.temperature", f"must be a positive number, not {o.temperature}")
    if (t.steps > 0) == (t.epochs > 0) or t.steps < 0 or t.epochs < 0:
        fail("train.steps", f"give exactly one of train.steps or train.epochs as a positive number "
                            f"(steps = {t.steps}, epochs = {t.epochs})")
    if t.precision not in PRECISIONS:
        fail("train.precision", f"must be one of {', '.join(PRECISIONS)}, not {t.precision!r}")
    if not t.output_dir:
        fail("train.output_dir", "empty")
    if t.loss_backend not in ("auto", "torch", "triton", "naive"):
        fail("train.loss_backend", f"must be auto, torch, triton or naive, not {t.loss_backend!r}")
    if t.embed_chunk_size < 0:
        fail("train.embed_chunk_size", f"must be 0 (off) or a positive number of texts, not {t.embed_chunk_size}")
    if t.embed_chunk_size and m.gradient_checkpointing:
        fail("train.embed_chunk_size", "already recomputes every chunk in the backward; turn "
                                       "model.gradient_checkpointing off")
    ds = config.deepspeed_path()
    if ds is not None and not ds.is_file():
        fail("train.deepspeed", f"{config.train.deepspeed}: file not found (looked beside the config and in the "
                                "working directory)")
    for key in ("log_every", "save_every", "eval_every", "keep_last"):
        if getattr(lg, key) < 0:
            fail(f"log.{key}", f"must be >= 0, not {getattr(lg, key)}")
    if lg.log_every == 0:
        fail("log.log_every", "must be at least 1")
    if lg.keep_last == 0:
        fail("log.keep_last", "must be at least 1 (the last checkpoint is always kept)")
    if lg.save_dtype not in SAVE_DTYPES:
        fail("log.save_dtype", f"must be one of {', '.join(SAVE_DTYPES)}, not {lg.save_dtype!r}")
    if lg.eval_hook:
        load_hook(lg.eval_hook, s)


def _language(code: str, where: str) -> str:
    from hybridfast.data.languages import UnknownLanguageError, canonical_language

    try:
        return canonical_language(code)
    except UnknownLanguageError as err:
        raise ConfigError(f"{where}: {err}") from None


def load_hook(spec: str, source: str = "<config>") -> Callable[..., Any]:
    """Import the evaluation hook "package.module:function" named by `log.eval_hook`.

    The hook is called as `hook(encoder, step=..., output_dir=...)` on the main process and may
    return a mapping of metric name -> number, logged with the step.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{source}: log.eval_hook: expected 'package.module:function', not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{source}: log.eval_hook: cannot import {module_name!r}: {err}") from err
    hook = getattr(module, attr, None)
    if not callable(hook):
        raise ConfigError(f"{source}: log.eval_hook: {module_name!r} has no function {attr!r}")
    check_hook_signature(hook, f"{source}: log.eval_hook: {spec}")
    return hook


def check_hook_signature(hook: Callable[..., Any], where: str) -> None:
    """Raise `ConfigError` unless `hook(encoder, step=..., output_dir=...)` binds to the hook's parameters,
    so a wrong hook fails before training, not after the first evaluation interval."""
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):  # a builtin or extension callable without introspectable parameters
        return
    try:
        signature.bind(object(), step=0, output_dir=Path("."))
    except TypeError as err:
        raise ConfigError(f"{where}: takes {signature}, but it is called as hook(encoder, step=..., "
                          f"output_dir=...): {err}") from None


def check_against_model(config: TrainConfig, model_config: Any) -> None:
    """Checks that need the loaded model's config (a `transformers.PretrainedConfig`).

    The max lengths must fit the position table: BERT numbers positions 0..L-1, so it takes
    `max_position_embeddings` tokens; XLM-R / RoBERTa number them from padding_idx + 1 = 2, so 514
    rows hold 512 tokens. Longer inputs would index past the table at the first step.
    """
    from hybridfast.varlen import packed_position_offset

    rows = getattr(model_config, "max_position_embeddings", None)
    if not isinstance(rows, int):
        return
    offset = packed_position_offset(model_config) or 0
    limit = rows - offset
    for key in ("query_max_length", "passage_max_length"):
        value = getattr(config.model, key)
        if value > limit:
            kind = getattr(model_config, "model_type", "the model")
            reserved = f" minus {offset} reserved by {kind}'s position numbering" if offset else ""
            raise ConfigError(
                f"{config.source}: model.{key}: {value} is more than this model's {limit} positions "
                f"(max_position_embeddings {rows}{reserved}); set it to at most {limit}"
            )
