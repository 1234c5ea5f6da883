"""`hybridfast bench train`: one training step on one device, hybridfast against sentence-transformers.

Every variant trains the same weights on the same (query, passage) batches with AdamW, bf16 autocast on a GPU and
fp32 on the CPU; a step is forward, loss, backward and optimizer step, inputs already tokenized:

- ``hybridfast-cached``: `ContrastiveDualEncoder` with `embed_chunk_size` (chunked embedding under activation
  checkpointing, `train/step.py`), padding-free encoder calls where the stack allows, the fused loss;
- ``hybridfast-plain``: the same without chunking (every activation kept);
- ``hybridfast-naive``: plain, with the naive loss (materialized logits) — what the fused kernel saves;
- ``st-mnrl`` / ``st-cached-mnrl``: sentence-transformers' MultipleNegativesRankingLoss and
  CachedMultipleNegativesRankingLoss (``mini_batch_size`` = the same chunk size) on a `SentenceTransformer` of the
  same checkpoint, stepped as `SentenceTransformerTrainer` steps it (the model prepared by accelerate, so its
  forward runs under autocast, the loss outside it; one `backward` call);
- ``st-hybridfast`` / ``st-hybridfast-cached``: the losses of `hybridfast.integrations.sentence_transformers` in
  that same sentence-transformers step, when the integration is importable.

The global batch doubles from `start_batch` until every variant ran out of memory or the cap is reached; a variant
that runs out of memory is not tried at larger batches. Per variant and batch: the median of `steps` timed steps
after one warm-up step, pairs/s, real (non-padding) tokens/s, peak device memory (the CUDA allocator's peak over
warm-up and timed steps, weights and optimizer state included), the loss, and ratios to the sentence-transformers
variants measured at the same batch in the same run. On the CPU memory is not reported: the process's RSS keeps
what earlier variants freed, so one process cannot tell the variants' peaks apart.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer

from hybridfast.benchmarking import SHAPES as RANDOM_SHAPES
from hybridfast.benchmarking import (
    PeakMemory,
    environment,
    find_data_root,
    random_checkpoint,
    synchronize,
    write_result_files,
)
from hybridfast.errors import HybridfastError

HYBRIDFAST_VARIANTS = ("hybridfast-cached", "hybridfast-plain", "hybridfast-naive")
ST_VARIANTS = ("st-mnrl", "st-cached-mnrl")
INTEGRATION_VARIANTS = ("st-hybridfast", "st-hybridfast-cached")
VARIANTS = HYBRIDFAST_VARIANTS + ST_VARIANTS + INTEGRATION_VARIANTS
BASELINES = ST_VARIANTS
DATASETS = ("xquad", "scifact")
SHAPES = tuple(RANDOM_SHAPES)


@dataclass
class TrainBenchConfig:
    """What `hybridfast bench train` runs; see the command's --help."""

    model: str | None = None
    random_shape: str | None = None
    dataset: str = "xquad"
    data_dir: Path | None = None
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    start_batch: int | None = None
    max_batch: int | None = None
    steps: int | None = None
    chunk_size: int | None = None
    query_max_length: int = 64
    passage_max_length: int = 256
    temperature: float = 0.05
    padding_free: bool | None = None
    device: str | None = None
    out_dir: Path = Path("benchmarks/results")
    time_budget_s: float = 0.0
    seed: int = 0
    tag: str = ""

    def check(self) -> None:
        if (self.model is None) == (self.random_shape is None):
            raise HybridfastError("give exactly one of --model and --random-shape")
        if self.random_shape is not None and self.random_shape not in SHAPES:
            raise HybridfastError(f"--random-shape must be one of {', '.join(SHAPES)}, not {self.random_shape!r}")
        if self.dataset not in DATASETS:
            raise HybridfastError(f"--dataset must be one of {', '.join(DATASETS)}, not {self.dataset!r}")
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown or not self.variants:
            raise HybridfastError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
        for name in ("start_batch", "max_batch", "steps", "chunk_size", "query_max_length", "passage_max_length"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise HybridfastError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_batch is not None and self.start_batch is not None and self.max_batch < self.start_batch:
            raise HybridfastError(f"--max-batch ({self.max_batch}) is below --start-batch ({self.start_batch})")
        if not self.temperature > 0:
            raise HybridfastError(f"--temperature must be positive, not {self.temperature}")

    def for_device(self, device_type: str) -> TrainBenchConfig:
        """Unset sizes take the device's defaults: batches 256 ... 65,536, 3 timed steps and chunks of 512 texts on a
        GPU; 32 ... 64, 2 steps and chunks of 16 on the CPU, where one step of 64 pairs of real-length text takes
        about a second even on the tiny model (the CPU run is a smoke run: it finishes in about a minute)."""
        gpu = device_type == "cuda"
        defaults = {"start_batch": 256 if gpu else 32, "max_batch": 65536 if gpu else 64, "steps": 3 if gpu else 2,
                    "chunk_size": 512 if gpu else 16}
        resolved = dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})
        if resolved.max_batch < resolved.start_batch:
            raise HybridfastError(f"--max-batch ({resolved.max_batch}) is below --start-batch ({resolved.start_batch})")
        return resolved


# --------------------------------------------------------------------------- inputs


def training_pairs(root: Path, dataset: str) -> list[tuple[str, str]]:
    """(query, passage) pairs with real lengths: XQuAD questions and their paragraphs in all 12 languages, or BEIR
    SciFact queries and their relevant documents (train and test qrels)."""
    if dataset == "xquad":
        from hybridfast.data import load_xquad

        return [(record.query, record.passage) for record in load_xquad(root / "xquad")]
    from hybridfast.data import beir_splits, load_beir_corpus, load_beir_qrels, load_beir_queries

    directory = root / "beir-scifact"
    corpus, queries = load_beir_corpus(directory), load_beir_queries(directory)
    pairs = []
    for split in beir_splits(directory):
        for qid, docs in load_beir_qrels(directory, split).items():
            for doc_id, grade in docs.items():
                if grade > 0 and qid in queries and doc_id in corpus:
                    title, text = corpus[doc_id]
                    pairs.append((queries[qid], (title + " " + text).strip()))
    return pairs


def sample_batch(pairs: list[tuple[str, str]], size: int, seed: int) -> tuple[list[str], list[str]]:
    """`size` pairs drawn with a seed: without replacement while the data lasts, then with replacement."""
    import numpy as np

    rng = np.random.default_rng(seed)
    index = rng.permutation(len(pairs)) if size <= len(pairs) else rng.integers(0, len(pairs), size=size)
    chosen = [pairs[i] for i in index[:size]]
    return [q for q, _ in chosen], [p for _, p in chosen]


# --------------------------------------------------------------------------- measurement


@dataclass
class Runner:
    """One variant ready to train: `prepare(queries, passages)` tokenizes a batch (untimed) and returns a step
    function; `reset()` restores the initial weights and a fresh optimizer."""

    name: str
    prepare: Callable[[list[str], list[str]], tuple[Callable[[], float], int]]
    reset: Callable[[], None]
    close: Callable[[], None]


def measure(
    runner: Runner, queries: list[str], passages: list[str], steps: int, device: Any, seed: int = 0
) -> dict[str, Any]:
    """Warm-up step plus `steps` timed steps of one variant on one batch, from the initial weights."""
    import torch

    runner.reset()
    torch.manual_seed(seed)
    step, real_tokens = runner.prepare(queries, passages)
    times: list[float] = []
    with PeakMemory(device) as peak:
        first_loss = loss = step()
        for _ in range(steps):
            synchronize(device)
            start = time.perf_counter()
            loss = step()
            synchronize(device)
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "status": "ok",
        "step_s": times,
        "median_step_s": median,
        "pairs_per_s": len(queries) / median,
        "real_tokens": real_tokens,
        "real_tokens_per_s": real_tokens / median,
        "peak_memory_bytes": peak.peak_bytes if device.type == "cuda" else None,
        "first_loss": first_loss,
        "loss": loss,
    }


def _free(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- variants


def _autocast(device: Any) -> Any:
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _initial_state(module: Any) -> dict[str, Any]:
    """A CPU copy of the weights the variant starts every measurement from (the same checkpoint for all)."""
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in module.state_dict().items()}


def _hybridfast_runner(name: str, model_dir: str, device: Any, config: TrainBenchConfig) -> Runner:
    import torch

    from hybridfast.encoder import FusedEncoder
    from hybridfast.train.collate import TrainingInputs
    from hybridfast.train.step import ContrastiveDualEncoder, contrastive_step
    from hybridfast.varlen import flash_varlen_available

    encoder = FusedEncoder.from_pretrained(model_dir, device=device)
    encoder.config.query_max_length = config.query_max_length
    encoder.config.passage_max_length = config.passage_max_length
    packed = config.padding_free
    if packed is None:
        packed = flash_varlen_available(device, torch.bfloat16) and not encoder.packing_unsupported()
    module = ContrastiveDualEncoder(
        encoder, config.temperature, learn_temperature=False,
        embed_chunk_size=config.chunk_size if name == "hybridfast-cached" else 0, padding_free=packed,
    ).train()
    backend = "naive" if name == "hybridfast-naive" else ("triton" if device.type == "cuda" else "torch")
    initial = _initial_state(encoder.model)
    state: dict[str, Any] = {}

    def reset() -> None:
        encoder.model.load_state_dict(initial)
        state["optimizer"] = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5)

    def prepare(queries: list[str], passages: list[str]) -> tuple[Callable[[], float], int]:
        groups = torch.arange(len(queries))
        inputs = TrainingInputs(encoder.token_ids(queries, "query"), encoder.token_ids(passages, "passage"),
                                groups, groups)
        optimizer = state["optimizer"]

        def step() -> float:
            with _autocast(device):
                loss = contrastive_step(module, inputs, use_groups=False, loss_backend=backend).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return float(loss.detach())

        return step, inputs.num_tokens

    def close() -> None:
        state.clear()

    runner = Runner(name, prepare, reset, close)
    runner.layout = "packed" if packed else "padded"  # type: ignore[attr-defined]
    return runner


def _st_loss(name: str, model: Any, config: TrainBenchConfig) -> Any:
    scale = 1.0 / config.temperature
    if name in ST_VARIANTS:
        try:
            from sentence_transformers.sentence_transformer import losses
        except ImportError:  # sentence-transformers < 6
            from sentence_transformers import losses

        if name == "st-mnrl":
            return losses.MultipleNegativesRankingLoss(model, scale=scale)
        return losses.CachedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=config.chunk_size)
    from hybridfast.integrations import sentence_transformers as ours

    if name == "st-hybridfast":
        return ours.FusedMultipleNegativesRankingLoss(model, scale=scale)
    return ours.CachedFusedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=config.chunk_size)


def _st_runner(name: str, model_dir: str, device: Any, config: TrainBenchConfig) -> Runner:
    """A sentence-transformers training step: the model prepared by accelerate (autocast forward, as
    `SentenceTransformerTrainer` does it), the loss called outside autocast, one backward, AdamW."""
    import torch
    from accelerate import Accelerator
    from sentence_transformers import SentenceTransformer

    from hybridfast.encoder import EncoderConfig

    prefixes = EncoderConfig.load(model_dir) or EncoderConfig()
    model = SentenceTransformer(model_dir, device=str(device)).train()  # dropout on, as the trainer sets it
    transformer = model[0].auto_model
    initial = _initial_state(transformer)
    accelerator = Accelerator(mixed_precision="bf16" if device.type == "cuda" else "no", cpu=device.type == "cpu")
    prepared = accelerator.prepare_model(model)
    loss_fn = _st_loss(name, prepared, config)
    state: dict[str, Any] = {}

    def reset() -> None:
        transformer.load_state_dict(initial)
        state["optimizer"] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def tokenize(texts: list[str], prefix: str, limit: int) -> dict[str, Any]:
        model.max_seq_length = limit
        preprocess = getattr(model, "preprocess", None) or model.tokenize  # `tokenize` before sentence-transformers 6
        features = preprocess([prefix + text for text in texts])
        return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in features.items()}

    def prepare(queries: list[str], passages: list[str]) -> tuple[Callable[[], float], int]:
        features = [tokenize(queries, prefixes.query_prefix, config.query_max_length),
                    tokenize(passages, prefixes.passage_prefix, config.passage_max_length)]
        real_tokens = int(sum(int(f["attention_mask"].sum()) for f in features))
        labels = torch.zeros(len(queries), device=device)
        optimizer = state["optimizer"]

        def step() -> float:
            loss = loss_fn(features, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return float(loss.detach())

        return step, real_tokens

    def close() -> None:
        state.clear()

    runner = Runner(name, prepare, reset, close)
    runner.layout = "padded"  # type: ignore[attr-defined]
    return runner


def _available(name: str) -> str:
    """Why a variant cannot run here, or ""."""
    import importlib.util

    if name in ST_VARIANTS + INTEGRATION_VARIANTS and importlib.util.find_spec("sentence_transformers") is None:
        return "sentence-transformers is not installed"
    if name in INTEGRATION_VARIANTS:
        try:
            from hybridfast.integrations import sentence_transformers as ours

            ours.FusedMultipleNegativesRankingLoss  # noqa: B018
        except (ImportError, AttributeError) as err:
            return f"hybridfast.integrations.sentence_transformers is not available: {err}"
    return ""


# --------------------------------------------------------------------------- the run


def _ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """At every batch: each variant's pairs/s and peak memory over each baseline's, same run."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    by_batch: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row["status"] == "ok":
            by_batch.setdefault(row["batch"], {})[row["variant"]] = row
    for batch, variants in sorted(by_batch.items()):
        for name, row in variants.items():
            for base in BASELINES:
                if base in variants and base != name:
                    memory, base_memory = row["peak_memory_bytes"], variants[base]["peak_memory_bytes"]
                    out.setdefault(str(batch), {}).setdefault(name, {})[f"vs_{base}"] = {
                        "pairs_per_s": row["pairs_per_s"] / variants[base]["pairs_per_s"],
                        "peak_memory": memory / base_memory if memory and base_memory else None,
                    }
    return out


def _largest(rows: list[dict[str, Any]]) -> dict[str, int | None]:
    largest: dict[str, int | None] = {}
    for row in rows:
        current = largest.get(row["variant"])
        if row["status"] == "ok":
            largest[row["variant"]] = max(current or 0, row["batch"])
        else:
            largest.setdefault(row["variant"], None)
    return largest


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets read off the measured rows (a GPU run is needed for them to mean anything)."""
    largest, ratios = result["largest_batch"], result["ratios"]
    out: dict[str, Any] = {}
    cached_fit = largest.get("st-cached-mnrl")
    if cached_fit is not None:
        ratio = ratios.get(str(cached_fit), {}).get("hybridfast-cached", {}).get("vs_st-cached-mnrl")
        out["cached_at_st_cached_largest"] = {
            "batch": cached_fit, "pairs_per_s_ratio": ratio and ratio["pairs_per_s"],
            "peak_memory_ratio": ratio and ratio["peak_memory"], "target": "≥ 1.5× pairs/s at ≤ 0.5× memory",
            "met": bool(ratio and ratio["peak_memory"] is not None and ratio["pairs_per_s"] >= 1.5
                        and ratio["peak_memory"] <= 0.5),
        }
    plain = ratios.get("1024", {}).get("hybridfast-plain", {}).get("vs_st-mnrl")
    out["plain_at_1024"] = {"pairs_per_s_ratio": plain and plain["pairs_per_s"], "target": "≥ 1.3× ST MNRL",
                            "met": bool(plain and plain["pairs_per_s"] >= 1.3)}
    out["cached_reaches_max_batch"] = largest.get("hybridfast-cached") == result["config"]["max_batch"]
    return out


def _model_dir(config: TrainBenchConfig, scratch: Path) -> tuple[str, str, str]:
    """The checkpoint the variants load, its label and its tokenizer."""
    if config.model is not None:
        from hybridfast.models.resolve import resolve_model

        if config.model == "default":
            from hybridfast.models.resolve import ensure_default_model

            return str(ensure_default_model()), "multilingual-e5-small", "multilingual-e5-small"
        return str(resolve_model(config.model)), Path(config.model).name, "the checkpoint's"
    directory, tokenizer = random_checkpoint(config.random_shape, scratch / config.random_shape)
    return str(directory), f"random-{config.random_shape}", tokenizer


def run_train_benchmark(config: TrainBenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every variant at doubling batch sizes; write JSON and PNG into `config.out_dir`; return the result."""
    import tempfile

    import torch

    from hybridfast.encoder import _default_device

    config.check()
    device = torch.device(config.device) if config.device else _default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HybridfastError("--device cuda but CUDA is not available")
    config = config.for_device(device.type)
    started = time.perf_counter()
    pairs = training_pairs(find_data_root(config.data_dir), config.dataset)
    rows: list[dict[str, Any]] = []
    skipped = {name: reason for name in config.variants if (reason := _available(name))}
    with tempfile.TemporaryDirectory() as scratch:
        model_dir, label, tokenizer = _model_dir(config, Path(scratch))
        makers = {name: (_st_runner if name.startswith("st-") else _hybridfast_runner)
                  for name in config.variants if name not in skipped}
        runners: dict[str, Runner] = {}
        active = list(makers)
        layouts: dict[str, str] = {}
        batch = config.start_batch
        while active and batch <= config.max_batch:
            queries, passages = sample_batch(pairs, batch, config.seed)
            for name in list(active):
                row: dict[str, Any] = {"variant": name, "batch": batch}
                if config.time_budget_s and time.perf_counter() - started > config.time_budget_s:
                    row["status"] = "skipped (time budget)"
                    rows.append(row)
                    active.remove(name)
                    continue
                try:
                    if name not in runners:
                        runners[name] = makers[name](name, model_dir, device, config)
                        layouts[name] = getattr(runners[name], "layout", "")
                    row.update(measure(runners[name], queries, passages, config.steps, device, config.seed))
                except torch.OutOfMemoryError:
                    row["status"] = "oom"
                    active.remove(name)
                    runners.pop(name).close()
                except Exception as err:  # a variant that fails is recorded and the run goes on
                    row.update(status="error", error=f"{type(err).__name__}: {err}")
                    active.remove(name)
                    if name in runners:
                        runners.pop(name).close()
                _free(device)
                rows.append(row)
                log(_row_line(row))
            batch *= 2
        for runner in runners.values():
            runner.close()
    result: dict[str, Any] = {
        "benchmark": "train",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": label,
        "tokenizer": tokenizer,
        "dataset": config.dataset,
        "device": str(device),
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "layouts": layouts,
        "skipped_variants": skipped,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "environment": environment(device),
        "rows": rows,
        "largest_batch": _largest(rows),
        "ratios": _ratios(rows),
        "elapsed_s": time.perf_counter() - started,
    }
    result["targets"] = targets(result)
    result["files"] = write_results(result, config.out_dir, config.tag)
    return result


def _row_line(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"{row['variant']:>22} {row['batch']:>6}: {row['status']} {row.get('error', '')}"
    return (f"{row['variant']:>22} {row['batch']:>6}: {1000 * row['median_step_s']:9.1f} ms/step "
            f"{row['pairs_per_s']:9.0f} pairs/s {row['real_tokens_per_s']:11.0f} tokens/s "
            f"peak {_gib(row['peak_memory_bytes'])} GiB")


def _gib(nbytes: int | None) -> str:
    return "–" if nbytes is None else f"{nbytes / 2**30:.2f}"


def write_results(result: dict[str, Any], out_dir: Path, tag: str = "") -> dict[str, str]:
    """Write `bench_train_<device>_<model>[_tag].json` and `.png`; return their paths."""
    device = str(result["device"]).split(":")[0]
    stem = f"bench_train_{device}_{result['model']}" + (f"_{tag}" if tag else "")
    return write_result_files(result, out_dir, stem, plot_results)


def plot_results(result: dict[str, Any], path: Path) -> None:
    """Panels over the global batch (log scale): peak device memory (CUDA runs) and pairs/s per variant; a
    variant's line ends where it ran out of memory (marked ×)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_memory = any(r.get("peak_memory_bytes") for r in result["rows"])
    fig, axes = plt.subplots(1, 2 if has_memory else 1, figsize=(11 if has_memory else 6, 4.2), squeeze=False)
    memory_ax, speed_ax = (axes[0][0], axes[0][1]) if has_memory else (None, axes[0][0])
    variants = list(dict.fromkeys(row["variant"] for row in result["rows"]))
    for name in variants:
        ok = [r for r in result["rows"] if r["variant"] == name and r["status"] == "ok"]
        failed = [r for r in result["rows"] if r["variant"] == name and r["status"] == "oom"]
        if not ok:
            continue
        batches = [r["batch"] for r in ok]
        if memory_ax is not None:
            memory_ax.plot(batches, [r["peak_memory_bytes"] / 2**30 for r in ok], marker="o", label=name)
        line = speed_ax.plot(batches, [r["pairs_per_s"] for r in ok], marker="o", label=name)[0]
        for r in failed:
            speed_ax.plot([r["batch"]], [ok[-1]["pairs_per_s"]], marker="x", color=line.get_color(), markersize=9)
    panels = [(speed_ax, "pairs / s")] + ([(memory_ax, "peak device memory (GiB)")] if memory_ax else [])
    for ax, ylabel in panels:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("global batch (pairs)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    speed_ax.legend(fontsize=8)
    hardware = result["environment"]["gpu"] or result["environment"]["cpu"]
    fig.suptitle(f"training step: {result['model']}, {result['dataset']}, {result['precision']}, {hardware}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_table(result: dict[str, Any]) -> str:
    """A Markdown table of every row plus the ratios and targets."""
    lines = ["| variant | batch | ms/step | pairs/s | real tokens/s | peak GiB | vs st-mnrl | vs st-cached-mnrl |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        if row["status"] != "ok":
            lines.append(f"| {row['variant']} | {row['batch']} | {row['status']} | | | | | |")
            continue
        ratio = result["ratios"].get(str(row["batch"]), {}).get(row["variant"], {})
        cells = []
        for base in BASELINES:
            r = ratio.get(f"vs_{base}")
            memory = "" if not r or r["peak_memory"] is None else f", {r['peak_memory']:.2f}× memory"
            cells.append(f"{r['pairs_per_s']:.2f}× speed{memory}" if r else "")
        lines.append(f"| {row['variant']} | {row['batch']} | {1000 * row['median_step_s']:.1f} | "
                     f"{row['pairs_per_s']:.0f} | {row['real_tokens_per_s']:.0f} | "
                     f"{_gib(row['peak_memory_bytes'])} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def bench_train_command(
    model: str = typer.Option(None, "--model", help="A checkpoint folder, hub id or 'default' (the offline "
                              "multilingual-e5-small)."),
    random_shape: str = typer.Option(None, "--random-shape", help="Random weights of a named shape instead, with "
                                     "e5's tokenizer: tiny (32 × 2 layers, CPU smoke runs), e5-small (384 × 12 "
                                     "layers) or xlmr-base (768 × 12 layers)."),
    dataset: str = typer.Option("xquad", "--dataset", help="Text lengths from: xquad (questions and paragraphs, "
                                "12 languages) or scifact (queries and documents)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Data root (default $HYBRIDFAST_DATA)."),
    variants: str = typer.Option(",".join(VARIANTS), "--variants", help="Comma-separated variants to compare."),
    start_batch: int = typer.Option(None, "--start-batch", help="First global batch (pairs); doubles each round. "
                                    "Default 256 on a GPU, 32 on the CPU."),
    max_batch: int = typer.Option(None, "--max-batch", help="Largest global batch tried. Default 65,536 on a GPU, "
                                  "64 on the CPU."),
    steps: int = typer.Option(None, "--steps", help="Timed steps per variant and batch, after one warm-up step. "
                              "Default 3 on a GPU, 2 on the CPU."),
    chunk_size: int = typer.Option(None, "--chunk-size", help="Texts per encoder call in the cached variants "
                                   "(hybridfast's embed_chunk_size, sentence-transformers' mini_batch_size). "
                                   "Default 512 on a GPU, 16 on the CPU."),
    query_max_length: int = typer.Option(64, "--query-max-length", help="Token limit of queries."),
    passage_max_length: int = typer.Option(256, "--passage-max-length", help="Token limit of passages."),
    padding_free: bool = typer.Option(None, "--padding-free/--padded", help="hybridfast variants' encoder calls: "
                                      "packed or padded (default: packed on CUDA where FlashAttention varlen runs)."),
    device: str = typer.Option(None, "--device", help="cuda or cpu (default: cuda when available)."),
    out_dir: Path = typer.Option(Path("benchmarks/results"), "--out-dir", help="Where the JSON and PNG go."),
    time_budget: float = typer.Option(0.0, "--time-budget", help="Seconds; measurements that would start later "
                                      "are recorded as skipped (0: no limit)."),
    tag: str = typer.Option("", "--tag", help="Suffix of the output file names."),
) -> None:
    """Benchmark one training step: hybridfast (cached, plain, naive loss) against sentence-transformers' MNRL
    and CachedMNRL on the same model, batches, AdamW and precision (bf16 autocast on a GPU, fp32 on the CPU).

    The global batch doubles from --start-batch until a variant runs out of memory or --max-batch; reports the
    median step time, pairs/s, real tokens/s, peak memory, the largest batch each variant fits and ratios measured
    in the same run. Example (GPU): hybridfast bench train --random-shape e5-small --max-batch 65536.
    """
    from hybridfast.errors import user_errors

    config = TrainBenchConfig(
        model=model, random_shape=random_shape, dataset=dataset, data_dir=data_dir,
        variants=[v.strip() for v in variants.split(",") if v.strip()], start_batch=start_batch,
        max_batch=max_batch, steps=steps, chunk_size=chunk_size, query_max_length=query_max_length,
        passage_max_length=passage_max_length, padding_free=padding_free, device=device, out_dir=out_dir,
        time_budget_s=time_budget, tag=tag,
    )
    with user_errors():
        result = run_train_benchmark(config, log=lambda line: typer.echo(line, err=True))
    typer.echo(summary_table(result))
    for name, reason in result["skipped_variants"].items():
        typer.echo(f"skipped {name}: {reason}")
    typer.echo(f"wrote {', '.join(result['files'].values())} in {result['elapsed_s']:.0f} s")
