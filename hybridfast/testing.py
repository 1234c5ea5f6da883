"""Tiny random XLM-R-shaped encoders with a real Unigram tokenizer, for tests and speed runs.

Nothing is downloaded: the tokenizer is trained on the given texts with the `tokenizers`
library (SentencePiece Unigram, XLM-R special tokens and post-processing), the weights are
random with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hybridfast.encoder import EncoderConfig

DEFAULT_TEXTS = [
    "Where is the river Rhine? It flows through Germany and the Netherlands.",
    "Wo ist der Rhein? Er fließt durch Deutschland und die Niederlande.",
    "¿Dónde está el río Rin? Fluye por Alemania y los Países Bajos.",
    "Где находится река Рейн? Она течёт через Германию и Нидерланды.",
    "Nehir Ren nerede? Almanya ve Hollanda'dan akar.",
    "莱茵河在哪里？它流经德国和荷兰。",
    "ที่ไหนคือแม่น้ำไรน์ มันไหลผ่านเยอรมนีและเนเธอร์แลนด์",
    "أين يقع نهر الراين؟ يتدفق عبر ألمانيا وهولندا.",
    "Πού είναι ο ποταμός Ρήνος; Ρέει μέσω της Γερμανίας.",
    "राइन नदी कहाँ है? यह जर्मनी और नीदरलैंड से होकर बहती है।",
    "Sông Rhine ở đâu? Nó chảy qua Đức và Hà Lan.",
    "query: passage: what when who how many which year",
]


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 400):
    """A SentencePiece-Unigram fast tokenizer with XLM-R's special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("  ", " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    tokenizer.add_special_tokens(["<mask>"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )


def build_tiny_encoder(
    directory: str | Path,
    *,
    texts: Iterable[str] | None = None,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    max_length: int = 64,
    seed: int = 0,
    encoder_config: EncoderConfig | None = None,
) -> Path:
    """Write a random XLM-R checkpoint with a trained tiny tokenizer to `directory`."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    directory = Path(directory)
    tokenizer = build_tiny_tokenizer(list(texts) if texts is not None else DEFAULT_TEXTS)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_length + 2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = XLMRobertaModel(config, add_pooling_layer=False)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(directory)
    (encoder_config or EncoderConfig(query_prefix="query: ", passage_prefix="passage: ", max_length=max_length)).save(
        directory
    )
    return directory
