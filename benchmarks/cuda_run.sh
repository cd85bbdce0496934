#!/usr/bin/env bash
# What produced the CUDA results in README and reports/cuda-*: run from the repository root on a
# machine with an NVIDIA GPU, torch with CUDA, triton, transformers and liger-kernel installed.
#   benchmarks/cuda_run.sh [tests] [reports] [timing]     (default: all three)
# Logs go to $OUT (default ./cuda-run); reports to reports/json/cuda-*.json and reports/cuda-*/.
set -u
OUT=${OUT:-cuda-run}
STEPS=${*:-tests reports timing}
mkdir -p "$OUT"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
    python3 -m pip show liger-kernel transformers 2>/dev/null | grep -E '^(Name|Version)'
    nproc
} > "$OUT/environment.txt" 2>&1
for step in $STEPS; do
    case $step in
        tests)  # the whole suite, CUDA tests included, then the zoo through the plugin on CUDA
            python3 -m pytest -n 8 -q -p no:cacheprovider > "$OUT/tests.log" 2>&1
            echo "suite exit $?" >> "$OUT/summary.txt"
            python3 -m pytest tests/normcheck/test_zoo_matrix.py --normcheck-device cuda -n 8 -q -p no:cacheprovider \
                > "$OUT/zoo-cuda.log" 2>&1
            echo "zoo on cuda exit $?" >> "$OUT/summary.txt" ;;
        reports)
            OMP_NUM_THREADS=2 python3 reports/generate.py --device cuda --jobs "${JOBS:-6}" > "$OUT/reports.log" 2>&1
            echo "reports exit $?" >> "$OUT/summary.txt" ;;
        timing)  # where an audit's time goes on the GPU: the default audit, and one large bfloat16 shape
            python3 -m normcheck audit torch.nn.RMSNorm --device cuda > "$OUT/timing-default.log" 2>&1
            python3 -m normcheck audit torch.nn.RMSNorm --device cuda --dtype bfloat16 --shape 32768x4096 \
                --examples 0 > "$OUT/timing-32768x4096.log" 2>&1
            echo "timing done" >> "$OUT/summary.txt" ;;
    esac
done
