#!/usr/bin/env bash
# One GPU device call, about 8 minutes, most valuable first; every step has its own time limit, so a slow step
# cannot eat the rest, and every step runs even when an earlier one fails. Results (JSON, PNG) go to $OUT, the
# whole log to $OUT/log.txt. At most 8 files come back from $OUT (2 folders deep): each step writes few.
#
#   Here, once:   bash benchmarks/gpu_prepare.sh          (fills .gpu_carry/: e5's tokenizer and the datasets)
#   Device call:  run(command="bash benchmarks/gpu_check.sh", carry=[".gpu_carry"], timeout_s=600)
#
# Steps (STEPS, comma-separated, in this order; default train,kernels,encode):
#   train      hybridfast bench train, random-weight e5-small, bf16, batches 256 ... 65,536: hybridfast cached /
#              plain / naive loss against sentence-transformers MNRL / CachedMNRL and our losses in ST's step
#              (issues 13, 17)                                                            ≤ LIMIT_TRAIN  (180 s)
#   kernels    a. forced re-tune: the first call of the real 128/256-row configs against float64, and the
#                 device-side temperature assert                                          ≤ LIMIT_RETUNE (60 s)
#              b. the kernel sweep: d=768 65,536² and 32,768², d=384 65,536², 4,096² triton vs naive (synced,
#                 queued, CUDA graph), stage breakdown, first call vs later, float64 checks, pooling padded and
#                 varlen against the copy bandwidth of the same run (issue 15)            ≤ LIMIT_SWEEP  (130 s)
#   encode     bench encode on 100,000 SciFact-length passages with the time breakdown, lean vs unfused
#              (issue 15)                                                                 ≤ LIMIT_ENCODE (110 s)
#   st-example examples/st_side_by_side.py with the offline model: ST's losses and ours in SentenceTransformerTrainer
#              at 256 and 1,024 pairs (issue 17; needs the model carried)                ≤ LIMIT_ST     (300 s)
#   tests      the CUDA kernel tests (TEST_PATHS overrides the paths)                    ≤ LIMIT_TESTS  (120 s)
# The research run (issue 14) needs the model's weights carried over several calls: benchmarks/research/gpu_run.sh.
set -u
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$REPO/benchmarks/results/gpu-check}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
set -x
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset TRITON_INTERPRET
STEPS=",${STEPS:-train,kernels,encode},"
LIMIT_TRAIN="${LIMIT_TRAIN:-180}"
LIMIT_RETUNE="${LIMIT_RETUNE:-60}"
LIMIT_SWEEP="${LIMIT_SWEEP:-130}"
LIMIT_ENCODE="${LIMIT_ENCODE:-110}"
LIMIT_ST="${LIMIT_ST:-300}"
LIMIT_TESTS="${LIMIT_TESTS:-120}"
step() { [[ "$STEPS" == *",$1,"* ]]; }

date -u
nvidia-smi || true
python -c "import sys, torch, triton, transformers; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name()); print('triton', triton.__version__, 'transformers', transformers.__version__)"
python -c "import sentence_transformers as s; print('sentence-transformers', s.__version__)" || true

# hybridfast is not installed there (benchmarks/gpu_package.sh); run from a neutral folder, so that the
# repository's kernels/, train/ and serve/ folders never shadow the package.
. "$REPO/benchmarks/gpu_package.sh"
hybridfast_importable "$REPO" "import hybridfast.kernels"
RUN_DIR="$(mktemp -d)"
cd "$RUN_DIR"
python -c "import hybridfast.kernels as k; print('hybridfast.kernels from', k.__path__)"
# e5's tokenizer (HYBRIDFAST_HOME layout) and the datasets, carried in .gpu_carry/ (benchmarks/gpu_prepare.sh).
if [ -d "$REPO/.gpu_carry" ]; then
  export HYBRIDFAST_HOME="$REPO/.gpu_carry/home" HYBRIDFAST_DATA="$REPO/.gpu_carry/data"
fi
export HYBRIDFAST_DATA="${HYBRIDFAST_DATA:-$REPO/shared/data}"
HF=(python -m hybridfast)

# 1. The training step at doubling batches until each variant runs out of memory or reaches 65,536 pairs.
if step train; then
  timeout -s INT -k 15 "$LIMIT_TRAIN" "${HF[@]}" bench train --random-shape e5-small --device cuda --dataset xquad \
    --max-batch 65536 --steps 2 --chunk-size 512 --out-dir "$OUT/train" --time-budget "$((LIMIT_TRAIN - 40))"
  echo "bench train rc=$?"
fi

# 2. Kernels: the autotune fix on the real configs, then the sweep at the issue's target shapes.
if step kernels; then
  HYBRIDFAST_AUTOTUNE=0 timeout -s INT -k 10 "$LIMIT_RETUNE" python -m pytest -p no:cacheprovider -q -rs \
    "$REPO/tests/kernels/test_contrastive_loss.py" -k "retune and True-True or temperature_fails_on_device"
  echo "retune tests rc=$?"
  timeout -s INT -k 10 "$LIMIT_SWEEP" "${HF[@]}" bench kernels --out-dir "$OUT" --sizes 4096,32768,65536 \
    --dims 384,768 --backends triton,naive --repeats 10 --breakdown --time-budget "$((LIMIT_SWEEP - 30))"
  echo "bench kernels rc=$?"
fi

# 3. Encode at scale: 100,000 passages re-sampled from SciFact, the baselines on the first 20,000, breakdown pass.
if step encode; then
  timeout -s INT -k 10 "$LIMIT_ENCODE" env -u TOKENIZERS_PARALLELISM "${HF[@]}" bench encode --random-shape e5-small \
    --device cuda --dtype bfloat16 --datasets scifact --corpus-size 100000 --baseline-texts 20000 --max-length 512 \
    --repeats 1 --variants lean,unfused --breakdown --out-dir "$OUT/encode" --tag corpus100k
  echo "bench encode rc=$?"
  rm -f "$OUT"/encode/*.png
fi

# 4. The sentence-transformers example with the real model (its weights must be carried: HYBRIDFAST_HOME).
if step st-example; then
  timeout -s INT -k 10 "$LIMIT_ST" python "$REPO/examples/st_side_by_side.py" --model default --device cuda \
    --precision bf16 --split all --batch-sizes 256,1024 --mini-batch-size 256 --max-length 128 --steps 8 --warmup 2 \
    --repeats 2 --out "$OUT/st_side_by_side_gpu_e5small_bf16.json"
  echo "st example rc=$?"
fi

# 5. CUDA kernel tests: compiled kernels at larger shapes, one fixed config per kernel variant.
if step tests; then
  PAR=()
  if python -c "import xdist" 2>/dev/null; then PAR=(-n 4); fi
  read -r -a TESTS <<< "${TEST_PATHS:-tests/kernels}"
  HYBRIDFAST_AUTOTUNE=0 timeout -s INT -k 20 "$LIMIT_TESTS" python -m pytest -p no:cacheprovider -q -rs --durations=10 \
    ${PAR[@]+"${PAR[@]}"} --continue-on-collection-errors "${TESTS[@]/#/$REPO/}" -m "not slow" 2>&1 \
    | tee "$OUT/pytest.txt" | tail -n 80
  echo "tests rc=${PIPESTATUS[0]}"
fi

ls -laR "$OUT"
date -u
