"""Tokenizing many texts on several CPU threads for the lean encode path.

On a GPU the encoder outruns a single tokenizer thread: multilingual-e5-small in bf16 embeds SciFact passages at
~2.6 M tokens/s on an H200, while one thread of the Rust tokenizer makes ~0.5 M tokens/s. Calling a transformers
fast tokenizer from several threads is unsafe (each call reconfigures truncation on the shared Rust object), and
the Rust tokenizer's own thread pool is off under ``TOKENIZERS_PARALLELISM=false`` and after a fork. So this keeps
one private copy of the Rust tokenizer per truncation length, configured once, and splits a list of texts over a
pool of Python threads: ``encode_batch`` and ``encode_batch_fast`` release the GIL, so the slices run in
parallel. The ids equal the transformers call with ``truncation=True, max_length=...``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Any

# At most this many tokenizer threads (past ~8 the slices get small and the gain flattens).
MAX_THREADS = 8
# Texts per slice handed to one thread, at least.
MIN_SLICE = 16


def default_threads() -> int:
    """Tokenizer threads: the CPUs this process may use, at most MAX_THREADS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cpus))


class ParallelTokenizer:
    """``token_ids(texts, max_length)``: token-id lists of a Hugging Face tokenizer, tokenized on ``threads`` threads.

    Tokenizers without a Rust backend (slow, pure-Python ones) are called as they are, on the calling thread.
    """

    def __init__(self, tokenizer: Any, threads: int | None = None):
        self.tokenizer = tokenizer
        self.threads = threads or default_threads()
        self._backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        self._by_length: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def token_ids(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Ids with special tokens, truncated to ``max_length`` tokens, in input order."""
        texts = list(texts)
        if self._backend is None:
            return self.tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False,
                                  return_token_type_ids=False)["input_ids"]
        backend = self._truncating(max_length)
        # encode_batch_fast (tokenizers >= 0.20) skips the character offsets nobody reads here; the ids are the same.
        # No CPU saving could be resolved: side by side on the shared 2-core EPYC (e5's tokenizer, SciFact passages,
        # medians of process CPU time) it ranged from 2 % less to 17 % more with the machine's load.
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        slices = max(1, min(self.threads, len(texts) // MIN_SLICE))
        if slices == 1:
            return [encoding.ids for encoding in encode(texts)]
        step = -(-len(texts) // slices)
        parts = [texts[start : start + step] for start in range(0, len(texts), step)]
        encoded = self._executor().map(encode, parts)
        return [encoding.ids for encoding in chain.from_iterable(encoded)]

    def _truncating(self, max_length: int) -> Any:
        """This tokenizer's Rust backend, copied once per length, truncating like the transformers call."""
        with self._lock:
            backend = self._by_length.get(max_length)
            if backend is None:
                from tokenizers import Tokenizer

                backend = Tokenizer.from_str(self._backend.to_str())
                backend.no_padding()
                backend.enable_truncation(max_length, direction=getattr(self.tokenizer, "truncation_side", "right"))
                self._by_length[max_length] = backend
            return backend

    def __getstate__(self) -> dict[str, Any]:
        # Copies and pickles (model deep copies, worker processes) get their own lock, pool and backend copies.
        return {"tokenizer": self.tokenizer, "threads": self.threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tokenizer"], state["threads"])

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="hybridfast-tokenize")
            return self._pool
