"""Entry for `accelerate launch train ...` (repository root) and `accelerate launch -m hybridfast.train`."""

import sys
from pathlib import Path

if not __package__:
    # Run as `python train` (what `accelerate launch train` does): drop this folder from the
    # import path so its modules (config, loss, ...) cannot shadow top-level packages.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]

from hybridfast.train.cli import main  # noqa: E402

main()
