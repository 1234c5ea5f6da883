# Sourced by the GPU scripts (gpu_check.sh, research/gpu_run.sh): hybridfast is not installed on the GPU machine.
# hybridfast_importable REPO CHECK: an editable install (no network needed); if CHECK (Python import statements)
# still fails from a neutral folder, a shim package instead: hybridfast/* plus kernels, train and serve linked in
# as hybridfast.kernels / .train / .serve (the setuptools package-dir mapping), put first on PYTHONPATH.
hybridfast_importable() {
  local repo="$1" check="$2" shim entry
  pip install --no-deps --no-build-isolation -q -e "$repo" || true
  if (cd /tmp && python3 -c "$check"); then return 0; fi
  shim="$(mktemp -d)"
  mkdir -p "$shim/hybridfast"
  for entry in "$repo"/hybridfast/*; do ln -sf "$entry" "$shim/hybridfast/"; done
  ln -sf "$repo/kernels" "$shim/hybridfast/kernels"
  ln -sf "$repo/train" "$shim/hybridfast/train"
  ln -sf "$repo/serve" "$shim/hybridfast/serve"
  export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
}
