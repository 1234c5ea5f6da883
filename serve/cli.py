"""`hybridfast encode | index | search | bench encode`: thin typer shells over `hybridfast.serve`.

Heavy imports (torch, transformers, faiss) happen inside the commands, so `hybridfast --help`
stays fast. A `HybridfastError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from hybridfast.errors import user_errors


class IndexType(str, Enum):
    flat = "flat"
    ivf = "ivf"
    hnsw = "hnsw"


class ShardFormat(str, Enum):
    safetensors = "safetensors"
    npy = "npy"


class TextKindOption(str, Enum):
    passage = "passage"
    query = "query"
    none = "none"


class GpuChoice(str, Enum):
    auto = "auto"
    yes = "yes"
    no = "no"


@contextmanager
def progress_bar(total: int, description: str, unit: str) -> Iterator[Callable[[int], None]]:
    """The toolkit's progress display (stderr) of one task over `total` `unit`s; yields `advance(n)`."""
    from hybridfast.progress import rich_progress

    with rich_progress(transient=True) as progress:
        task = progress.add_task(description, total=total, unit=unit)
        yield lambda n: progress.advance(task, n)


def _padding_free(value: str) -> bool | None:
    from hybridfast.errors import HybridfastError

    choices = {"auto": None, "yes": True, "no": False}
    if value not in choices:
        raise HybridfastError(f"--padding-free must be auto, yes or no, not {value!r}")
    return choices[value]


def load_encoder(
    model: str, device: str | None, dtype: str | None, int8: bool, compile: bool, padding_free: str
) -> Any:
    """`FusedEncoder.from_pretrained` with the CLI's inference options."""
    from hybridfast.encoder import FusedEncoder

    return FusedEncoder.from_pretrained(
        model, device=device, dtype=dtype, quantize="int8" if int8 else None, compile=compile,
        padding_free=_padding_free(padding_free),
    )


MODEL_HELP = "Checkpoint directory or model name (see `hybridfast models`)."
DEVICE_HELP = "cpu, cuda, cuda:1 … (default: cuda when available)."
DTYPE_HELP = "float32 | bfloat16 | float16 (default: the checkpoint's)."
INT8_HELP = "int8 linear layers, per-token activation scales (CPU, float32 only; ~10 s compile at start)."
COMPILE_HELP = ("Run the transformer through torch.compile: faster batches after about 20-25 s of compiling on an "
                "idle 2-core CPU (minutes on a busy one).")
PADDING_FREE_HELP = "Packed batches without padding: auto (CUDA with varlen attention), yes, no."
TOKENS_HELP = "Token budget per batch, padding included (default: 16384 on GPU as in TEI, 2048 on CPU)."


def encode_command(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    corpus: Path = typer.Option(..., "--corpus", help="BEIR corpus.jsonl(.gz), JSONL with id/text, or text lines."),
    out: Path = typer.Option(..., "--out", help="Directory for the embedding shards and manifest.json."),
    kind: TextKindOption = typer.Option(TextKindOption.passage, "--kind", help="Prefix to apply."),
    fmt: ShardFormat = typer.Option(ShardFormat.safetensors, "--format", help="Shard file format."),
    shard_size: int = typer.Option(100_000, "--shard-size", help="Texts per shard."),
    max_batch_tokens: int | None = typer.Option(None, "--max-batch-tokens", help=TOKENS_HELP, min=1),
    max_length: int | None = typer.Option(None, "--max-length", help="Token limit (default: the checkpoint's)."),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str | None = typer.Option(None, "--dtype", help=DTYPE_HELP),
    int8: bool = typer.Option(False, "--int8", help=INT8_HELP),
    compile: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    padding_free: str = typer.Option("auto", "--padding-free", help=PADDING_FREE_HELP),
) -> None:
    """Embed a corpus into shards with ids (resumable: rerun the same command to finish a stopped run)."""
    from hybridfast.progress import batch_progress
    from hybridfast.serve.corpus import read_texts
    from hybridfast.serve.shards import encode_corpus, texts_to_encode

    with user_errors():
        ids, texts = read_texts(corpus)
        run = {"model": str(model), "kind": kind.value, "shard_size": shard_size, "fmt": fmt.value}
        remaining = texts_to_encode(out, ids, texts, **run)
        if remaining == 0:
            typer.echo(f"nothing to encode: {out} already holds all {len(texts):,} embeddings of {corpus.name} "
                       "from this model (delete it or choose another --out to encode again)")
            return
        encoder = load_encoder(model, device, dtype, int8, compile, padding_free)
        prefix = None if kind is TextKindOption.none else kind.value
        with batch_progress(f"encoding {corpus.name}", len(texts), done=len(texts) - remaining) as counter:
            done = encode_corpus(
                lambda chunk: encoder.encode(chunk, prefix, max_batch_tokens=max_batch_tokens, max_length=max_length,
                                             on_batch=counter),
                ids, texts, out, **run,
            )
    backend = encoder.inference_backend + (f", {encoder.quantization}" if encoder.quantized else "")
    kept = f"; kept {done.reused:,} from an earlier run" if done.reused else ""
    typer.echo(f"wrote {done.encoded:,} embeddings (dim {done.manifest['dim']}) to {out}{kept}; it holds "
               f"{len(texts):,} in {len(done.manifest['shards'])} shard(s). Encoded {counter.summary()} [{backend}]")


def index_command(
    embeddings: Path = typer.Option(..., "--embeddings", help="Shard directory written by `hybridfast encode`."),
    out: Path = typer.Option(..., "--out", help="Index directory to write."),
    kind: IndexType = typer.Option(IndexType.flat, "--type", help="flat (exact), ivf or hnsw."),
    nlist: int | None = typer.Option(None, "--nlist", help="IVF cells (default ≈ 4·sqrt(n))."),
    nprobe: int = typer.Option(16, "--nprobe", help="IVF cells scanned per query."),
    hnsw_m: int = typer.Option(32, "--hnsw-m", help="HNSW links per node."),
    ef_construction: int = typer.Option(200, "--ef-construction", help="HNSW build candidates."),
    ef_search: int = typer.Option(128, "--ef-search", help="HNSW search candidates."),
    gpu: GpuChoice = typer.Option(GpuChoice.auto, "--gpu", help="Build on GPU (faiss-gpu): auto, yes, no."),
) -> None:
    """Build a FAISS inner-product index from embedding shards."""
    from hybridfast.index import build_index, save_index
    from hybridfast.serve.shards import load_embeddings

    with user_errors():
        ids, matrix = load_embeddings(embeddings)
        use_gpu = {"auto": "auto", "yes": True, "no": False}[gpu.value]
        with progress_bar(len(ids), f"indexing ({kind.value})", "vectors") as advance:
            index = build_index(matrix, kind.value, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m,
                                ef_construction=ef_construction, ef_search=ef_search, use_gpu=use_gpu,
                                progress=advance)
        save_index(out, index, ids)
    typer.echo(f"wrote {kind.value} index of {len(ids)} vectors (dim {matrix.shape[1]}) to {out}")


def search_command(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    index: Path = typer.Option(..., "--index", help="Index directory written by `hybridfast index`."),
    queries: Path = typer.Option(..., "--queries", help="BEIR queries.jsonl(.gz), JSONL with id/text, or text lines."),
    out: Path = typer.Option(..., "--out", help="Run file: *.jsonl for JSON lines, anything else for TREC."),
    k: int = typer.Option(100, "--top-k", "--k", help="Documents retrieved per query (as `eval --top-k`)."),
    tag: str = typer.Option("hybridfast", "--tag", help="Run tag (last TREC column)."),
    nprobe: int | None = typer.Option(None, "--nprobe", help="Override the IVF index's nprobe."),
    ef_search: int | None = typer.Option(None, "--ef-search", help="Override the HNSW index's ef_search."),
    max_batch_tokens: int | None = typer.Option(None, "--max-batch-tokens", help=TOKENS_HELP, min=1),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str | None = typer.Option(None, "--dtype", help=DTYPE_HELP),
    int8: bool = typer.Option(False, "--int8", help=INT8_HELP),
    padding_free: str = typer.Option("auto", "--padding-free", help=PADDING_FREE_HELP),
) -> None:
    """Retrieve the top-k passages for each query of a file and write a TREC or JSONL run."""
    from hybridfast.index import load_index, set_search_params
    from hybridfast.progress import batch_progress
    from hybridfast.serve.corpus import read_texts
    from hybridfast.serve.retrieval import retrieve, write_run

    with user_errors():
        qids, qtexts = read_texts(queries)
        faiss_index, doc_ids = load_index(index)
        set_search_params(faiss_index, nprobe=nprobe, ef_search=ef_search)
        encoder = load_encoder(model, device, dtype, int8, False, padding_free)
        with batch_progress(f"encoding {queries.name}", len(qtexts)) as counter:
            embeddings = encoder.encode_queries(qtexts, max_batch_tokens=max_batch_tokens, on_batch=counter)
        with progress_bar(len(qids), f"searching {index.name or index}", "queries") as advance:
            run = retrieve(embeddings, qids, faiss_index, doc_ids, k, progress=advance)
        write_run(out, run, tag=tag)
    typer.echo(f"wrote {len(run):,} queries × top-{k} to {out}; encoded {counter.summary()}")


def bench_encode_command(
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP + " Omit with --random-shape."),
    random_shape: str | None = typer.Option(
        None, "--random-shape", help="Random weights of a named shape instead: e5-small or xlmr-base."
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Data root (default $HYBRIDFAST_DATA or ./data)."),
    datasets: str = typer.Option("scifact,xquad-r", "--datasets", help="Comma list: scifact, xquad-r."),
    max_texts: int = typer.Option(1000, "--max-texts", help="Texts per dataset."),
    max_length: int = typer.Option(256, "--max-length", help="Token limit for every variant."),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16, for every variant."),
    int8: bool = typer.Option(False, "--int8", help="Also run the lean path with int8 linear layers (CPU)."),
    compile: bool = typer.Option(False, "--compile", help="Also run the lean path under torch.compile (and int8 + compile with --int8)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts per batch of the baselines (ST's default: 32)."),
    max_batch_tokens: int | None = typer.Option(None, "--max-batch-tokens", help=TOKENS_HELP, min=1),
    repeats: int = typer.Option(3, "--repeats", help="Timed passes per variant (the median is reported)."),
    variants: str = typer.Option(
        "lean,unfused,sentence-transformers", "--variants",
        help="Comma list of: lean, lean-padded, lean-packed, unfused, sentence-transformers.",
    ),
    out_dir: Path = typer.Option(Path("benchmarks/results"), "--out-dir", help="Where the JSON and PNG go."),
    tag: str = typer.Option("", "--tag", help="Suffix of the result file names."),
    corpus_size: int | None = typer.Option(
        None, "--corpus-size", min=1,
        help="Large-corpus mode: draw this many passages per dataset with replacement (seeded; e.g. 100000) instead "
        "of --max-texts; warms up on 2048 texts and skips the per-batch latency pass.",
    ),
    breakdown: bool = typer.Option(
        False, "--breakdown/--no-breakdown",
        help="Also time the lean path's stages apart in one extra serial pass over the first 20,000 texts (tokenize, "
        "plan, assemble, host-to-device, model, pooling, device-to-host; synchronized per stage, so not a throughput "
        "figure).",
    ),
    baseline_texts: int | None = typer.Option(
        None, "--baseline-texts", min=1,
        help="Run the baselines (unfused, sentence-transformers) on the first N texts only, measured apart from the "
        "lean variants; their tokens/s is steady after a few thousand texts (default: all texts, interleaved).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the text sample."),
) -> None:
    """Benchmark the lean encode path against the unfused HF baseline and sentence-transformers.

    Reports real (non-padding) tokens/s end to end per variant and its ratio to each baseline in the same run.
    """
    from hybridfast.serve.benchmark import BenchConfig, run_encode_benchmark, summary_table

    with user_errors():
        config = BenchConfig(
            model=model, random_shape=random_shape, data_dir=data_dir,
            datasets=[d.strip() for d in datasets.split(",") if d.strip()], max_texts=max_texts,
            max_length=max_length, device=device, dtype=dtype, int8=int8, compile=compile, batch_size=batch_size,
            max_batch_tokens=max_batch_tokens, repeats=repeats,
            variants=[v.strip() for v in variants.split(",") if v.strip()], out_dir=out_dir, tag=tag,
            corpus_size=corpus_size, baseline_texts=baseline_texts, breakdown=breakdown, seed=seed,
        )
        result = run_encode_benchmark(config)
    typer.echo(summary_table(result))
    typer.echo(f"wrote {result['files']['json']} and {result['files']['png']}")
