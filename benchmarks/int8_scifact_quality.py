"""Quality cost of int8 quantization: SciFact test nDCG@10, float32 vs int8, same corpus.

By default the whole corpus (5,183 documents; about 8 + 6 minutes on a 2-core CPU); `--docs N` keeps
every judged document plus a fixed random sample of the others, N in all, for a quick look (such a
reduced corpus is easier and understates the loss: 0.009 on 400 documents against 0.017 on the full
corpus for torch's per-batch int8). Passages are cut at `--max-length` tokens; both encoders see
exactly the same data, so the difference is the cost of quantization. Writes
benchmarks/results/bench_encode_cpu_int8_quality.json.

    python benchmarks/int8_scifact_quality.py --model default --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timezone
from pathlib import Path

from hybridfast.data.beir import load_beir
from hybridfast.data.records import BeirDataset
from hybridfast.encoder import FusedEncoder
from hybridfast.eval.beir import evaluate_beir


def reduced(dataset: BeirDataset, docs: int, seed: int) -> BeirDataset:
    """Judged documents plus a seeded sample of the rest, `docs` in all (or the whole corpus)."""
    judged = {doc for qrels in dataset.qrels.values() for doc in qrels if doc in dataset.corpus}
    others = sorted(set(dataset.corpus) - judged)
    random.Random(seed).shuffle(others)
    keep = judged | set(others[: max(0, docs - len(judged))])
    corpus = {doc: dataset.corpus[doc] for doc in dataset.corpus if doc in keep}
    return BeirDataset(corpus=corpus, queries=dataset.queries, qrels=dataset.qrels, split=dataset.split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--docs", type=int, default=0, help="corpus size (0: the whole corpus)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_encode_cpu_int8_quality.json"))
    parser.add_argument("--float32-from", type=Path, default=None,
                        help="reuse the float32 row of an earlier report with the same settings")
    args = parser.parse_args()

    dataset = load_beir(args.data_dir / "beir-scifact", "test")
    if args.docs:
        dataset = reduced(dataset, args.docs, args.seed)
    rows = {}
    runs = [("float32", None), ("int8", "int8")]
    if args.float32_from is not None:
        earlier = json.loads(args.float32_from.read_text())
        if (earlier["corpus_documents"], earlier["passage_max_length"]) != (len(dataset.corpus), args.max_length):
            raise SystemExit(f"{args.float32_from}: made with other settings")
        rows["float32"] = earlier["results"]["float32"]
        runs = runs[1:]
    for name, quantize in runs:
        encoder = FusedEncoder.from_pretrained(args.model, device="cpu", quantize=quantize)
        encoder.config.passage_max_length = args.max_length
        result = evaluate_beir(encoder, dataset, progress=False)
        rows[name] = {"metrics": result["metrics"]["test"], "encode_s": result["timing"]["encode_s"],
                      "scheme": encoder.quantization}
        print(name, rows[name], flush=True)
    loss = rows["float32"]["metrics"]["ndcg@10"] - rows["int8"]["metrics"]["ndcg@10"]
    report = {
        "benchmark": "int8 quality, SciFact test nDCG@10",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": args.model,
        "corpus_documents": len(dataset.corpus),
        "queries": len(dataset.qrels),
        "passage_max_length": args.max_length,
        "results": rows,
        "ndcg10_loss_int8": loss,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"nDCG@10 loss from int8: {loss:+.4f}; wrote {args.out}")


if __name__ == "__main__":
    main()
