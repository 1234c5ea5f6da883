"""Quiet by default: third-party output that tells a user of the command line nothing, dropped at the CLI boundary.

`quiet_third_party()` is called once by each entry point (`hybridfast ...` and `accelerate launch train ...`) unless
`--verbose` (or `HYBRIDFAST_VERBOSE=1`) asks for everything. What it drops, and why each says nothing:

- the tqdm bars of transformers and huggingface_hub ("Loading weights", "Writing model shards"): the steps of
  loading or saving one checkpoint, which hybridfast's own progress display already covers. Both libraries read
  `HF_HUB_DISABLE_PROGRESS_BARS` when imported (a value the user set wins);
- DeepSpeed's "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it." and
  "Setting ds_accelerator to ...": logged whenever transformers imports DeepSpeed's integration (every checkpoint
  save) on a machine without a GPU, where hybridfast runs on the CPU by design;
- transformers' load report when the only keys it lists are XLM-R's pooler (`pooler.dense.* | MISSING ... Consider
  training on your downstream task`): hybridfast encoders pool token states themselves and never use that layer
  (our checkpoints tell sentence-transformers not to build it; older ones still trigger the report).

Nothing is imported: the filters attach to logger names and the environment, so that this stays cheap for
`hybridfast --help`.
"""

from __future__ import annotations

import logging
import os
import re
import sys

VERBOSE_ENV = "HYBRIDFAST_VERBOSE"
"""Set to 1 to keep all third-party output: the environment variable behind every `--verbose` option."""

_DEEPSPEED_NOISE = re.compile(r"^Setting (accelerator to CPU\b|ds_accelerator to )")
_REPORT_ROW = re.compile(r"^(\S+)\s*\|")


class DropMatching(logging.Filter):
    """Drops the log records whose message matches `pattern`."""

    def __init__(self, pattern: re.Pattern[str]):
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


class DropPoolerOnlyLoadReport(logging.Filter):
    """Drops a transformers load report whose key rows all name `pooler.*` (the layer hybridfast never uses)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        keys = [match.group(1) for line in message.splitlines() if (match := _REPORT_ROW.match(line))]
        keys = [key for key in keys if key != "Key"]
        return not (keys and all(key.startswith("pooler.") for key in keys))


def _add_filter_once(logger_name: str, log_filter: logging.Filter) -> None:
    logger = logging.getLogger(logger_name)
    if not any(type(existing) is type(log_filter) and vars(existing) == vars(log_filter) for existing in logger.filters):
        logger.addFilter(log_filter)


def quiet_third_party() -> None:
    """Install the filters of the module docstring (idempotent); call it before models are loaded or saved."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
        # Already imported libraries read the variable too early: switch their bars off directly.
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        if "transformers" in sys.modules:
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
    _add_filter_once("DeepSpeed", DropMatching(_DEEPSPEED_NOISE))
    _add_filter_once("transformers.modeling_utils", DropPoolerOnlyLoadReport())
