#!/usr/bin/env bash
# One call on a lent GPU machine (see the README's GPU section): check every CUDA kernel
# shape on the device, time issue 5's suite, profile einjit's host side.  Run from the
# repository root, with the wheels the machine lacks in .whl/ (numpy 2.4.x: numba-cuda
# fails to import with numpy 2.5).  Logs and JSON go to $OUT (default /tmp/einjit-gpu-out).
#     bash benchmarks/gpu_check.sh [bench] [test] [random=SEED]... [profile=CASE]... [-- gpu.py arguments]
#     bash benchmarks/gpu_check.sh bench test profile=tiny_mm -- --repeat 15
set -u
checks=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do checks+=("$1"); shift; done
[ $# -gt 0 ] && shift
[ ${#checks[@]} -eq 0 ] && checks=(bench test)
out=${OUT:-/tmp/einjit-gpu-out}; mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 EINJIT_CACHE_DIR=/tmp/einjit-cache NUMBA_CACHE_DIR=/tmp/numba-cache
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.used --format=csv,noheader
python3 -c "import numpy, numba, numba.cuda as c; print('numpy', numpy.__version__, 'numba', numba.__version__, 'gpu', c.is_available())"
status=0
for check in "${checks[@]}"; do
    case $check in
    bench)
        timeout 300 python3 benchmarks/gpu.py --json "$out/gpu.json" "$@" 2>&1 | tee "$out/bench.log"
        status=$((status | PIPESTATUS[0])) ;;
    test)
        timeout 240 python3 -m pytest -q -p no:cacheprovider -n 0 -m gpu tests/test_cuda.py 2>&1 | tee "$out/test.log"
        status=$((status | PIPESTATUS[0])) ;;
    random=*)
        timeout 150 python3 benchmarks/gpu.py --random 30 --seed "${check#random=}" --json "$out/random-${check#random=}.json" 2>&1 | tee "$out/random-${check#random=}.log"
        status=$((status | PIPESTATUS[0])) ;;
    profile=*)
        timeout 120 python3 benchmarks/gpu.py --profile "${check#profile=}" 2>&1 | tee "$out/profile-${check#profile=}.log" | head -45
        status=$((status | PIPESTATUS[0])) ;;
    *) echo "gpu_check.sh: unknown check $check"; exit 2 ;;
    esac
done
exit $status
