"""Learning curves: held-out XQuAD-R scores every K training steps, through `hybridfast train`'s eval hook.

The hook evaluates a fixed subset of the held-out articles (all languages, the multilingual pool of those
articles, candidates in the same format as the final evaluation) with the encoder being trained, switched to
evaluation mode by the loop, and at the evaluation's max lengths. `hybridfast train` writes what it returns to
`metrics.jsonl` as `{"step": s, "eval": {...}}`; the driver copies the points into the run's training summary.
A curve that is still rising at the last step says the run was too short to show where the strategies end up.
"""

from __future__ import annotations

import dataclasses
from typing import Any

CURVE_METRICS = (("multi", "map"), ("mono", "map"), ("cross", "map"), ("multi", "rank_distance"))


def curve_articles(held_out: frozenset[str] | set[str], count: int) -> list[str]:
    """The first `count` held-out article keys in sorted order (all when `count` is 0 or too large)."""
    ordered = sorted(held_out)
    return ordered if count <= 0 else ordered[:count]


def curve_point(result: dict[str, Any]) -> dict[str, float]:
    """The curve's numbers from a LAReQA result: `{"multi_map": ..., "mono_map": ..., ...}`."""
    return {f"{setting}_{metric}": result["metrics"][setting][metric]
            for setting, metric in CURVE_METRICS if setting in result["metrics"]}


class LareqaCurveHook:
    """`hook(encoder, step=, output_dir=)` for `hybridfast.train.loop.train(eval_fn=...)`."""

    def __init__(self, dataset: Any, *, query_max_length: int, passage_max_length: int, batch_size: int,
                 with_context: bool):
        self.dataset = dataset
        self.query_max_length = query_max_length
        self.passage_max_length = passage_max_length
        self.batch_size = batch_size
        self.with_context = with_context

    def evaluate(self, encoder: Any) -> dict[str, float]:
        from hybridfast.eval.lareqa import evaluate_lareqa

        training_config = encoder.config
        encoder.config = dataclasses.replace(training_config, query_max_length=self.query_max_length,
                                             passage_max_length=self.passage_max_length)
        try:
            result = evaluate_lareqa(encoder, self.dataset, with_context=self.with_context,
                                     batch_size=self.batch_size, progress=False)
        finally:
            encoder.config = training_config
        return curve_point(result)

    def __call__(self, encoder: Any, *, step: int, output_dir: Any) -> dict[str, float]:
        return self.evaluate(encoder)
