#!/usr/bin/env bash
# The real-scale research run (benchmarks/research/gpu_full.toml) on one H100, in four device calls.
#
# 1. Here, on the CPU machine (once):
#      bash benchmarks/research/gpu_run.sh pack
#    writes runs/gpu-carry/part1 and part2 (48 MiB each: the two halves of the bf16 weights, the embedding matrix
#    cut into row blocks) and part3 (32 MiB: config and tokenizer, XQuAD-R / SciFact / Tatoeba, the faiss-cpu and
#    pytrec-eval-terrier wheels); each fits one call's 64 MiB with the repository. runs/ is git-ignored.
# 2. Device calls (the machine keeps carried files between calls while it stays warm, 30 s after each: make the
#    calls back to back):
#      run(command="bash benchmarks/research/gpu_run.sh receive", carry=["runs/gpu-carry/part1"], timeout_s=120)
#      run(command="bash benchmarks/research/gpu_run.sh receive", carry=["runs/gpu-carry/part2"], timeout_s=120)
#      run(command="bash benchmarks/research/gpu_run.sh run", carry=["runs/gpu-carry/part3"], timeout_s=600)
#    The run stops itself DEADLINE seconds (default 540) after it starts and packs what it has into $OUT
#    (gpu-full-results.tar.gz, log.txt). Every step is resumable: if the log says steps are missing, the same
#    third call again (machine still warm) continues where it stopped.
# 3. Here again, with the fetched files:
#      bash benchmarks/research/gpu_run.sh finish /path/to/gpu-full-results.tar.gz
#    unpacks the results into benchmarks/research/results/gpu-full/, runs the compare stage (the bootstrap tests
#    need no GPU) and writes benchmarks/research/REPORT-gpu.md.
set -u
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
CARRY="$REPO/runs/gpu-carry"
CONFIG="benchmarks/research/gpu_full.toml"
RESULTS="benchmarks/research/results/gpu-full"
cd "$REPO"

case "${1:-}" in
pack)
  set -e
  mkdir -p runs/gpu-wheels
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d runs/gpu-wheels \
    faiss-cpu==1.15.1 pytrec-eval-terrier==0.5.11
  # The start model: the CPU run's vocabulary-pruned multilingual-e5-small (its pruning corpus covers every
  # text the GPU run encodes), or build it with the CPU config's pruning first.
  test -f runs/research/cpu-reduced/start-model/model.safetensors || \
    python -c "import sys; sys.path.insert(0, 'benchmarks/research'); import experiment; from pathlib import Path; \
experiment.Experiment(experiment.load_settings(Path('benchmarks/research/cpu_reduced.toml')), \
Path('${HYBRIDFAST_DATA:-/work/shared/data}'), print).zero_shot_model()"
  python benchmarks/research/gpu_carry.py pack --model runs/research/cpu-reduced/start-model \
    --data-dir "${HYBRIDFAST_DATA:-/work/shared/data}" --wheels runs/gpu-wheels --out "$CARRY"
  ;;

receive)
  # Calls 1 and 2 only bring a shard; show what has arrived so far.
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  ls -la "$CARRY"/part* 2>/dev/null
  du -sh "$CARRY"/part* 2>/dev/null
  ;;

run)
  STARTED=$(date +%s)
  DEADLINE="${DEADLINE:-540}"
  OUT="${OUT:-$REPO/runs/gpu-out}"
  mkdir -p "$OUT"
  exec > >(tee -a "$OUT/log.txt") 2>&1
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  unset TRITON_INTERPRET
  date -u
  nvidia-smi || true
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$CARRY"/part3/wheels/*.whl && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" || exit 1
  # hybridfast is not installed there: an editable install, or else a shim package (benchmarks/gpu_package.sh).
  . "$REPO/benchmarks/gpu_package.sh"
  hybridfast_importable "$REPO" "import hybridfast.train, hybridfast.eval.compare, faiss, pytrec_eval"
  python3 -c "import torch, hybridfast, faiss, pytrec_eval; print('torch', torch.__version__, torch.cuda.get_device_name(), 'hybridfast from', hybridfast.__file__)" || exit 1
  test -f "$CARRY/model/model.safetensors" || python3 benchmarks/research/gpu_carry.py assemble --parts "$CARRY" --out "$CARRY/model" || exit 1
  export HYBRIDFAST_DATA="$CARRY/part3/data"
  LEFT=$(( DEADLINE - ($(date +%s) - STARTED) - 30 ))
  echo "experiment: ${LEFT} s left for the quality and timing stages"
  timeout --signal=INT "$LEFT" python3 benchmarks/research/experiment.py --config "$CONFIG" --stages train,eval,timing
  echo "experiment exit status $? after $(( $(date +%s) - STARTED )) s"
  grep -c '"status": "done"' "$RESULTS/steps.jsonl" || true
  tar czf "$OUT/gpu-full-results.tar.gz" -C benchmarks/research/results gpu-full
  ls -la "$OUT"
  ;;

finish)
  set -e
  ARCHIVE="${2:?usage: gpu_run.sh finish PATH/gpu-full-results.tar.gz}"
  mkdir -p benchmarks/research/results
  tar xzf "$ARCHIVE" -C benchmarks/research/results
  test -f "$CARRY/model/model.safetensors" || python benchmarks/research/gpu_carry.py assemble --parts "$CARRY" --out "$CARRY/model"
  python benchmarks/research/experiment.py --config "$CONFIG" --stages compare
  python benchmarks/research/report.py --results "$RESULTS" --out benchmarks/research/REPORT-gpu.md
  ;;

*)
  echo "usage: bash benchmarks/research/gpu_run.sh pack | receive | run | finish ARCHIVE   (see the header)" >&2
  exit 2
  ;;
esac
