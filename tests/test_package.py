"""Package layout: one installed namespace, the CLI shell, README and CI in agreement."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["data", "models", "train", "eval", "encode", "index", "search", "serve", "bench"]


def test_namespace_imports() -> None:
    import hybridfast.kernels
    import hybridfast.serve
    import hybridfast.train

    assert Path(hybridfast.kernels.__file__).parent.name == "kernels"
    assert Path(hybridfast.train.__file__).parent.name == "train"
    assert Path(hybridfast.serve.__file__).parent.name == "serve"


@pytest.mark.parametrize("bare", ["kernels", "train", "serve"])
def test_no_bare_top_level_package(bare: str) -> None:
    """Nothing named kernels/train/serve may be importable from outside the repository root."""
    code = f"import importlib.util, sys; print(importlib.util.find_spec({bare!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    spec_repr = out.stdout.strip()
    assert str(ROOT) not in spec_repr, f"bare package {bare!r} resolves into the repository: {spec_repr}"


def test_cli_lists_subcommands() -> None:
    out = subprocess.run([sys.executable, "-m", "hybridfast", "--help"], capture_output=True, text=True, check=True)
    for name in SUBCOMMANDS:
        assert re.search(rf"│ {name}\b", out.stdout), f"`hybridfast --help` lacks {name}"


def test_train_entry_from_repository_root() -> None:
    """`accelerate launch train ...` runs `python train ...`: the directory's __main__ must answer --help."""
    out = subprocess.run([sys.executable, "train", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout


def test_ci_runs_the_readme_commands_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    block = re.search(r"## Set up \(fresh machine\)\s+```bash\n(.*?)```", readme, re.S)
    assert block, "README lacks the set-up block"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2, "README must give exactly two set-up commands"
    for command in commands:
        assert command in ci, f".ci/run does not run the README command {command!r}"


def test_transformers_import_unaffected() -> None:
    """transformers probes for a PyPI package named `kernels`; ours must not shadow it."""
    assert importlib.util.find_spec("transformers") is not None
    subprocess.run([sys.executable, "-c", "import transformers.modeling_utils"], cwd="/", check=True)
