#!/usr/bin/env bash
# Every measurement archscope still needs from a CUDA machine, in parts that each take a few minutes.
#
#   bash benchmarks/gpu_run.sh OUTDIR tests     # pytest -m gpu (bench + check), archscope check --device cuda
#   bash benchmarks/gpu_run.sh OUTDIR compare   # benchmarks/compare_handwritten.py: every target row
#   bash benchmarks/gpu_run.sh OUTDIR bench     # archscope bench --device cuda (the default models)
#   bash benchmarks/gpu_run.sh OUTDIR all       # the three in turn
#
# Run from the repository root. archscope is installed editable without dependencies and without
# build isolation (the machine may have no package index); torch, click and rich must be there.
# Logs and JSON land in OUTDIR; docs/benchmarks.md says where each figure goes.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gpu_run.sh OUTDIR tests|compare|bench|all}
part=${2:-all}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

if ! python3 -c "import archscope.zoo" 2>/dev/null; then
    python3 -m pip install -q --no-deps --no-build-isolation -e . >"$out/install.log" 2>&1 \
        || { echo "pip install -e . failed: see $out/install.log" >&2; exit 1; }
fi
python3 - <<'EOF' | tee "$out/device.txt"
import torch
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); "
      f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA DEVICE'}")
EOF
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "no CUDA device: nothing to measure" >&2; exit 1; }

status=0
run_tests() {
    python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_bench.py tests/test_check.py 2>&1 \
        | tee "$out/gpu_tests.log" || status=1
    archscope check --device cuda 2>&1 | tee "$out/check.txt" || status=1
    archscope check --device cuda --format json >"$out/check.json" 2>/dev/null || status=1
}
run_compare() {
    python3 benchmarks/compare_handwritten.py --json "$out/compare.json" --check 2>&1 \
        | tee "$out/compare.md" || status=1
}
run_bench() {
    archscope bench --device cuda --format json >"$out/bench.json" || status=1
    archscope bench --device cuda 2>/dev/null | tee "$out/bench.txt" || status=1
}

case "$part" in
    tests) run_tests ;;
    compare) run_compare ;;
    bench) run_bench ;;
    all) run_tests; run_compare; run_bench ;;
    *) echo "unknown part $part: tests, compare, bench or all" >&2; exit 2 ;;
esac
exit $status
