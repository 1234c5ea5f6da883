"""One spelling per concept across the command line, a help text on every option, and help texts that agree with
the README's measured numbers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from hybridfast.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> dict[str, Any]:
    """Every command of the app by its path (typer's click command objects)."""
    found: dict[str, Any] = {}

    def walk(command: Any, path: list[str]) -> None:
        found[" ".join(path)] = command
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), ["hybridfast"])
    return found


COMMANDS = _commands()


def _flags(command: Any) -> set[str]:
    return {flag for param in command.params if param.param_type_name == "option"
            for flag in (*param.opts, *param.secondary_opts)}


def test_every_command_and_option_says_what_it_is_for() -> None:
    for path, command in COMMANDS.items():
        assert (command.help or "").strip(), f"`{path}` has no help"
        for param in command.params:
            assert (getattr(param, "help", "") or "").strip(), f"`{path}` {param.name}: no help"


@pytest.mark.parametrize(
    ("flag", "commands"),
    [
        # a model to load: --model (the `models` group takes it as its argument)
        ("--model", ["encode", "search", "serve", "eval", "bench encode", "bench train"]),
        # the root holding xquad/, xquad-r/, beir-scifact/, tatoeba-laser/
        ("--data-dir", ["train", "data stats", "data download", "eval", "bench encode", "bench train"]),
        ("--device", ["encode", "search", "serve", "eval", "bench encode", "bench train", "bench kernels"]),
        ("--max-batch-tokens", ["encode", "search", "serve", "bench encode"]),
        ("--int8", ["encode", "search", "serve", "bench encode"]),
    ],
)
def test_one_spelling_per_concept(flag: str, commands: list[str]) -> None:
    missing = [name for name in commands if flag not in _flags(COMMANDS[f"hybridfast {name}"])]
    assert missing == [], f"{flag} is spelled differently (or missing) in: {missing}"


def test_verbose_is_global() -> None:
    assert "--verbose" in _flags(COMMANDS["hybridfast"])


def test_compile_help_and_readme_give_the_measured_time() -> None:
    from hybridfast.serve.cli import COMPILE_HELP

    measured = "20-25 s"
    assert measured in COMPILE_HELP
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert f"about {measured} of compiling on an idle 2-core CPU" in readme
