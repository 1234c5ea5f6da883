"""The README's `accelerate launch` commands state accelerate's defaults, so the launcher prints no "had defaults
used instead" warning (it did with `accelerate launch train ...` and no `accelerate config`)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_launch_commands() -> list[str]:
    """The README's full `accelerate launch ... --config ...` commands (not shorthand mentions)."""
    text = re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))
    return [command for command in re.findall(r"`(accelerate launch [^`]*)`", text) if " --config " in command]


@pytest.mark.multiprocess
def test_readme_launch_flags_silence_accelerates_default_warning(tmp_path: Path) -> None:
    commands = readme_launch_commands()
    assert commands, "the README shows no accelerate launch command"
    script = tmp_path / "rank.py"
    script.write_text("import os, pathlib\npathlib.Path(f\"rank-{os.environ.get('RANK', '0')}\").touch()\n")
    for command in commands:
        launcher = shlex.split(command)[2:]
        launcher = launcher[: launcher.index("train")]  # the launcher's own flags; `train --config ...` follows
        assert "--num_processes" in launcher, command
        env = {key: value for key, value in os.environ.items() if not key.startswith("ACCELERATE_")}
        env["HF_HOME"] = str(tmp_path / "hf-home")  # no accelerate config file from this machine's user
        workdir = tmp_path / f"run-{commands.index(command)}"
        workdir.mkdir()
        out = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", *launcher, str(script)],
                             cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        processes = int(launcher[launcher.index("--num_processes") + 1])
        assert sorted(path.name for path in workdir.glob("rank-*")) == [f"rank-{r}" for r in range(processes)]
        assert "had defaults used instead" not in out.stderr, out.stderr
