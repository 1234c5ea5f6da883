"""Vocabulary pruning: keep only the pieces a set of corpora uses, and the embedding rows behind them.

Multilingual encoders are mostly embedding matrix (multilingual-e5-small: 96M of 118M parameters),
so keeping the few tens of thousands of pieces that the served languages use shrinks the
checkpoint and its training memory several-fold.

Why tokenization of the corpora is unchanged. The Unigram model picks, per Metaspace word, the
segmentation with the highest total score (Viterbi). Every corpus word's best segmentation uses
kept pieces only, and removing other candidates cannot beat it; the one score that depends on the
vocabulary is the unknown-character penalty (minimum piece score - 10), and the minimum-score
piece is kept so that it stays the same. The pruning verifies this by re-tokenizing the corpora.

Other text. A word whose pieces were dropped is re-segmented from kept pieces (often shorter
ones); a character that no kept piece covers becomes ``<unk>`` (runs of them fuse into one).
`held_out` corpora measure this: tokens lost, texts re-segmented, new ``<unk>`` tokens.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridfast.errors import HybridfastError
from hybridfast.models.checkpoint import ENCODER_CONFIG_FILE, atomic_directory
from hybridfast.models.corpus_text import iter_corpus_texts
from hybridfast.models.safetensors_header import WEIGHTS_FILE, checkpoint_tensors

BATCH_TEXTS = 2048
_REWRITTEN = {WEIGHTS_FILE, "tokenizer.json", "tokenizer_config.json", "config.json"}
_NOT_COPIED_SUFFIXES = {".bin", ".h5", ".msgpack", ".onnx", ".pt", ".pth", ".model", ".ckpt"}


@dataclass
class TokenLoss:
    """How the pruned tokenizer treats a set of texts, compared with the original one."""

    texts: int = 0
    tokens: int = 0
    lost_tokens: int = 0
    changed_texts: int = 0
    new_unk_tokens: int = 0

    def line(self) -> str:
        return (
            f"{self.texts:,} texts, {self.tokens:,} tokens: {self.lost_tokens:,} tokens lost, "
            f"{self.changed_texts:,} texts re-segmented, {self.new_unk_tokens:,} new <unk>"
        )


@dataclass
class PruneReport:
    """Sizes before and after pruning, and what the pruned vocabulary does to the corpora."""

    source: str
    out: str
    vocab_before: int
    vocab_after: int
    params_before: int
    params_after: int
    bytes_before: int
    bytes_after: int
    corpus: TokenLoss
    held_out: TokenLoss | None = field(default=None)

    def lines(self) -> list[str]:
        out = [
            f"{self.source} -> {self.out}",
            f"vocabulary   {self.vocab_before:,} -> {self.vocab_after:,} rows",
            f"parameters   {self.params_before:,} -> {self.params_after:,} "
            f"({self.params_after / max(self.params_before, 1):.1%})",
            f"weights      {self.bytes_before / 1e6:,.1f} MB -> {self.bytes_after / 1e6:,.1f} MB",
            f"corpora      {self.corpus.line()}",
        ]
        if self.held_out is not None:
            out.append(f"held out     {self.held_out.line()}")
        return out


def prune_vocab(
    model_dir: str | Path,
    corpora: Sequence[str | Path],
    out: str | Path,
    held_out: Sequence[str | Path] = (),
    force: bool = False,
    show_progress: bool = False,
) -> PruneReport:
    """Write to `out` a copy of `model_dir` whose vocabulary holds only the pieces `corpora` use.

    Kept: the special tokens, the pieces of the encoder config's prefixes, every piece of the
    corpora, and the minimum-score piece. Raises `HybridfastError` when the corpora tokenize
    differently after pruning (which the construction rules out) or the input is unsupported.
    """
    from rich.progress import Progress
    from tokenizers import Tokenizer

    model_dir = Path(model_dir).expanduser()
    out = Path(out).expanduser()
    if not corpora:
        raise HybridfastError("prune-vocab needs at least one --corpus file")
    for path in [*corpora, *held_out]:
        if not Path(path).is_file():
            raise HybridfastError(f"{path}: no such corpus file")
    if out.exists() and not force:
        raise HybridfastError(f"{out}: already exists (pass --force to replace it)")
    config, tokenizer_json = _read_checkpoint(model_dir)
    original = Tokenizer.from_str(json.dumps(tokenizer_json))
    original.no_truncation()
    original.no_padding()
    vocab = tokenizer_json["model"]["vocab"]

    # One flag per embedding row: the Unigram vocabulary, then tokens added after it (e.g. a <mask> appended to a
    # trained vocabulary), which keep their order behind the kept vocabulary.
    keep = np.zeros(max(int(config["vocab_size"]), len(vocab)), dtype=bool)
    keep[[t["id"] for t in tokenizer_json.get("added_tokens", []) if t.get("special")]] = True
    keep[tokenizer_json["model"]["unk_id"]] = True
    keep[int(np.argmin([score for _, score in vocab]))] = True
    for prefix in _encoder_prefixes(model_dir):
        keep[original.encode(prefix, add_special_tokens=False).ids] = True

    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("collecting pieces", total=None)
        for batch in _batches(corpora):
            for encoding in original.encode_batch(batch, add_special_tokens=False):
                keep[encoding.ids] = True
            progress.advance(task, len(batch))
        kept = np.flatnonzero(keep)
        old_to_new = np.full(len(keep), -1, dtype=np.int64)
        old_to_new[kept] = np.arange(len(kept))
        pruned_json = _pruned_tokenizer_json(tokenizer_json, kept, old_to_new)
        pruned = Tokenizer.from_str(json.dumps(pruned_json))

        progress.update(task, description="verifying the corpora", completed=0)
        corpus_loss = _token_loss(original, pruned, old_to_new, corpora, progress, task)
        if corpus_loss.changed_texts:
            raise HybridfastError(
                f"pruning changed the tokenization of {corpus_loss.changed_texts} corpus texts; "
                "the tokenizer is not a plain Unigram pipeline"
            )
        held_out_loss = (
            _token_loss(original, pruned, old_to_new, held_out, progress, task) if held_out else None
        )

        progress.update(task, description="writing the pruned checkpoint")
        params_before = sum(t.numel for t in checkpoint_tensors(model_dir))
        bytes_before = (model_dir / WEIGHTS_FILE).stat().st_size
        with atomic_directory(out, force) as tmp:
            _write_pruned(model_dir, tmp, config, pruned, kept)
        params_after = sum(t.numel for t in checkpoint_tensors(out))

    return PruneReport(
        source=str(model_dir), out=str(out),
        vocab_before=int(config["vocab_size"]), vocab_after=len(kept),
        params_before=params_before, params_after=params_after,
        bytes_before=bytes_before, bytes_after=(out / WEIGHTS_FILE).stat().st_size,
        corpus=corpus_loss, held_out=held_out_loss,
    )


def _read_checkpoint(model_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    for name in ("config.json", "tokenizer.json", WEIGHTS_FILE):
        if not (model_dir / name).is_file():
            raise HybridfastError(f"{model_dir}: not a prunable checkpoint (no {name})")
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        tokenizer_json = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HybridfastError(f"{model_dir}: invalid JSON in config.json or tokenizer.json ({err})") from err
    if tokenizer_json.get("model", {}).get("type") != "Unigram":
        raise HybridfastError(f"{model_dir}: only SentencePiece-Unigram tokenizers (XLM-R family) can be pruned")
    if "vocab_size" not in config:
        raise HybridfastError(f"{model_dir}/config.json: no vocab_size")
    return config, tokenizer_json


def _encoder_prefixes(model_dir: Path) -> list[str]:
    path = model_dir / ENCODER_CONFIG_FILE
    if not path.is_file():
        return []
    config = json.loads(path.read_text(encoding="utf-8"))
    return [p for p in (config.get("query_prefix"), config.get("passage_prefix")) if p]


def _batches(corpora: Iterable[str | Path]) -> Iterator[list[str]]:
    batch: list[str] = []
    for path in corpora:
        for text in iter_corpus_texts(path):
            batch.append(text)
            if len(batch) == BATCH_TEXTS:
                yield batch
                batch = []
    if batch:
        yield batch


def _token_loss(original: Any, pruned: Any, old_to_new: np.ndarray, corpora: Sequence[str | Path],
                progress: Any, task: Any) -> TokenLoss:
    loss = TokenLoss()
    unk_old = original.token_to_id("<unk>")
    unk_new = pruned.token_to_id("<unk>")
    for batch in _batches(corpora):
        before = original.encode_batch(batch, add_special_tokens=False)
        after = pruned.encode_batch(batch, add_special_tokens=False)
        for b, a in zip(before, after, strict=True):
            ids = np.asarray(b.ids, dtype=np.int64)
            mapped = old_to_new[ids]
            loss.texts += 1
            loss.tokens += len(ids)
            loss.lost_tokens += int((mapped < 0).sum())
            if len(a.ids) != len(ids) or not np.array_equal(mapped, a.ids):
                loss.changed_texts += 1
            loss.new_unk_tokens += a.ids.count(unk_new) - b.ids.count(unk_old)
        progress.advance(task, len(batch))
    return loss


def _pruned_tokenizer_json(tokenizer_json: dict[str, Any], kept: np.ndarray,
                           old_to_new: np.ndarray) -> dict[str, Any]:
    pruned = copy.deepcopy(tokenizer_json)
    vocab = tokenizer_json["model"]["vocab"]
    pruned["model"]["vocab"] = [vocab[i] for i in kept.tolist() if i < len(vocab)]
    pruned["model"]["unk_id"] = int(old_to_new[tokenizer_json["model"]["unk_id"]])
    pruned["added_tokens"] = [
        {**t, "id": int(old_to_new[t["id"]])} for t in tokenizer_json.get("added_tokens", []) if old_to_new[t["id"]] >= 0
    ]
    processor = pruned.get("post_processor")
    if processor is not None:
        _remap_processor(processor, old_to_new)
    return pruned


def _remap_processor(processor: dict[str, Any], old_to_new: np.ndarray) -> None:
    kind = processor.get("type")
    if kind == "TemplateProcessing":
        for special in processor.get("special_tokens", {}).values():
            special["ids"] = [int(old_to_new[i]) for i in special["ids"]]
    elif kind == "RobertaProcessing" or kind == "BertProcessing":
        for key in ("sep", "cls"):
            token, old = processor[key]
            processor[key] = [token, int(old_to_new[old])]
    elif kind == "Sequence":
        for inner in processor.get("processors", []):
            _remap_processor(inner, old_to_new)
    elif kind != "ByteLevel":
        raise HybridfastError(f"cannot remap the special-token ids of a {kind} post-processor")


def _write_pruned(model_dir: Path, out: Path, config: dict[str, Any], pruned: Any, kept: np.ndarray) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(model_dir / WEIGHTS_FILE))
    names = [n for n, t in state.items() if n.endswith("word_embeddings.weight") and t.shape[0] == config["vocab_size"]]
    if len(names) != 1:
        raise HybridfastError(
            f"{model_dir / WEIGHTS_FILE}: expected one word-embedding matrix of {config['vocab_size']} rows, found {names}"
        )
    index = torch.from_numpy(kept)
    state[names[0]] = state[names[0]].index_select(0, index).contiguous()
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})

    for item in model_dir.iterdir():
        if item.name in _REWRITTEN or item.suffix in _NOT_COPIED_SUFFIXES or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, out / item.name)
        else:
            shutil.copy2(item, out / item.name)
    (out / "config.json").write_text(json.dumps({**config, "vocab_size": len(kept)}, indent=2) + "\n")
    pruned.save(str(out / "tokenizer.json"))
    tokenizer_config_path = model_dir / "tokenizer_config.json"
    if tokenizer_config_path.is_file():
        tokenizer_config = json.loads(tokenizer_config_path.read_text(encoding="utf-8"))
        decoder = tokenizer_config.get("added_tokens_decoder")
        if isinstance(decoder, dict):
            remap = {int(old): int(new) for new, old in enumerate(kept.tolist())}
            tokenizer_config["added_tokens_decoder"] = {
                str(remap[int(k)]): v for k, v in decoder.items() if int(k) in remap
            }
        (out / "tokenizer_config.json").write_text(
            json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
