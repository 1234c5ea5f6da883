"""Packing the GPU run's model into call-sized shards and putting it back together."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

RESEARCH = Path(__file__).resolve().parents[2] / "benchmarks" / "research"


def _gpu_carry():
    spec = importlib.util.spec_from_file_location("research_gpu_carry", RESEARCH / "gpu_carry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_row_blocks_round_trip_and_balance_the_shards():
    import torch

    carry = _gpu_carry()
    big = torch.randn(1000, 24)
    tensors = {"emb": big, "w": torch.randn(30, 24), "scalar": torch.tensor(1.0)}
    blocks = carry.row_blocks(tensors, chunk_bytes=big.numel() * 4 // 4)
    assert sorted(k for k in blocks if k.startswith("emb")) == [f"emb{carry.BLOCK}{i}" for i in range(4)]
    joined = carry.join_blocks(blocks)
    assert set(joined) == set(tensors) and torch.equal(joined["emb"], big) and torch.equal(joined["w"], tensors["w"])
    sizes = [sum(t.numel() for t in g.values()) for g in carry.split_state(blocks, 2)]
    assert abs(sizes[0] - sizes[1]) <= 30 * 24 + 1


def test_split_state_balances_bytes():
    import torch

    carry = _gpu_carry()
    tensors = {"big": torch.zeros(100), "a": torch.zeros(40), "b": torch.zeros(35), "c": torch.zeros(30)}
    groups = carry.split_state(tensors, 2)
    assert sorted(name for g in groups for name in g) == sorted(tensors)
    sizes = sorted(sum(t.numel() for t in g.values()) for g in groups)
    assert sizes == [100, 105]


def test_pack_and_assemble_round_trip(tmp_path: Path, tiny_model_dir: Path, data_root: Path):
    import hybridfast

    carry = _gpu_carry()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "dummy-0.1-py3-none-any.whl").write_bytes(b"wheel")
    manifest = carry.pack(tiny_model_dir, data_root, wheels, tmp_path / "carry")
    assert set(manifest["shards"]) == {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    for part in ("part1", "part2", "part3"):
        assert (tmp_path / "carry" / part).is_dir()
    assert (tmp_path / "carry" / "part3" / "data" / "xquad-r").is_dir()
    model = carry.assemble(tmp_path / "carry", tmp_path / "model")
    assert (model / carry.WEIGHTS_FILE).is_file() and json.loads((model / "config.json").read_text())
    original = hybridfast.load(str(tiny_model_dir), device="cpu")
    rebuilt = hybridfast.load(str(model), device="cpu")  # bf16-stored weights, loaded in fp32
    texts = ["Wo ist der Rhein?", "The Rhine flows through Germany."]
    cosine = (original.encode_passages(texts) * rebuilt.encode_passages(texts)).sum(axis=1)
    assert np.all(cosine > 0.999)

    shard = tmp_path / "carry" / "part2" / "model-00002-of-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte, as a broken transfer would leave
    shard.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="sha256 differs"):
        carry.assemble(tmp_path / "carry", tmp_path / "model2")
    shard.unlink()
    with pytest.raises(SystemExit, match="missing: the call that carries part2"):
        carry.assemble(tmp_path / "carry", tmp_path / "model3")
