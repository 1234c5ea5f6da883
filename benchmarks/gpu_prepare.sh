#!/usr/bin/env bash
# Fill .gpu_carry/ (git-ignored) with what the GPU machine lacks, before a device call that names it in `carry`:
#   home/multilingual-e5-small/  e5-small's tokenizer (HYBRIDFAST_HOME layout), so random-weight e5-small benchmarks
#                                tokenize real text with the real tokenizer (17 MB)
#   data/                        the shared datasets (~10 MB): ../shared/data does not travel
# Run from the repository root:   bash benchmarks/gpu_prepare.sh     (then: carry [".gpu_carry"])
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CARRY="$REPO/.gpu_carry"
DATA="${HYBRIDFAST_DATA:-$REPO/../shared/data}"
mkdir -p "$CARRY/home/multilingual-e5-small" "$CARRY/data"
MODEL="$(python -c 'from hybridfast.models.resolve import ensure_default_model; print(ensure_default_model())')"
cp "$MODEL"/tokenizer.json "$MODEL"/tokenizer_config.json "$MODEL"/special_tokens_map.json \
  "$CARRY/home/multilingual-e5-small/"
for name in beir-scifact xquad xquad-r tatoeba-laser; do
  rm -rf "${CARRY:?}/data/$name"
  cp -r "$DATA/$name" "$CARRY/data/$name"
  chmod -R u+w "$CARRY/data/$name"
done
du -sh "$CARRY"
