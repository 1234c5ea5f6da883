"""What the research runs train on and start from: LAReQA-format positives and a vocabulary-pruned start model.

**Positives in the evaluation's candidate format.** LAReQA (Roy et al. 2020, arXiv 2004.05484) retrieves answer
*sentences*, each encoded with its paragraph as context. Training on whole paragraphs while evaluating on bare
sentences would measure a format shift as much as a sampling strategy, so with `positives = "sentence-in-context"`
every training pair is (question, its gold sentence followed by the paragraph), built from XQuAD-R's training
articles by `hybridfast.eval.lareqa.candidate_text`, the function the evaluation encodes candidates with
(`with_context = true`). Two questions whose gold is one sentence share a passage text, so the training loop's
group ids mask them as each other's false negatives; other sentences of the same paragraph are true negatives, as
in LAReQA's pool. `positives = "paragraph"` keeps `hybridfast train`'s XQuAD records (passage = paragraph).

**Pruned vocabulary.** `hybridfast models prune-vocab` keeps only the pieces that the texts of every training and
evaluation set use; those texts tokenize exactly as before (the pruning verifies it), so the pruned model *is* the
zero-shot model on this experiment, with far fewer parameters to update when embeddings are trained (the embeddings
are 82 % of multilingual-e5-small; the reduced run's pruning kept 73,949 of 250,037 rows, 117.5 M → 49.9 M
parameters, `results/cpu-reduced/start_model.json`) and a checkpoint small enough to carry to a GPU machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

POSITIVES = ("sentence-in-context", "paragraph")


def sentence_in_context_records(dataset: Any, articles: Iterable[str]) -> list[dict[str, str]]:
    """One JSONL record per (question, language) of `articles`: the question and its gold candidate's text.

    `dataset` is a `LareqaDataset` holding every language; `qid` is shared by a question's translations and
    `article` is the cross-lingual article key, so `hybridfast train`'s sampler pairs languages as for XQuAD.
    """
    from hybridfast.eval.lareqa import candidate_text

    keep = frozenset(articles)
    gold = {(qid, dataset.candidates[index].lang): dataset.candidates[index]
            for qid, indices in dataset.relevance.items() for index in indices}
    records = []
    for question in dataset.questions:
        if question.article not in keep:
            continue
        candidate = gold.get((question.qid, question.lang))
        if candidate is None:
            continue  # MLQA-R shape: no gold sentence in this language
        records.append({"qid": question.qid, "lang": question.lang, "query": question.question,
                        "passage": candidate_text(candidate, with_context=True), "article": question.article})
    return records


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    """Write records as JSON lines, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(path.suffix + ".tmp")
    temp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    temp.replace(path)
    return path


def experiment_texts(data_root: Path, lareqa: str, xquad: str, beir: str, tatoeba: str,
                     tatoeba_langs: Sequence[str]) -> Iterator[str]:
    """Every text the experiment encodes: XQuAD and XQuAD-R questions, sentences, paragraphs and
    sentence-in-context candidates (all languages), SciFact documents and queries, Tatoeba sentences."""
    from hybridfast.data.beir import load_beir
    from hybridfast.data.squad import load_lareqa, load_xquad
    from hybridfast.data.tatoeba import load_tatoeba
    from hybridfast.eval.beir import beir_document_text
    from hybridfast.eval.lareqa import candidate_text

    pool = load_lareqa(data_root / lareqa)
    for candidate in pool.candidates:
        yield candidate.sentence
        yield candidate.context
        yield candidate_text(candidate, with_context=True)
    for question in pool.questions:
        yield question.question
    for record in load_xquad(data_root / xquad):
        yield record.query
        yield record.passage
    scifact = load_beir(data_root / beir, "test")
    for title, text in scifact.corpus.values():
        yield beir_document_text(title, text)
    yield from scifact.queries.values()
    for pairs in load_tatoeba(data_root / tatoeba, list(tatoeba_langs) or None).values():
        for pair in pairs:
            yield pair.source
            yield pair.english


def pruned_start_model(source: str, out: Path, texts: Iterable[str], log: Any = print) -> dict[str, Any]:
    """Prune `source`'s vocabulary to the pieces `texts` use (once; an existing `out` is reused) and return
    the pruning's sizes, which the experiment records."""
    from hybridfast.models.prune import prune_vocab
    from hybridfast.models.safetensors_header import checkpoint_tensors

    info_file = out / "research_pruning.json"
    if info_file.is_file():
        return json.loads(info_file.read_text())
    corpus = out.parent / f"{out.name}.corpus.jsonl"
    write_jsonl(corpus, [{"text": text} for text in dict.fromkeys(t for t in texts if t.strip())])
    log(f"pruning the vocabulary of {source} to the experiment's texts -> {out}")
    report = prune_vocab(source, [corpus], out, force=out.exists())
    info = {"source": str(source), "vocab_before": report.vocab_before, "vocab_after": report.vocab_after,
            "params_before": report.params_before, "params_after": report.params_after,
            "corpus_texts": report.corpus.texts, "corpus_tokens": report.corpus.tokens,
            "changed_texts": report.corpus.changed_texts,
            "embedding_params_after": next(t.numel for t in checkpoint_tensors(out) if "word_embeddings" in t.name)}
    info_file.write_text(json.dumps(info, indent=1) + "\n")
    corpus.unlink()
    return info
