#!/usr/bin/env bash
# Every measurement archscope still needs from a CUDA machine, in parts that each fit in a few
# minutes (run them as separate commands where a command's time is limited):
#
#   bash benchmarks/gpu_run.sh OUTDIR tests     # pytest -m gpu: every gpu-marked test
#   bash benchmarks/gpu_run.sh OUTDIR check     # archscope check --device cuda, every zoo model
#   bash benchmarks/gpu_run.sh OUTDIR compare   # benchmarks/compare_handwritten.py: every target row
#   bash benchmarks/gpu_run.sh OUTDIR bench     # archscope bench --device cuda (the default models)
#   bash benchmarks/gpu_run.sh OUTDIR memory    # benchmarks/memory_accuracy.py: predicted vs measured peaks
#   bash benchmarks/gpu_run.sh OUTDIR ddp       # bench --nproc (every GPU) --scaling, where there are 2+
#   bash benchmarks/gpu_run.sh OUTDIR all       # all of them in turn
#
# Run from the repository root. archscope is installed editable without dependencies and without
# build isolation (the machine may have no package index): torch, click, rich and pytest must be
# there, and setuptools >= 77 to build. Logs land in OUTDIR; docs/benchmarks.md says where each
# figure goes.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gpu_run.sh OUTDIR tests|check|compare|bench|memory|ddp|all}
part=${2:-all}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

missing=$(python3 - <<'PY'
import importlib.util
need = ["torch", "click", "rich", "pytest", "setuptools"]
missing = [n for n in need if importlib.util.find_spec(n) is None]
if "setuptools" not in missing:
    import setuptools
    if int(setuptools.__version__.split(".")[0]) < 77:  # license = "MIT" is PEP 639
        missing.append(f"setuptools>=77 (have {setuptools.__version__})")
print(" ".join(missing))
PY
)
if [ -n "$missing" ]; then
    echo "missing Python packages: $missing (install them, or carry their wheels)" >&2
    exit 1
fi
if ! python3 -c "import archscope.zoo" 2>/dev/null; then
    python3 -m pip install -q --no-deps --no-build-isolation -e . >"$out/install.log" 2>&1 \
        || { echo "pip install -e . failed: see $out/install.log" >&2; exit 1; }
fi
python3 - <<'PY' | tee "$out/device.txt"
import torch
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); "
      f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA DEVICE'}")
PY
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "no CUDA device: nothing to measure" >&2; exit 1; }

status=0
# `python3 -m archscope`: a user-site install may leave the console script off PATH
run_tests() {
    python3 -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 \
        | tee "$out/gpu_tests.log" || status=1
}
run_check() {
    python3 -m archscope check --device cuda 2>&1 | tee "$out/check.txt" || status=1
}
run_compare() {
    python3 benchmarks/compare_handwritten.py --json "$out/compare.json" --check 2>&1 \
        | tee "$out/compare.md" || status=1
}
run_bench() {
    python3 -m archscope bench --device cuda 2>&1 | tee "$out/bench.txt" || status=1
}
run_memory() {
    python3 benchmarks/memory_accuracy.py 2>&1 | tee "$out/memory_accuracy.md" || status=1
}
run_ddp() {
    local gpus
    gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
    if [ "$gpus" -lt 2 ]; then
        echo "ddp: $gpus GPU on this machine; the scaling figures need 2 or more" \
            | tee "$out/ddp.txt"
        python3 -m archscope bench resnet50 --nproc 1 --device cuda 2>&1 | tee -a "$out/ddp.txt" \
            || status=1
        return
    fi
    python3 -m archscope bench resnet50 lecture_catsdogs_cnn --nproc "$gpus" --scaling \
        --device cuda 2>&1 | tee "$out/ddp.txt" || status=1
}

case "$part" in
    tests) run_tests ;;
    check) run_check ;;
    compare) run_compare ;;
    bench) run_bench ;;
    memory) run_memory ;;
    ddp) run_ddp ;;
    all) run_tests; run_check; run_compare; run_bench; run_memory; run_ddp ;;
    *) echo "unknown part $part: tests, check, compare, bench, memory, ddp or all" >&2; exit 2 ;;
esac
exit $status
