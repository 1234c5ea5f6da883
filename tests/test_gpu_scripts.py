"""The GPU scripts cannot run here, but what can break them before a (scarce) device call is checked: bash syntax,
and every `hybridfast` command and example script they call taking the flags they pass."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer

from hybridfast.cli import app

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [ROOT / "benchmarks" / "gpu_check.sh", ROOT / "benchmarks" / "gpu_prepare.sh",
           ROOT / "benchmarks" / "gpu_package.sh", ROOT / "benchmarks" / "research" / "gpu_run.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_gpu_scripts_parse(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _invocations(script: Path, marker: str) -> list[list[str]]:
    """The argument lists after `marker` on the script's command lines (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", script.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        if marker in line and not line.lstrip().startswith("#"):
            rest = line.split(marker, 1)[1]
            found.append(shlex.split(rest.replace('"', '')))
    return found


def _options(path: list[str]) -> set[str]:
    node = typer.main.get_command(app)
    known = {flag for p in node.params if p.param_type_name == "option" for flag in (*p.opts, *p.secondary_opts)}
    for name in path:
        node = node.commands[name]
        known |= {flag for p in node.params if p.param_type_name == "option" for flag in (*p.opts, *p.secondary_opts)}
    return known


def test_gpu_check_hybridfast_commands_take_their_flags() -> None:
    calls = _invocations(ROOT / "benchmarks" / "gpu_check.sh", '"${HF[@]}"')
    assert {tuple(call[:2]) for call in calls} == {("bench", "train"), ("bench", "kernels"), ("bench", "encode")}
    for call in calls:
        flags = [token.split("=")[0] for token in call[2:] if token.startswith("--")]
        assert [flag for flag in flags if flag not in _options(call[:2])] == [], call[:2]


def test_gpu_check_example_script_takes_its_flags() -> None:
    (call,) = _invocations(ROOT / "benchmarks" / "gpu_check.sh", "examples/st_side_by_side.py")
    source = (ROOT / "examples" / "st_side_by_side.py").read_text(encoding="utf-8")
    assert [flag for flag in call if flag.startswith("--") and f'"{flag}"' not in source] == []
