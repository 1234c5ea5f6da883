"""Pack what the GPU run needs into parts that each fit one device call, and put them together there.

A device call carries at most 64 MiB (the repository included). The GPU run needs the start model (the
vocabulary-pruned multilingual-e5-small, ~50 M parameters: ~100 MB in bf16), the data (XQuAD-R, SciFact,
Tatoeba: ~8 MB) and two wheels the GPU image lacks (faiss-cpu, pytrec-eval-terrier: ~19 MB). `pack` writes

    {out}/part1/  the first half of the weights (a safetensors shard)
    {out}/part2/  the second half
    {out}/part3/  config, tokenizer and encoder files, the data folders, the wheels, and MANIFEST.json
                  (sha256 of every shard)

each under `max_part_bytes` (the repository travels with every call too); calls 1 and 2 carry a shard each (the
GPU machine keeps ignored files between calls while it stays warm), call 3 carries part3 and runs. Tensors larger
than `CHUNK_BYTES` (the 57 MB embedding matrix) are cut into row blocks so that the two shards weigh the same.
`assemble` checks the manifest, joins the blocks and writes one `model.safetensors`; weights are stored in bf16
and loaded in fp32 for training, so the zero-shot model and every run start from the same bf16-rounded weights.

    python benchmarks/research/gpu_carry.py pack --model runs/research/cpu-reduced/start-model --out runs/gpu-carry
    python benchmarks/research/gpu_carry.py assemble --parts runs/gpu-carry --out runs/gpu-carry/model
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "model.safetensors"
CHUNK_BYTES = 16 << 20
BLOCK = "::rows"  # a row block of a larger tensor is stored as f"{name}{BLOCK}{i}"
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "hybridfast_encoder.json", "sentencepiece.bpe.model")
DATA_FOLDERS = ("xquad-r", "beir-scifact", "tatoeba-laser")
MiB = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def row_blocks(tensors: dict[str, Any], chunk_bytes: int = CHUNK_BYTES) -> dict[str, Any]:
    """Tensors larger than `chunk_bytes` cut into row blocks named f"{name}{BLOCK}{i}" (the rest unchanged)."""
    out = {}
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        if size <= chunk_bytes or tensor.dim() == 0:
            out[name] = tensor
            continue
        pieces = -(-size // chunk_bytes)
        for i, block in enumerate(tensor.chunk(pieces, dim=0)):
            out[f"{name}{BLOCK}{i}"] = block.contiguous()
    return out


def join_blocks(tensors: dict[str, Any]) -> dict[str, Any]:
    """Undo `row_blocks`: concatenate each tensor's row blocks in order."""
    import torch

    blocks: dict[str, dict[int, Any]] = {}
    out = {}
    for name, tensor in tensors.items():
        base, _, index = name.partition(BLOCK)
        if index:
            blocks.setdefault(base, {})[int(index)] = tensor
        else:
            out[name] = tensor
    for base, parts in blocks.items():
        out[base] = torch.cat([parts[i] for i in range(len(parts))], dim=0)
    return out


def split_state(tensors: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """Split a state dict into `parts` groups of about equal bytes, largest tensors first (greedy)."""
    groups: list[dict[str, Any]] = [{} for _ in range(parts)]
    sizes = [0] * parts
    for name, tensor in sorted(tensors.items(), key=lambda kv: -kv[1].numel() * kv[1].element_size()):
        smallest = sizes.index(min(sizes))
        groups[smallest][name] = tensor
        sizes[smallest] += tensor.numel() * tensor.element_size()
    return groups


def pack(model: Path, data_root: Path, wheels: Path, out: Path, max_part_bytes: int = 58 * MiB) -> dict[str, Any]:
    """Write part1..part3 under `out` (module docstring); returns the manifest."""
    import torch
    from safetensors.torch import load_file, save_file

    state = {name: t.to(torch.bfloat16).contiguous() for name, t in load_file(str(model / WEIGHTS_FILE)).items()}
    shards = split_state(row_blocks(state), 2)
    if out.exists():
        shutil.rmtree(out)
    manifest: dict[str, Any] = {"source": str(model), "dtype": "bfloat16", "shards": {}}
    for index, shard in enumerate(shards, start=1):
        name = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        path = out / f"part{index}" / name
        path.parent.mkdir(parents=True)
        save_file(shard, str(path), metadata={"format": "pt"})
        manifest["shards"][name] = {"part": f"part{index}", "sha256": _sha256(path), "bytes": path.stat().st_size}
    part3 = out / "part3"
    (part3 / "model").mkdir(parents=True)
    for name in MODEL_FILES:
        if (model / name).is_file():
            shutil.copy2(model / name, part3 / "model" / name)
    config = json.loads((part3 / "model" / "config.json").read_text())
    config["torch_dtype"] = "bfloat16"
    (part3 / "model" / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for folder in DATA_FOLDERS:
        shutil.copytree(data_root / folder, part3 / "data" / folder)
    shutil.copytree(wheels, part3 / "wheels")
    (part3 / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for part in ("part1", "part2", "part3"):
        size = _size(out / part)
        if size > max_part_bytes:
            raise SystemExit(f"{out / part}: {size / MiB:.1f} MiB is over the {max_part_bytes / MiB:.0f} MiB a call carries")
        print(f"{out / part}: {size / MiB:.1f} MiB")
    return manifest


def assemble(parts: Path, out: Path) -> Path:
    """Check every shard against the manifest, join them and write the checkpoint folder `out`."""
    from safetensors.torch import load_file, save_file

    manifest = json.loads((parts / "part3" / "MANIFEST.json").read_text())
    tensors: dict[str, Any] = {}
    for name, info in manifest["shards"].items():
        source = parts / info["part"] / name
        if not source.is_file():
            raise SystemExit(f"{source}: missing: the call that carries {info['part']} has not run on this machine "
                             "(it keeps carried files only while it stays warm)")
        if _sha256(source) != info["sha256"]:
            raise SystemExit(f"{source}: sha256 differs from the manifest (a broken transfer)")
        tensors.update(load_file(str(source)))
    out.mkdir(parents=True, exist_ok=True)
    save_file(join_blocks(tensors), str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    for path in (parts / "part3" / "model").iterdir():
        shutil.copy2(path, out / path.name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pack the GPU run's model, data and wheels into call-sized parts, "
                                                 "or put them together on the GPU machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="write part1..part3 (here, on the CPU machine)")
    p.add_argument("--model", type=Path, required=True, help="the start model folder (single model.safetensors)")
    p.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"), help="the data root")
    p.add_argument("--wheels", type=Path, required=True, help="folder of the wheels to carry")
    p.add_argument("--out", type=Path, required=True, help="output folder (git-ignored), e.g. runs/gpu-carry")
    a = sub.add_parser("assemble", help="check the shards and write the model folder (on the GPU machine)")
    a.add_argument("--parts", type=Path, required=True, help="the folder holding part1..part3")
    a.add_argument("--out", type=Path, required=True, help="the model folder to write")
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.model, args.data_dir, args.wheels, args.out)
    else:
        print(f"assembled {assemble(args.parts, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
