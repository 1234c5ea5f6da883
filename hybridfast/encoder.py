"""The one encoder: a Hugging Face transformer, fused pooling and L2 normalization.

    e(x) = normalize(pool(H(prefix + x), mask))

with H the transformer's last hidden states, `pool` the fused masked pooling of
`hybridfast.kernels` (mean / cls / max) and `prefix` the query or passage prefix of the
checkpoint (multilingual-e5: "query: " / "passage: "). Training, `hybridfast.load`,
evaluation and the HTTP server all embed through this class, so a number measured anywhere
is the number users get.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from hybridfast.batching import pack_batch, pad_batch, plan_batches
from hybridfast.errors import HybridfastError
from hybridfast.kernels import pool, pool_varlen
from hybridfast.tokenization import ParallelTokenizer
from hybridfast.varlen import (
    ATTN_NAME,
    flash_varlen_available,
    packed_position_offset,
    register_varlen_attention,
)

TextKind = Literal["query", "passage"]

ENCODER_CONFIG_FILE = "hybridfast_encoder.json"

# Token budget per batch when the caller gives none (padding included). GPUs want large batches (TEI's
# default); on CPU a batch's activations should stay in cache: multilingual-e5-small on a 2-core Zen 4 ran
# 2,740 real tokens/s at 1,024-2,048 tokens per batch against 2,120 at 8,192 and 2,335 at 16,384 (256-token
# texts, interleaved medians of 4 rounds).
GPU_BATCH_TOKENS = 16384
CPU_BATCH_TOKENS = 2048


@dataclass
class EncoderConfig:
    """Everything needed to embed with a checkpoint, stored beside its weights."""

    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    max_length: int = 512
    query_max_length: int | None = None
    passage_max_length: int | None = None

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "cls", "max"):
            raise HybridfastError(f"encoder config: pooling must be mean, cls or max, not {self.pooling!r}")
        for name in ("max_length", "query_max_length", "passage_max_length"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise HybridfastError(f"encoder config: {name} must be at least 2, not {value}")

    def prefix(self, kind: TextKind | None) -> str:
        if kind is None:
            return ""
        return self.query_prefix if kind == "query" else self.passage_prefix

    def length_limit(self, kind: TextKind | None) -> int:
        specific = {"query": self.query_max_length, "passage": self.passage_max_length}.get(kind or "")
        return specific or self.max_length

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / ENCODER_CONFIG_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> EncoderConfig | None:
        """The checkpoint's encoder config, or None when the directory has none."""
        path = Path(directory) / ENCODER_CONFIG_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise HybridfastError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from err
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise HybridfastError(f"{path}: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**raw)


class TokenBatch(NamedTuple):
    """The token ids of b texts for one encoder call, already on the encoder's device.

    Padded: `input_ids` and `attention_mask` [b, L] (L the longest of the b texts). Packed (padding-free): one
    stream `input_ids` [T] with per-text `position_ids` [T], cumulative lengths `cu_seqlens` [b + 1] (int32, on
    the device for attention, `cu_seqlens_host` on the CPU for pooling) and the longest text `max_length`.
    A named tuple, so that `torch.utils.checkpoint` finds its device tensors and saves their RNG state.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    cu_seqlens: torch.Tensor | None = None
    cu_seqlens_host: torch.Tensor | None = None
    max_length: int = 0


class FusedEncoder(nn.Module):
    """Shared dual encoder: one set of weights for queries and passages.

    `forward` maps token ids to pooled, optionally L2-normalized embeddings (the training
    path); `encode_queries` / `encode_passages` / `encode` embed raw texts for retrieval.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, config: EncoderConfig, source: str = ""):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.source = source
        self.config_was_defaulted = False
        self.quantized: str | None = None
        self.quantization = "none"
        self.configure_inference()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def default_batch_tokens(self) -> int:
        """The token budget `encode` uses when given none: 16384 on GPUs, 2048 on CPU."""
        return CPU_BATCH_TOKENS if self.device.type == "cpu" else GPU_BATCH_TOKENS

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | Path,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        *,
        quantize: str | None = None,
        compile: bool = False,
        padding_free: bool | None = None,
        **model_kwargs: Any,
    ) -> FusedEncoder:
        """Load a checkpoint directory or hub id with its encoder config.

        Without a `hybridfast_encoder.json` the defaults are used (mean pooling, L2
        normalization, no prefixes, 512 tokens) and `config_was_defaulted` is set so
        callers can say so. Inference options (see :meth:`configure_inference`):
        `quantize="int8"` (CPU int8 linear layers, per-token activation scales), `compile`
        (`torch.compile`), `padding_free` (packed batches; None = on CUDA when FlashAttention
        varlen is available).
        """
        from transformers import AutoModel, AutoTokenizer

        from hybridfast.models.resolve import resolve_model

        source = resolve_model(str(name_or_dir))
        # float32 unless asked: transformers would otherwise take the dtype of the weights file, and a checkpoint
        # saved in bfloat16 (train's log.save_dtype) should load as the float32 model its config.json describes.
        torch_dtype = _parse_dtype(dtype) or torch.float32
        model = AutoModel.from_pretrained(source, dtype=torch_dtype, add_pooling_layer=False, **model_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source)
        config = EncoderConfig.load(source) if Path(source).is_dir() else None
        encoder = cls(model, tokenizer, config or EncoderConfig(), source=str(source))
        encoder.config_was_defaulted = config is None
        encoder.to(torch.device(device) if device is not None else _default_device())
        encoder.eval()
        encoder.configure_inference(quantize=quantize, compile=compile, padding_free=padding_free)
        return encoder

    def save_pretrained(self, directory: str | Path) -> None:
        """Write weights (safetensors), tokenizer and encoder config into `directory`."""
        if self.quantized:
            raise HybridfastError(f"a {self.quantized}-quantized encoder cannot be saved; save the float model")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        self.config.save(directory)

    def tokenize(self, texts: Sequence[str], kind: TextKind | None = None, *, padding: bool = True) -> Any:
        """Prefix and tokenize texts for `kind` ("query", "passage" or None for raw text)."""
        prefix = self.config.prefix(kind)
        return self.tokenizer(
            [prefix + text for text in texts],
            padding=padding,
            truncation=True,
            max_length=self.config.length_limit(kind),
            return_tensors="pt" if padding else None,
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, L] token ids and mask -> [B, D] pooled (and normalized) embeddings."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, mode=self.config.pooling, normalize=self.config.normalize)

    def embed(self, texts: Sequence[str], kind: TextKind | None = None) -> torch.Tensor:
        """Tokenize and run `forward` on the encoder's device, keeping the autograd graph."""
        batch = self.tokenize(texts, kind)
        return self(batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device))

    def configure_inference(
        self, *, quantize: str | None = None, compile: bool = False, padding_free: bool | None = None
    ) -> None:
        """Set up the inference path used by :meth:`encode`.

        - `quantize="int8"`: int8 `nn.Linear` layers (weights int8 with one scale per output channel,
          activations quantized per token at run time, int32 accumulation; CPU, fp32 models only; see
          `hybridfast.quantization`). The model can no longer be saved or trained.
        - `compile`: run the transformer through `torch.compile(dynamic=True)`; on CPU with inductor
          freezing (weights folded in as constants, prepacked for oneDNN, pointwise ops fused into
          the matmuls), so weights changed after this call are not seen by `encode`.
        - `padding_free`: True packs each batch into one token stream (no padding tokens at all),
          False pads each length-sorted batch to its own longest text, None decides at the first
          `encode`: packed on CUDA when the FlashAttention varlen kernel is available and a
          self-check against the padded path agrees, padded otherwise.
        """
        if quantize not in (None, "int8"):
            raise HybridfastError(f"quantize must be None or 'int8', not {quantize!r}")
        if quantize == "int8":
            self._quantize_int8()
        if compile:
            # Kept out of nn.Module's registry so state_dict / save_pretrained see the plain model.
            options = {"freezing": True} if self.device.type == "cpu" else None
            self.__dict__["_compiled_model"] = torch.compile(self.model, dynamic=True, options=options)
        self._padding_free_request = padding_free
        self._packed: bool | None = None
        self.inference_backend = "undecided (first encode decides)"

    def _quantize_int8(self) -> None:
        from hybridfast.quantization import quantize_int8

        self.quantization = quantize_int8(self.model)
        self.quantized = "int8"

    @property
    def _runner(self) -> nn.Module:
        compiled = self.__dict__.get("_compiled_model")
        return self.model if compiled is None else compiled

    def _token_ids(self, texts: list[str], prefix: str, max_length: int) -> list[list[int]]:
        tokenizer = self.__dict__.get("_parallel_tokenizer")
        if tokenizer is None or tokenizer.tokenizer is not self.tokenizer:
            tokenizer = self.__dict__["_parallel_tokenizer"] = ParallelTokenizer(self.tokenizer)
        try:
            return tokenizer.token_ids([prefix + text for text in texts], max_length)
        except TypeError as err:  # the Rust tokenizer's answer to a lone surrogate ("\ud800"), which has no UTF-8
            for position, text in enumerate(texts):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as bad:
                    raise HybridfastError(f"text {position} is not valid Unicode: {bad.reason} at character "
                                          f"{bad.start} ({text[bad.start]!r})") from err
            raise

    def token_ids(self, texts: Sequence[str], kind: TextKind | None = None) -> list[list[int]]:
        """Token-id rows of texts prefixed and truncated for `kind` (the ids of :meth:`tokenize`, unpadded)."""
        return self._token_ids(list(texts), self.config.prefix(kind), self.config.length_limit(kind))

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def token_batch(self, rows: Sequence[Sequence[int]], packed: bool) -> TokenBatch:
        """Token-id rows as one encoder call on this encoder's device: padded to the rows' own longest, or
        packed into one stream (`packed=True` needs :meth:`enable_packing` first)."""
        if packed:
            input_ids, position_ids, cu_seqlens, longest = pack_batch(rows, self._position_offset)
            return TokenBatch(
                input_ids=self._to_device(input_ids),
                position_ids=self._to_device(position_ids),
                cu_seqlens=self._to_device(cu_seqlens),
                cu_seqlens_host=torch.from_numpy(cu_seqlens),
                max_length=longest,
            )
        input_ids, mask = pad_batch(rows, self.tokenizer.pad_token_id)
        return TokenBatch(input_ids=self._to_device(input_ids), attention_mask=self._to_device(mask))

    def embed_tokens(self, batch: TokenBatch) -> torch.Tensor:
        """[b] texts of a padded or packed :class:`TokenBatch` -> [b, D] pooled (and normalized) embeddings.

        The one forward of training and inference: under `torch.inference_mode` for `encode`, with
        autograd for training (where `hybridfast.train.step` may run it under activation checkpointing).
        """
        if batch.attention_mask is not None:
            hidden = self._runner(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
            return pool(hidden, batch.attention_mask, mode=self.config.pooling, normalize=self.config.normalize)
        hidden = self._runner(
            input_ids=batch.input_ids[None],
            position_ids=batch.position_ids[None],
            cu_seq_lens_q=batch.cu_seqlens,
            cu_seq_lens_k=batch.cu_seqlens,
            max_length_q=batch.max_length,
            max_length_k=batch.max_length,
        ).last_hidden_state[0]
        # The host copy of cu_seqlens: pool_varlen validates it without waiting for the GPU.
        return pool_varlen(hidden, batch.cu_seqlens_host, mode=self.config.pooling, normalize=self.config.normalize)

    def _encode_padded(self, rows: list[list[int]]) -> torch.Tensor:
        return self.embed_tokens(self.token_batch(rows, packed=False))

    def _encode_packed(self, rows: list[list[int]]) -> torch.Tensor:
        return self.embed_tokens(self.token_batch(rows, packed=True))

    def packing_unsupported(self) -> str:
        """Why this model cannot run packed (padding-free) batches, or "" when it can."""
        if packed_position_offset(self.model.config) is None:
            return f"packing is not supported for model type {self.model.config.model_type!r}"
        attn = getattr(self.model.config, "_attn_implementation", None)
        if attn not in ("sdpa", "eager", ATTN_NAME):
            return f"the model uses attn_implementation={attn!r}"
        return ""

    def enable_packing(self) -> None:
        """Switch attention to the varlen function so packed :class:`TokenBatch` es run (padded ones still do:
        without cumulative lengths it is plain SDPA)."""
        reason = self.packing_unsupported()
        if reason:
            raise HybridfastError(f"padding-free batches are not possible here: {reason}")
        self._position_offset = packed_position_offset(self.model.config)
        register_varlen_attention()
        self._set_attention(ATTN_NAME)

    def _set_attention(self, name: str | None) -> None:
        """Switch the transformer's attention implementation (older transformers: via its config)."""
        try:
            self.model.set_attn_implementation(name)
        except Exception:  # older or stricter transformers: the layers read the config at call time
            self.model.config._attn_implementation = name

    def _decide_packing(self) -> bool:
        """Resolve `padding_free` once: switch attention to the varlen function and self-check it."""
        if self._packed is not None:
            return self._packed
        request = self._padding_free_request
        dtype = next(self.model.parameters()).dtype
        fast = flash_varlen_available(self.device, dtype)
        attn = getattr(self.model.config, "_attn_implementation", None)
        reason = ""
        if request is False:
            reason = "padding_free=False"
        elif request is None and not fast:
            reason = "padding-free needs CUDA fp16/bf16 with torch.nn.attention.varlen"
        else:
            reason = self.packing_unsupported()
        if reason:
            if request:
                raise HybridfastError(f"padding_free=True is not possible here: {reason}")
            self._packed = False
            self.inference_backend = f"padded, length-bucketed ({reason})"
            return False
        try:
            self.enable_packing()
            self._packed = True
            probe = self._token_ids(list(_PROBE_TEXTS), "", self.config.max_length)
            agreement = float(
                torch.nn.functional.cosine_similarity(
                    self._encode_packed(probe).float(), self._encode_padded(probe).float()
                ).min()
            )
            threshold = 0.9999 if dtype == torch.float32 else 0.999
            if not agreement >= threshold:
                raise HybridfastError(f"packed and padded embeddings disagree (min cosine {agreement:.5f})")
        except Exception as err:  # any failure of the packed path falls back to padded batches
            self._set_attention(attn)
            self._packed = False
            if request:
                raise HybridfastError(f"padding-free self-check failed: {err}") from err
            warnings.warn(f"padding-free encoding disabled, using padded batches: {err}", stacklevel=3)
            self.inference_backend = f"padded, length-bucketed (packed self-check failed: {err})"
            return False
        kernel = "FlashAttention varlen" if fast else "per-text SDPA"
        self.inference_backend = f"padding-free, packed ({kernel} attention)"
        return True

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        prefix: TextKind | None = None,
        *,
        max_batch_tokens: int | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        as_tensor: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed texts as float32 [n, D] rows in input order; `prefix` selects query/passage prefixing.

        Texts are tokenized in chunks of growing size (256 texts, doubling up to 4096) on several
        threads (see `hybridfast.tokenization`), the next chunk in the background while the current
        one runs; each chunk is sorted by length and batched by a token budget (`max_batch_tokens`,
        counting padding in padded batches; see `hybridfast.batching`; default
        :attr:`default_batch_tokens`), at most `batch_size` texts per batch when given. `max_length` overrides the
        checkpoint's token limit. `on_batch` is called with (texts, real tokens) of each finished
        batch, for progress and throughput displays. Returns
        numpy, or a CPU torch tensor with `as_tensor=True`.
        """
        if isinstance(texts, str):
            raise HybridfastError("encode expects a list of texts, not a single string")
        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise HybridfastError(f"encode: text {position} is a {type(text).__name__}, not a string")
        if max_length is not None and max_length < 2:
            raise HybridfastError(f"max_length must be at least 2, not {max_length}")
        limit = max_length or self.config.length_limit(prefix)
        if max_batch_tokens is None:
            max_batch_tokens = self.default_batch_tokens
        prefix_text = self.config.prefix(prefix)
        packed = self._decide_packing() if texts else False
        parts: list[torch.Tensor] = []
        orders: list[np.ndarray] = []
        bounds = _chunk_bounds(len(texts))
        chunks = [texts[start:end] for start, end in bounds]
        with ThreadPoolExecutor(max_workers=1) as tokenizer_thread:
            pending = tokenizer_thread.submit(self._token_ids, chunks[0], prefix_text, limit) if chunks else None
            for (start, _), following in zip(bounds, [*chunks[1:], None], strict=False):
                token_ids = pending.result()
                if following is not None:  # tokenized in the background while this chunk runs
                    pending = tokenizer_thread.submit(self._token_ids, following, prefix_text, limit)
                embeddings, order = self._encode_planned(token_ids, max_batch_tokens, batch_size, packed, on_batch)
                parts.append(embeddings)
                orders.append(order + start)
        out = self._scatter(parts, orders, len(texts))
        return out if as_tensor else out.numpy()

    def _encode_planned(
        self,
        token_ids: Sequence[Sequence[int]],
        max_batch_tokens: int,
        batch_size: int | None,
        packed: bool,
        on_batch: Callable[[int, int], None] | None,
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Run token-id rows through the planned batches: (float32 embeddings in plan order on the
        device, the row positions of that order)."""
        lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
        batches = plan_batches(lengths, max_batch_tokens, max_batch_size=batch_size, packed=packed)
        parts = []
        for batch in batches:
            rows = [token_ids[i] for i in batch]
            parts.append((self._encode_packed(rows) if packed else self._encode_padded(rows)).float())
            if on_batch is not None:
                on_batch(len(batch), int(lengths[batch].sum()))
        return torch.cat(parts), np.concatenate(batches)

    def _scatter(self, parts: list[torch.Tensor], orders: list[np.ndarray], count: int) -> torch.Tensor:
        """Put plan-ordered embeddings back in input order, as one float32 CPU tensor [count, D]."""
        if not parts:
            return torch.empty(count, self.dim, dtype=torch.float32)
        embeddings = torch.cat(parts)
        out = torch.empty_like(embeddings)
        out[torch.from_numpy(np.concatenate(orders)).to(embeddings.device)] = embeddings
        return out.cpu()

    @torch.inference_mode()
    def encode_token_ids(
        self,
        token_ids: Sequence[Sequence[int]],
        *,
        max_batch_tokens: int | None = None,
        batch_size: int | None = None,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embed already-tokenized rows (e.g. the HTTP server's dynamic batches) as float32 [n, D] in input order.

        The same lean path as :meth:`encode` (length-sorted batches within `max_batch_tokens`,
        packed or padded as decided for this encoder), without tokenization.
        """
        if not token_ids:
            return np.empty((0, self.dim), dtype=np.float32)
        if max_batch_tokens is None:
            max_batch_tokens = self.default_batch_tokens
        packed = self._decide_packing()
        embeddings, order = self._encode_planned(token_ids, max_batch_tokens, batch_size, packed, on_batch)
        return self._scatter([embeddings], [order], len(token_ids)).numpy()

    def encode_queries(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray | torch.Tensor:
        """:meth:`encode` with the checkpoint's query prefix and query length limit."""
        return self.encode(texts, "query", **kwargs)

    def encode_passages(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray | torch.Tensor:
        """:meth:`encode` with the checkpoint's passage prefix and passage length limit."""
        return self.encode(texts, "passage", **kwargs)


# Texts per tokenizer call and batch plan: the first chunk is small so that the first batches start early (on a
# GPU the rest of the text tokenizes while they run), then chunks double up to a size that sorts well by length.
_FIRST_TOKENIZE_CHUNK = 256
_TOKENIZE_CHUNK = 4096


def _chunk_bounds(count: int) -> list[tuple[int, int]]:
    """[start, end) of the tokenize-and-plan chunks over `count` texts: 256, 512, ... up to 4096 texts each."""
    bounds, start, size = [], 0, _FIRST_TOKENIZE_CHUNK
    while start < count:
        bounds.append((start, min(count, start + size)))
        start += size
        size = min(2 * size, _TOKENIZE_CHUNK)
    return bounds

# Self-check texts for padding-free mode: varied lengths, several scripts.
_PROBE_TEXTS = (
    "short",
    "The Rhine flows through Germany and the Netherlands into the North Sea. " * 6,
    "Der Rhein fließt durch Deutschland und die Niederlande.",
    "莱茵河流经德国和荷兰。" * 3,
    "Где находится река Рейн? " * 12,
)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise HybridfastError(f"unknown dtype {dtype!r}; use one of {sorted(names)}")
    return names[dtype]
