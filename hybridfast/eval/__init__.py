"""Evaluation: LAReQA mAP and language bias, BEIR, Tatoeba, paired significance tests.

Public API (imported lazily, so that `hybridfast --help` stays fast):

- `evaluate(model, task, data, ...)`: the Python twin of `hybridfast eval`;
- `evaluate_lareqa(encoder, dataset, ...)`, `evaluate_beir(encoder, dataset, ...)`,
  `evaluate_tatoeba(encoder, pairs, ...)`: one task on an already loaded encoder and dataset;
- `compare_results(a, b, ...)`: paired significance tests between two result dicts;
- `load_result(path)`, `save_result(result, path)`, `result_markdown(result)`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "evaluate": "hybridfast.eval.runner",
    "result_markdown": "hybridfast.eval.runner",
    "evaluate_lareqa": "hybridfast.eval.lareqa",
    "evaluate_beir": "hybridfast.eval.beir",
    "evaluate_tatoeba": "hybridfast.eval.tatoeba",
    "compare_results": "hybridfast.eval.compare",
    "load_result": "hybridfast.eval.results",
    "save_result": "hybridfast.eval.results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hybridfast.eval' has no attribute {name!r}")
