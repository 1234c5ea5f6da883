"""Entry for `accelerate launch train ...` (repository root) and `accelerate launch -m hybridfast.train`."""

from hybridfast.train.cli import main

main()
