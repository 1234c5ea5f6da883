"""`hybridfast bench encode`: the lean encode path against unfused baselines, on real text.

Every variant embeds the same texts (BEIR SciFact documents, XQuAD-R sentences) as passages with
the same checkpoint, device, dtype and token limit:

- ``lean``: :meth:`FusedEncoder.encode` (token-budget batches, length sorting, padding-free on
  CUDA when available, fused pooling); ``lean-padded`` / ``lean-packed`` force the batch layout;
  ``lean-int8`` (``--int8``, CPU) and ``lean-compile`` (``--compile``) add those options, and
  ``lean-int8-compile`` both;
- ``unfused``: :class:`hybridfast.serve.baseline.UnfusedEncoder` (HF AutoModel, fixed-size
  padded batches in input order, torch pooling);
- ``sentence-transformers``: ``SentenceTransformer.encode`` on the same weights (sorts by
  character length, padded batches), when the package is installed.

Per dataset: one warm-up pass per variant (its wall time is reported: compilation shows there),
`repeats` rounds of one timed pass per variant (interleaved, medians reported), and one latency
pass per variant that synchronizes after every batch. Reported: sequences/s, real (non-padding) tokens/s and tokens per process-CPU-second
(robust to other load on a shared CPU), p50/p99 batch latency, peak memory (CUDA allocator peak, or sampled
process RSS growth on CPU), the minimum cosine to the unfused baseline's embeddings, and
speed-ups over the baselines measured in the same run. A variant that fails is recorded with
its error and the run goes on.

Large-corpus mode (``corpus_size``): each dataset's texts re-sampled with replacement (seeded) to that many
passages, so fixed costs stop dominating (SciFact's 5,183 documents are 0.36 M tokens, a fraction of a second on a
GPU). The warm-up then covers the first ``CORPUS_WARMUP_TEXTS`` texts and the per-batch latency pass is skipped
(it would double the run). With ``breakdown`` the lean variants also run one separate, serial pass (over the first
``BREAKDOWN_MAX_TEXTS`` texts) that times each stage apart (tokenization, batch planning, host batch assembly, host-to-device copy, model forward, pooling,
device-to-host copy), synchronizing the GPU at every stage boundary; the throughput passes never synchronize
mid-stream, so the two are reported apart.
"""

from __future__ import annotations

import gc
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hybridfast.benchmarking import (
    SHAPES,
    PeakMemory,
    environment,
    find_data_root,
    random_checkpoint,
    write_result_files,
)
from hybridfast.benchmarking import synchronize as _sync
from hybridfast.errors import HybridfastError

BASELINES = ("unfused", "sentence-transformers")
# Texts of the warm-up pass in large-corpus mode: enough for every kernel and batch shape class to compile.
CORPUS_WARMUP_TEXTS = 2048
BREAKDOWN_STAGES = ("tokenize", "plan", "assemble", "h2d", "model", "pool", "d2h")
# The breakdown pass covers at most this many texts (the first ones): its stage shares and per-stage rates are
# steady long before that, and a serial pass over a 100k-passage corpus would cost as much as a throughput pass.
BREAKDOWN_MAX_TEXTS = 20_000
KNOWN_VARIANTS = ("lean", "lean-padded", "lean-packed", "unfused", "sentence-transformers")
DATASETS = ("scifact", "xquad-r")



@dataclass
class BenchConfig:
    """What `hybridfast bench encode` runs; see the command's --help."""

    model: str | None = None
    random_shape: str | None = None
    data_dir: Path | None = None
    datasets: list[str] = field(default_factory=lambda: list(DATASETS))
    max_texts: int = 1000
    max_length: int = 256
    device: str | None = None
    dtype: str = "float32"
    int8: bool = False
    compile: bool = False
    batch_size: int = 32
    max_batch_tokens: int | None = None
    repeats: int = 3
    variants: list[str] = field(default_factory=lambda: ["lean", "unfused", "sentence-transformers"])
    out_dir: Path = Path("benchmarks/results")
    tag: str = ""
    corpus_size: int | None = None
    baseline_texts: int | None = None
    breakdown: bool = False
    seed: int = 0

    def check(self) -> None:
        if (self.model is None) == (self.random_shape is None):
            raise HybridfastError("give exactly one of --model and --random-shape")
        if self.random_shape is not None and self.random_shape not in SHAPES:
            raise HybridfastError(f"--random-shape must be one of {', '.join(SHAPES)}, not {self.random_shape!r}")
        unknown = [d for d in self.datasets if d not in DATASETS]
        if unknown or not self.datasets:
            raise HybridfastError(f"--datasets must list some of {', '.join(DATASETS)}, got {self.datasets}")
        unknown = [v for v in self.variants if v not in KNOWN_VARIANTS]
        if unknown or not self.variants:
            raise HybridfastError(f"--variants must list some of {', '.join(KNOWN_VARIANTS)}, got {self.variants}")
        for name in ("max_texts", "max_length", "batch_size", "max_batch_tokens", "repeats", "corpus_size",
                     "baseline_texts"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise HybridfastError(f"--{name.replace('_', '-')} must be at least 1")


# --------------------------------------------------------------------------- inputs


def bench_texts(root: Path, dataset: str, max_texts: int, seed: int = 0, corpus_size: int | None = None) -> list[str]:
    """A fixed random sample of `max_texts` passages (SciFact documents or XQuAD-R sentences) without replacement,
    or with `corpus_size` that many drawn with replacement from the whole dataset (the large-corpus mode)."""
    if dataset == "scifact":
        from hybridfast.data.beir import load_beir_corpus

        texts = [(title + " " + text).strip() for title, text in load_beir_corpus(root / "beir-scifact").values()]
    else:
        from hybridfast.data.squad import load_lareqa

        texts = [candidate.sentence for candidate in load_lareqa(root / "xquad-r").candidates]
    rng = np.random.default_rng(seed)
    if corpus_size is not None:
        return [texts[i] for i in rng.integers(0, len(texts), size=corpus_size)]
    chosen = rng.choice(len(texts), size=min(max_texts, len(texts)), replace=False)
    return [texts[i] for i in chosen]


# --------------------------------------------------------------------------- measurement


@dataclass
class Variant:
    """A named encoder under test: `encode(texts, on_batch)` returns float32 [n, d]."""

    name: str
    encode: Callable[[list[str], Callable[..., None] | None], np.ndarray]
    hook: Callable[[Callable[[], None]], Callable[[], None]] | None = None
    backend: str = ""
    breakdown: Callable[[list[str]], dict[str, Any]] | None = None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_pass(variant: Variant, texts: list[str], device: Any) -> tuple[float, float, np.ndarray]:
    """One full encode of `texts`: (wall seconds, process CPU seconds, the embeddings)."""
    _sync(device)
    cpu, start = _cpu_seconds(), time.perf_counter()
    embeddings = variant.encode(texts, None)
    _sync(device)
    return time.perf_counter() - start, _cpu_seconds() - cpu, embeddings


def latency_pass(variant: Variant, texts: list[str], device: Any) -> tuple[np.ndarray, int]:
    """One encode that synchronizes after every batch: (batch latencies in ms, peak memory bytes)."""
    stamps: list[float] = []

    def on_batch(*_: int) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    remove = variant.hook(on_batch) if variant.hook is not None else None
    with PeakMemory(device) as memory:
        _sync(device)
        start = time.perf_counter()
        variant.encode(texts, None if remove is not None else on_batch)
    if remove is not None:
        remove()
    return np.diff([start, *stamps]) * 1000.0, memory.growth_bytes


def measure_all(
    variants: list[Variant], texts: list[str], real_tokens: int, repeats: int, device: Any,
    warmup_texts: int | None = None, latency: bool = True,
) -> dict[str, dict[str, Any]]:
    """Warm-up (on the first `warmup_texts` texts, all by default), then `repeats` rounds of one timed pass per
    variant (interleaved, so a change in machine load hits every variant alike), then one latency pass per
    variant (unless `latency` is False). The embeddings kept for the cosine check come from the first timed
    pass."""
    rows: dict[str, dict[str, Any]] = {}
    live: list[Variant] = []
    for variant in variants:
        try:
            start = time.perf_counter()
            variant.encode(texts[:warmup_texts] if warmup_texts else texts, None)
            rows[variant.name] = {"_wall": [], "_cpu": [], "warmup_seconds": time.perf_counter() - start,
                                  "warmup_texts": min(warmup_texts or len(texts), len(texts))}
            live.append(variant)
        except Exception as err:  # e.g. out of memory: record and go on
            rows[variant.name] = {"error": f"{type(err).__name__}: {err}"}
    for _ in range(repeats):
        for variant in list(live):
            try:
                wall, cpu, embeddings = timed_pass(variant, texts, device)
            except Exception as err:
                rows[variant.name] = {"error": f"{type(err).__name__}: {err}"}
                live.remove(variant)
                continue
            rows[variant.name]["_wall"].append(wall)
            rows[variant.name]["_cpu"].append(cpu)
            rows[variant.name].setdefault("_embeddings", embeddings)
    for variant in live:
        row = rows[variant.name]
        try:
            if latency:
                latencies, peak = latency_pass(variant, texts, device)
            else:
                latencies, peak = np.empty(0), None
        except Exception as err:
            rows[variant.name] = {"error": f"{type(err).__name__}: {err}"}
            continue
        seconds, cpu_seconds = statistics.median(row.pop("_wall")), statistics.median(row.pop("_cpu"))
        row.update({
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "sequences_per_s": len(texts) / seconds,
            "real_tokens_per_s": real_tokens / seconds,
            "real_tokens_per_cpu_s": real_tokens / cpu_seconds if cpu_seconds > 0 else None,
            "batches": int(latencies.size) if latency else None,
            "batch_latency_ms_p50": float(np.percentile(latencies, 50)) if latencies.size else None,
            "batch_latency_ms_p99": float(np.percentile(latencies, 99)) if latencies.size else None,
            "peak_memory_mib": peak / 2**20 if peak is not None else None,
            "backend": variant.backend,
        })
    return rows


class StageClock:
    """Seconds per named stage of a serial pass. On CUDA every reading synchronizes first, so each stage is
    charged its own GPU work (the breakdown pass only; the throughput passes never synchronize mid-stream)."""

    def __init__(self, device: Any):
        self.device = device
        self.seconds: dict[str, float] = {stage: 0.0 for stage in BREAKDOWN_STAGES}

    def now(self) -> float:
        _sync(self.device)
        return time.perf_counter()

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += max(0.0, seconds)


def lean_breakdown(
    encoder: Any, texts: list[str], max_length: int, max_batch_tokens: int | None, device: Any
) -> dict[str, Any]:
    """Where the lean path's time goes: one serial encode of `texts` as passages, each stage timed apart.

    Stages: ``tokenize`` (the same threaded Rust tokenizer as `FusedEncoder.encode`, all texts at once),
    ``plan`` (length sort and token-budget batches), ``assemble`` (padded or packed id arrays on the host),
    ``h2d`` (pinned host-to-device copy of those arrays), ``model`` (the transformer), ``pool`` (fused pooling and
    normalization), ``d2h`` (the embeddings back to the host). In `encode` tokenization runs on its own threads
    one chunk ahead of the GPU, so the end-to-end time is less than this sum when tokenization keeps up.
    """
    import torch

    from hybridfast.batching import pack_batch, pad_batch, plan_batches
    from hybridfast.tokenization import ParallelTokenizer
    from hybridfast.varlen import packed_position_offset

    clock = StageClock(device)
    tokenizer = ParallelTokenizer(encoder.tokenizer)
    prefix = encoder.config.prefix("passage")
    start = clock.now()
    token_ids = tokenizer.token_ids([prefix + text for text in texts], max_length)
    mark = clock.now()
    clock.add("tokenize", mark - start)
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    packed = encoder._decide_packing()
    batches = plan_batches(lengths, max_batch_tokens or encoder.default_batch_tokens, packed=packed)
    offset = packed_position_offset(encoder.model.config) if packed else 0
    clock.add("plan", clock.now() - mark)
    model_done: list[float] = []
    handle = encoder.model.register_forward_hook(lambda *_: model_done.append(clock.now()))
    parts = []
    try:
        with torch.inference_mode():
            for batch in batches:
                rows = [token_ids[i] for i in batch]
                before = clock.now()
                pack_batch(rows, offset) if packed else pad_batch(rows, encoder.tokenizer.pad_token_id)
                assembled = clock.now()
                # token_batch assembles the arrays again, then copies them: the copy is its time minus assembly.
                on_device = encoder.token_batch(rows, packed)
                copied = clock.now()
                parts.append(encoder.embed_tokens(on_device).float())
                pooled = clock.now()
                clock.add("assemble", assembled - before)
                clock.add("h2d", (copied - assembled) - (assembled - before))
                clock.add("model", model_done[-1] - copied)
                clock.add("pool", pooled - model_done[-1])
            before = clock.now()
            torch.cat(parts).cpu()
            clock.add("d2h", clock.now() - before)
    finally:
        handle.remove()
    real_tokens = int(lengths.sum())
    total = sum(clock.seconds.values())
    return {
        "texts": len(texts), "real_tokens": real_tokens, "batches": len(batches), "packed": packed,
        "tokenizer_threads": tokenizer.threads, "stages_s": dict(clock.seconds), "total_s": total,
        "fractions": {stage: seconds / total if total else 0.0 for stage, seconds in clock.seconds.items()},
        "real_tokens_per_s_by_stage": {stage: real_tokens / seconds if seconds > 0 else None
                                       for stage, seconds in clock.seconds.items()},
    }


# --------------------------------------------------------------------------- variants


def _lean_variant(name: str, model_dir: str, device: Any, dtype: Any, config: BenchConfig, **options: Any) -> Variant:
    from hybridfast.encoder import FusedEncoder

    encoder = FusedEncoder.from_pretrained(model_dir, device=device, dtype=dtype, **options)

    def encode(texts: list[str], on_batch: Callable[..., None] | None) -> np.ndarray:
        return encoder.encode_passages(
            texts, max_batch_tokens=config.max_batch_tokens, max_length=config.max_length, on_batch=on_batch
        )

    variant = Variant(name, encode)
    if not options.get("compile"):  # a forward hook on the compiled model's inner module would not fire
        variant.breakdown = lambda texts: lean_breakdown(encoder, texts, config.max_length, config.max_batch_tokens,
                                                         device)
    encode(texts=["warm up the padding-free self-check"], on_batch=None)
    budget = config.max_batch_tokens or encoder.default_batch_tokens
    variant.backend = f"{encoder.inference_backend}, {budget} tokens per batch"
    variant.backend += f", {encoder.quantization}" if encoder.quantized else ""
    variant.backend += ", torch.compile" if options.get("compile") else ""
    return variant


def _unfused_variant(model_dir: str, device: Any, dtype: Any, config: BenchConfig) -> Variant:
    from hybridfast.serve.baseline import UnfusedEncoder

    encoder = UnfusedEncoder.from_pretrained(model_dir, device=device, dtype=dtype)

    def encode(texts: list[str], on_batch: Callable[..., None] | None) -> np.ndarray:
        return encoder.encode(texts, "passage", batch_size=config.batch_size, max_length=config.max_length,
                              on_batch=on_batch)

    return Variant("unfused", encode, backend=f"HF AutoModel sdpa, batches of {config.batch_size} in input order")


def _st_variant(model_dir: str, device: Any, dtype: Any, config: BenchConfig) -> Variant:
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers ≥ 6 moved the module classes
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer

    from hybridfast.encoder import EncoderConfig

    encoder_config = EncoderConfig.load(model_dir) or EncoderConfig()
    if (Path(model_dir) / "modules.json").is_file():
        model = SentenceTransformer(model_dir, device=str(device))
    else:
        transformer = Transformer(model_dir, max_seq_length=config.max_length)
        dim = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
        pooling = Pooling(dim(), pooling_mode=encoder_config.pooling)
        modules = [transformer, pooling] + ([Normalize()] if encoder_config.normalize else [])
        model = SentenceTransformer(modules=modules, device=str(device))
    model.max_seq_length = config.max_length
    if dtype is not None:
        model.to(dtype)
    prefix = encoder_config.passage_prefix

    def encode(texts: list[str], on_batch: Callable[..., None] | None) -> np.ndarray:
        out = model.encode([prefix + t for t in texts], batch_size=config.batch_size, convert_to_numpy=False,
                           convert_to_tensor=True, show_progress_bar=False)
        return out.float().cpu().numpy()

    def hook(callback: Callable[[], None]) -> Callable[[], None]:
        handle = model.register_forward_hook(lambda *args: callback())
        return handle.remove

    import sentence_transformers

    return Variant("sentence-transformers", encode, hook=hook,
                   backend=f"sentence-transformers {sentence_transformers.__version__}, batch {config.batch_size}")


def _build_variants(config: BenchConfig, model_dir: str, device: Any, dtype: Any) -> list[tuple[str, Callable[[], Variant]]]:
    makers: list[tuple[str, Callable[[], Variant]]] = []
    for name in config.variants:
        if name == "lean":
            makers.append((name, lambda: _lean_variant("lean", model_dir, device, dtype, config)))
        elif name == "lean-padded":
            makers.append((name, lambda: _lean_variant("lean-padded", model_dir, device, dtype, config,
                                                       padding_free=False)))
        elif name == "lean-packed":
            makers.append((name, lambda: _lean_variant("lean-packed", model_dir, device, dtype, config,
                                                       padding_free=True)))
        elif name == "unfused":
            makers.append((name, lambda: _unfused_variant(model_dir, device, dtype, config)))
        elif name == "sentence-transformers":
            makers.append((name, lambda: _st_variant(model_dir, device, dtype, config)))
    if config.int8:
        makers.append(("lean-int8", lambda: _lean_variant("lean-int8", model_dir, device, dtype, config,
                                                          quantize="int8")))
    if config.compile:
        makers.append(("lean-compile", lambda: _lean_variant("lean-compile", model_dir, device, dtype, config,
                                                             compile=True)))
    if config.int8 and config.compile:
        makers.append(("lean-int8-compile", lambda: _lean_variant("lean-int8-compile", model_dir, device, dtype,
                                                                  config, quantize="int8", compile=True)))
    return makers


# --------------------------------------------------------------------------- the run


def _speedups(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Real tokens/s of each variant over each baseline of the same run (a baseline against the other one too)."""
    out: dict[str, dict[str, float]] = {}
    for name, row in rows.items():
        if "error" in row:
            continue
        ratios = {}
        for base in BASELINES:
            if base != name and base in rows and "error" not in rows[base]:
                ratios[f"vs_{base}"] = row["real_tokens_per_s"] / rows[base]["real_tokens_per_s"]
                if row.get("real_tokens_per_cpu_s") and rows[base].get("real_tokens_per_cpu_s"):
                    ratios[f"vs_{base}_cpu_time"] = row["real_tokens_per_cpu_s"] / rows[base]["real_tokens_per_cpu_s"]
        out[name] = ratios
    return out


def run_encode_benchmark(config: BenchConfig) -> dict[str, Any]:
    """Run every variant on every dataset; write JSON and PNG into `config.out_dir`; return the result."""
    import tempfile

    import torch

    from hybridfast.encoder import _default_device, _parse_dtype

    config.check()
    device = torch.device(config.device) if config.device else _default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HybridfastError("--device cuda but CUDA is not available")
    dtype = _parse_dtype(config.dtype)
    if config.int8 and (device.type != "cpu" or dtype != torch.float32):
        raise HybridfastError("--int8 needs --device cpu and --dtype float32")
    root = find_data_root(config.data_dir)
    texts = {name: bench_texts(root, name, config.max_texts, config.seed, config.corpus_size)
             for name in config.datasets}

    with tempfile.TemporaryDirectory(prefix="hybridfast-bench-") as scratch:
        tokenizer_name = None
        if config.random_shape is not None:
            model_dir, tokenizer_name = random_checkpoint(config.random_shape, Path(scratch))
            model_dir, model_label = str(model_dir), f"random-{config.random_shape}"
        else:
            from hybridfast.models.resolve import resolve_model

            model_dir = resolve_model(config.model)
            model_label = Path(model_dir).name or str(config.model)
        from transformers import AutoTokenizer

        from hybridfast.encoder import EncoderConfig
        from hybridfast.tokenization import ParallelTokenizer

        # The ids every variant embeds (truncation as in `encode`), counted on the tokenizer's threads: a 100k-text
        # corpus takes seconds this way, a minute through one tokenizer call.
        tokenizer = ParallelTokenizer(AutoTokenizer.from_pretrained(model_dir))
        prefix = (EncoderConfig.load(model_dir) or EncoderConfig()).passage_prefix
        token_counts, stats = {}, {}
        for name, sample in texts.items():
            token_ids = tokenizer.token_ids([prefix + t for t in sample], config.max_length)
            counts = np.array([len(ids) for ids in token_ids])
            token_counts[name] = counts
            stats[name] = {"texts": len(sample), "unique_texts": len(set(sample)), "real_tokens": int(counts.sum()),
                           "mean_tokens": float(counts.mean()), "max_tokens": int(counts.max())}

        variants: list[Variant] = []
        failed: dict[str, dict[str, Any]] = {}
        for variant_name, make in _build_variants(config, model_dir, device, dtype):
            try:
                variants.append(make())
            except Exception as err:  # a variant that cannot load is recorded, the others still run
                failed[variant_name] = {"error": f"{type(err).__name__}: {err}"}
        results = {}
        large = config.corpus_size is not None
        for name, sample in texts.items():
            # Baselines may run on the corpus's first `baseline_texts` texts (their throughput is steady after a few
            # thousand texts, and they are the slow part of a large-corpus run); each row records its texts.
            groups = [(variants, len(sample))]
            if config.baseline_texts is not None and config.baseline_texts < len(sample):
                groups = [([v for v in variants if v.name not in BASELINES], len(sample)),
                          ([v for v in variants if v.name in BASELINES], config.baseline_texts)]
            results[name] = {}
            for group, count in groups:
                real_tokens = int(token_counts[name][:count].sum())
                measured = measure_all(group, sample[:count], real_tokens, config.repeats, device,
                                       warmup_texts=CORPUS_WARMUP_TEXTS if large else None, latency=not large)
                for row in measured.values():
                    row.setdefault("texts", count)
                results[name].update(measured)
            results[name].update(failed)
            if config.breakdown:
                for variant in variants:
                    row = results[name].get(variant.name, {})
                    if variant.breakdown is None or "error" in row:
                        continue
                    try:
                        row["breakdown"] = variant.breakdown(sample[:BREAKDOWN_MAX_TEXTS])
                    except Exception as err:  # the breakdown is a diagnosis: keep the throughput numbers
                        row["breakdown"] = {"error": f"{type(err).__name__}: {err}"}
        del variants
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    datasets_out = {}
    for name, rows in results.items():
        reference = rows.get("unfused", {}).get("_embeddings")
        for row in rows.values():
            embeddings = row.pop("_embeddings", None)
            if embeddings is not None and reference is not None:
                common = min(len(embeddings), len(reference))  # the baseline may have embedded a prefix only
                a, b = embeddings[:common], reference[:common]
                row["min_cosine_vs_unfused"] = float(np.min(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1)
                                                            / np.linalg.norm(b, axis=1)))
        datasets_out[name] = {**stats[name], "variants": rows, "speedups": _speedups(rows)}
    result = {
        "benchmark": "encode",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_label,
        "tokenizer": tokenizer_name,
        "device": str(device),
        "dtype": config.dtype,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "environment": environment(device),
        "datasets": datasets_out,
    }
    result["files"] = write_results(result, config.out_dir, config.tag)
    return result


def write_results(result: dict[str, Any], out_dir: Path, tag: str = "") -> dict[str, str]:
    """Write `bench_encode_<device>_<model>_<dtype>[_tag].json` and `.png`; return their paths."""
    device = str(result["device"]).split(":")[0]
    stem = f"bench_encode_{device}_{result['model']}_{result['dtype']}" + (f"_{tag}" if tag else "")
    return write_result_files(result, out_dir, stem, plot_results)


def plot_results(result: dict[str, Any], path: Path) -> None:
    """Grouped bars of real tokens/s per variant and dataset, speed-up over unfused on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(result["datasets"])
    variants: list[str] = []
    for data in result["datasets"].values():
        variants += [v for v in data["variants"] if v not in variants]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(variants) * len(datasets) / 2, 4.2))
    width = 0.8 / max(len(variants), 1)
    for i, variant in enumerate(variants):
        values = []
        for data in result["datasets"].values():
            row = data["variants"].get(variant, {})
            values.append(row.get("real_tokens_per_s", 0.0) if "error" not in row else 0.0)
        positions = np.arange(len(datasets)) + (i - (len(variants) - 1) / 2) * width
        bars = ax.bar(positions, values, width, label=variant)
        for bar, data in zip(bars, result["datasets"].values(), strict=True):
            ratio = data["speedups"].get(variant, {}).get("vs_unfused")
            if ratio is not None:
                ax.annotate(f"{ratio:.2f}×", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(len(datasets)), datasets)
    ax.set_ylabel("real tokens / s")
    hardware = result["environment"]["gpu"] or result["environment"]["cpu"]
    ax.set_title(f"encode: {result['model']}, {result['dtype']}, {hardware}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cell(value: float | None, width: int, digits: int, suffix: str = "") -> str:
    """A right-aligned number, or "–" where there is none (a baseline against itself, a skipped pass)."""
    return f"{'–':>{width}}" if value is None else f"{f'{value:.{digits}f}{suffix}':>{width}}"


def summary_table(result: dict[str, Any]) -> str:
    """A plain-text table of the result, one line per dataset and variant, then each breakdown's stages."""
    lines = [f"{'dataset':<9} {'variant':<22} {'texts':>7} {'seq/s':>9} {'tok/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'mem MiB':>8} {'warm-up s':>9} {'vs unfused':>10} {'vs ST':>6}"]
    breakdowns = []
    for name, data in result["datasets"].items():
        for variant, row in data["variants"].items():
            if "error" in row:
                lines.append(f"{name:<9} {variant:<22} error: {row['error'][:120]}")
                continue
            ratios = data["speedups"].get(variant, {})
            lines.append(
                f"{name:<9} {variant:<22} {row.get('texts', data['texts']):>7} {row['sequences_per_s']:>9.1f} "
                f"{row['real_tokens_per_s']:>11.0f} "
                f"{_cell(row['batch_latency_ms_p50'], 8, 1)} {_cell(row['batch_latency_ms_p99'], 8, 1)} "
                f"{_cell(row['peak_memory_mib'], 8, 1)} {_cell(row.get('warmup_seconds'), 9, 1)} "
                f"{_cell(ratios.get('vs_unfused'), 10, 2, '×')} "
                f"{_cell(ratios.get('vs_sentence-transformers'), 6, 2, '×')}"
            )
            if "breakdown" in row:
                breakdowns.append((name, variant, row["breakdown"]))
    for name, variant, breakdown in breakdowns:
        if "error" in breakdown:
            lines.append(f"breakdown {name} {variant}: error: {breakdown['error'][:120]}")
            continue
        stages = ", ".join(f"{stage} {seconds:.3g} s ({breakdown['fractions'][stage]:.0%})"
                           for stage, seconds in breakdown["stages_s"].items())
        lines.append(f"breakdown {name} {variant} (serial, synchronized per stage; {breakdown['batches']} batches, "
                     f"{breakdown['tokenizer_threads']} tokenizer threads): {stages}; sum {breakdown['total_s']:.3g} s")
    return "\n".join(lines)
