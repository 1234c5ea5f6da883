"""Inference cost of several checkpoints on SciFact text: lean path vs unfused baseline, interleaved repeats.

For each model and each encode path, per repeat:

- **corpus throughput**: `passages` SciFact documents (title + text, passage prefix, truncated to
  `max_length` tokens) embedded in one call; passages/s = n / seconds and real tokens/s = (non-padding
  tokens, special tokens included) / seconds;
- **single-query latency**: `queries` SciFact queries embedded one at a time (batch 1); the median (p50)
  and the mean over the queries, in milliseconds, and a tail percentile q only where at least
  `MIN_TAIL_SAMPLES` latencies lie beyond it (n·(1 − q) >= 10: p90 needs 100 queries, p99 1,000); with fewer,
  "p99" would just be the maximum.

Paths: `lean` is `hybridfast.load(...)` (`FusedEncoder.encode`: token-budget batches, length sorting,
padding-free where the hardware allows); `baseline` is `hybridfast.serve.baseline.UnfusedEncoder` (HF
`AutoModel`, fixed-size padded batches in input order, torch pooling). Every model is loaded once for both
paths, then the repeats run round-robin (the model order rotates every repeat, the path order alternates),
so slow drift of the machine (other processes, clocks) spreads over all models instead of biasing one.
The run-to-run spread of one model's repeats is the noise against which differences between models are
judged, and the repeats are paired: repeat r of every model and path ran back to back. Equivalence of two
models' cost is tested on the paired log-ratios of repeat r (throughput, mean latency): two one-sided t-tests
that the mean ratio lies within 1 ± `margin` (TOST, `hybridfast.eval.significance.tost_paired`). The load
average is recorded with every repeat.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from machine import load_average

from hybridfast.benchmarking import cpu_name

PATHS = ("lean", "baseline")
MIN_TAIL_SAMPLES = 10
TAIL_PERCENTILES = (90, 99)


@dataclass
class CostSettings:
    """What `measure_inference_cost` runs; see the module docstring."""

    passages: int = 64
    queries: int = 32
    repeats: int = 5
    max_length: int = 128
    query_max_length: int = 64
    baseline_batch_size: int = 32
    lean_max_batch_tokens: int = 16384
    dtype: str = ""
    seed: int = 0


def sample_scifact(beir_dir: Path, passages: int, queries: int, seed: int) -> tuple[list[str], list[str]]:
    """A seeded sample of SciFact documents (BEIR's title + " " + text) and test queries."""
    from hybridfast.data.beir import load_beir
    from hybridfast.eval.beir import beir_document_text

    dataset = load_beir(beir_dir, "test")
    rng = random.Random(seed)
    doc_ids = sorted(dataset.corpus)
    query_ids = sorted(dataset.queries)
    chosen_docs = rng.sample(doc_ids, min(passages, len(doc_ids)))
    chosen_queries = rng.sample(query_ids, min(queries, len(query_ids)))
    return ([beir_document_text(*dataset.corpus[d]) for d in chosen_docs],
            [dataset.queries[q] for q in chosen_queries])


def token_lengths(tokenizer: Any, texts: Sequence[str], prefix: str, max_length: int) -> list[int]:
    """Tokens the model actually sees per text (prefix and special tokens included, no padding)."""
    encoded = tokenizer([prefix + text for text in texts], truncation=True, max_length=max_length)
    return [len(ids) for ids in encoded["input_ids"]]


def padded_tokens(lengths: Sequence[int], batch_size: int) -> int:
    """Token slots the baseline computes: batches of `batch_size` in input order, each padded to its longest."""
    return sum(len(chunk) * max(chunk) for chunk in (lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)))


def measure_inference_cost(
    models: Mapping[str, str],
    passages: Sequence[str],
    queries: Sequence[str],
    settings: CostSettings,
    device: str,
    log: Callable[[str], None] = print,
    margin: float = 0.03,
) -> dict[str, Any]:
    """Time every model (name -> checkpoint dir) on both paths; per-repeat samples, summaries and pairwise
    equivalence tests of the models' cost within ±`margin` (relative)."""
    import torch

    import hybridfast
    from hybridfast.serve.baseline import UnfusedEncoder

    dtype = settings.dtype or None
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, None: None}[dtype]
    encoders: dict[str, dict[str, Any]] = {}
    info: dict[str, dict[str, Any]] = {}
    for name, directory in models.items():
        lean = hybridfast.load(directory, device=device, dtype=dtype)
        baseline = UnfusedEncoder.from_pretrained(directory, device=device, dtype=torch_dtype)
        passage_prefix, query_prefix = lean.config.prefix("passage"), lean.config.prefix("query")
        lean_embeddings = lean.encode(list(passages), "passage", max_length=settings.max_length,
                                      max_batch_tokens=settings.lean_max_batch_tokens)
        baseline_embeddings = baseline.encode(list(passages), "passage", batch_size=settings.baseline_batch_size,
                                              max_length=settings.max_length)
        cosine = (lean_embeddings * baseline_embeddings).sum(1) / (
            np.linalg.norm(lean_embeddings, axis=1) * np.linalg.norm(baseline_embeddings, axis=1)
        )
        lengths = token_lengths(lean.tokenizer, passages, passage_prefix, settings.max_length)
        info[name] = {
            "checkpoint": str(directory),
            "parameters": int(sum(p.numel() for p in lean.model.parameters())),
            "passage_tokens": sum(lengths),
            "baseline_padded_passage_tokens": padded_tokens(lengths, settings.baseline_batch_size),
            "query_tokens": sum(token_lengths(lean.tokenizer, queries, query_prefix, settings.query_max_length)),
            "lean_backend": lean.inference_backend,
            "min_cosine_lean_vs_baseline": float(cosine.min()),
        }
        encoders[name] = {"lean": lean, "baseline": baseline}
        log(f"cost: loaded {name} ({info[name]['parameters']:,} parameters, backend: {lean.inference_backend})")

    def throughput_call(encoder: Any, path: str) -> None:
        if path == "lean":
            encoder.encode(list(passages), "passage", max_length=settings.max_length,
                           max_batch_tokens=settings.lean_max_batch_tokens)
        else:
            encoder.encode(list(passages), "passage", batch_size=settings.baseline_batch_size,
                           max_length=settings.max_length)

    def query_call(encoder: Any, path: str, query: str) -> None:
        if path == "lean":
            encoder.encode([query], "query", max_length=settings.query_max_length)
        else:
            encoder.encode([query], "query", batch_size=1, max_length=settings.query_max_length)

    def synchronize() -> None:
        if torch.cuda.is_available() and str(device).startswith("cuda"):
            torch.cuda.synchronize()

    for pair in encoders.values():  # first calls pay one-time costs (allocator, thread pools): not timed
        for path, encoder in pair.items():
            for query in queries[:3]:
                query_call(encoder, path, query)

    samples: list[dict[str, Any]] = []
    names = list(models)
    for repeat in range(settings.repeats):
        load = load_average()
        order = names[repeat % len(names):] + names[: repeat % len(names)]
        paths = PATHS if repeat % 2 == 0 else PATHS[::-1]
        for name in order:
            for path in paths:
                encoder = encoders[name][path]
                synchronize()
                start = time.perf_counter()
                throughput_call(encoder, path)
                synchronize()
                seconds = time.perf_counter() - start
                latencies = []
                for query in queries:
                    start = time.perf_counter()
                    query_call(encoder, path, query)
                    synchronize()
                    latencies.append((time.perf_counter() - start) * 1000.0)
                lat = np.array(latencies)
                samples.append({
                    "model": name,
                    "path": path,
                    "repeat": repeat,
                    "load_avg": load,
                    "corpus_seconds": seconds,
                    "passages_per_s": len(passages) / seconds,
                    "tokens_per_s": info[name]["passage_tokens"] / seconds,
                    "latency_p50_ms": float(np.percentile(lat, 50)),
                    "latency_mean_ms": float(lat.mean()),
                    **{f"latency_p{q}_ms": tail_percentile(lat, q) for q in TAIL_PERCENTILES},
                })
        log(f"cost: repeat {repeat + 1}/{settings.repeats} done")
    return {
        "settings": asdict(settings),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(0) if str(device).startswith("cuda") else cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "texts": {"passages": len(passages), "queries": len(queries)},
        "models": info,
        "samples": samples,
        "summary": summarize(samples),
        "equivalence": equivalence_tests(samples, margin),
        "speedup": speedup_tests(samples),
    }


COST_METRICS = ("latency_p50_ms", "latency_mean_ms", "passages_per_s", "tokens_per_s")
# Equivalence between models: throughput of the corpus call and the mean single-query latency.
EQUIVALENCE_METRICS = ("passages_per_s", "latency_mean_ms")


def tail_percentile(values: np.ndarray, q: float) -> float | None:
    """The q-th percentile when at least `MIN_TAIL_SAMPLES` values lie beyond it, else None."""
    return float(np.percentile(values, q)) if len(values) * (100 - q) >= 100 * MIN_TAIL_SAMPLES else None


def _paired_log_ratios(samples: Sequence[Mapping[str, Any]], path: str, a: str, b: str, metric: str) -> np.ndarray:
    by_repeat = {(s["model"], s["repeat"]): s[metric] for s in samples if s["path"] == path}
    repeats = sorted({r for (m, r) in by_repeat if m == a} & {r for (m, r) in by_repeat if m == b})
    return np.array([np.log(by_repeat[(b, r)] / by_repeat[(a, r)]) for r in repeats])


def equivalence_tests(samples: Sequence[Mapping[str, Any]], margin: float) -> list[dict[str, Any]]:
    """TOST of every later model against every earlier one, per path and metric, on paired log-ratios."""
    from hybridfast.eval.significance import tost_paired

    models = list(dict.fromkeys(s["model"] for s in samples))
    out = []
    for path in PATHS:
        for i, a in enumerate(models):
            for b in models[i + 1:]:
                for metric in EQUIVALENCE_METRICS:
                    ratios = _paired_log_ratios(samples, path, a, b, metric)
                    if len(ratios) < 2:
                        continue
                    test = tost_paired(ratios, float(np.log1p(margin)))
                    wide = tost_paired(ratios, float(np.log1p(margin)), alpha=0.025)  # its interval is the 95% one
                    out.append({"path": path, "a": a, "b": b, "metric": metric, "repeats": len(ratios),
                                "ratio_b_over_a": float(np.exp(test.diff)),
                                "ratio_ci90": [float(np.exp(test.ci_low)), float(np.exp(test.ci_high))],
                                "ratio_ci95": [float(np.exp(wide.ci_low)), float(np.exp(wide.ci_high))],
                                "margin": margin, "p_tost": test.p, "equivalent": bool(test.equivalent)})
    return out


def speedup_tests(samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Lean ÷ baseline per model, from the paired repeats: geometric mean ratio and its 95% t-interval."""
    from scipy import stats

    out = []
    for model in dict.fromkeys(s["model"] for s in samples):
        for metric in EQUIVALENCE_METRICS:
            by = {(s["path"], s["repeat"]): s[metric] for s in samples if s["model"] == model}
            repeats = sorted({r for (p, r) in by if p == "lean"} & {r for (p, r) in by if p == "baseline"})
            logs = np.array([np.log(by[("lean", r)] / by[("baseline", r)]) for r in repeats])
            if len(logs) < 2:
                continue
            half = float(stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs)))
            out.append({"model": model, "metric": metric, "repeats": len(logs), "ratio_lean_over_baseline":
                        float(np.exp(logs.mean())), "ci95": [float(np.exp(logs.mean() - half)),
                                                             float(np.exp(logs.mean() + half))]})
    return out


def summarize(samples: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """`{path: {model: {metric: {mean, std, min, max, n}}}}` over the repeats."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for sample in samples:
        out.setdefault(sample["path"], {}).setdefault(sample["model"], {})
    for path, per_model in out.items():
        for model in per_model:
            rows = [s for s in samples if s["path"] == path and s["model"] == model]
            for metric in (*COST_METRICS, *(f"latency_p{q}_ms" for q in TAIL_PERCENTILES)):
                if any(row.get(metric) is None for row in rows):
                    continue
                values = np.array([row[metric] for row in rows], dtype=np.float64)
                per_model[model][metric] = {
                    "mean": float(values.mean()),
                    "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                    "min": float(values.min()),
                    "max": float(values.max()),
                    "n": len(values),
                }
    return out

