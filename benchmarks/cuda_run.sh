#!/usr/bin/env bash
# What produced the CUDA results in README and reports/cuda-*: run from the repository root on a
# machine with an NVIDIA GPU, torch with CUDA, triton, transformers and liger-kernel installed.
#   benchmarks/cuda_run.sh [tests] [timing] [reports] [zoo] [large]     (default: all five)
# liger-kernel (and jsonschema, for the report-schema tests) may need to travel as wheels. Its logs from
# the H200 are in benchmarks/cuda-h200/.
# The steps run side by side, each stopped after $LIMIT seconds (default 480), so that a time-boxed
# machine still returns what finished. Logs and the reports (reports/json/cuda-*, reports/cuda-*) are
# packed into $OUT/cuda-run.tar.gz (OUT defaults to ./cuda-run), the steps' exit codes into $OUT/summary.txt.
# ONLY="name ..." regenerates only those reports. pytest-benchmark, where installed, is blocked: its warning
# under xdist is an error with this project's filterwarnings.
set -u
OUT=${OUT:-cuda-run}
LIMIT=${LIMIT:-480}
STEPS=${*:-tests timing reports zoo large}
LOGS=$(mktemp -d)/logs
mkdir -p "$OUT" "$LOGS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
    python3 -m pip list 2>/dev/null | grep -i -E '^(liger|transformers|numpy|ml.dtypes|numba|hypothesis|mpmath) '
    nproc
} > "$LOGS/environment.txt" 2>&1

# The pytest plugin is found through normcheck's entry point where normcheck is installed, else named.
PLUGIN=$(python3 -c "import importlib.metadata as m; m.distribution('normcheck')" 2>/dev/null || echo "-p normcheck.pytest_plugin")

step() {  # step NAME COMMAND...: one step, time-boxed, its output and exit status logged
    local name=$1
    shift
    local start=$SECONDS
    timeout "$LIMIT" "$@" > "$LOGS/$name.log" 2>&1
    echo "$name: exit $? in $((SECONDS - start)) s" >> "$LOGS/summary.txt"
}

for s in $STEPS; do
    case $s in
        tests)  # the CUDA tests: torch's kernels, the Triton examples compiled, the plugin's CUDA branch
            step tests python3 -m pytest -n 8 -v -rfE --tb=short -p no:cacheprovider -p no:benchmark tests/normcheck/test_cuda.py \
                tests/normcheck/test_triton_examples.py tests/normcheck/test_pytest_plugin.py & ;;
        timing)  # where the default audit's time goes on the GPU
            step timing-default python3 -m normcheck audit torch.nn.RMSNorm --device cuda \
                --json "$LOGS/timing-default.json" & ;;
        reports)
            # shellcheck disable=SC2046  # ONLY="a b": generate.py --only a --only b
            step reports python3 reports/generate.py --device cuda --jobs "${JOBS:-8}" ${ONLY:+$(printf -- '--only %s ' $ONLY)} & ;;
        zoo)  # the zoo through the pytest plugin on CUDA
            step zoo python3 -m pytest $PLUGIN tests/normcheck/test_zoo_matrix.py --normcheck-device cuda -n 3 -q \
                -p no:cacheprovider -p no:benchmark & ;;
        large)  # one large bfloat16 shape: where the time goes when the rows are many
            step timing-32768x4096 python3 -m normcheck audit torch.nn.RMSNorm --device cuda --dtype bfloat16 \
                --shape 32768x4096 --examples 0 --no-grad --json "$LOGS/timing-32768x4096.json" & ;;
    esac
done
wait
nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv >> "$LOGS/environment.txt" 2>&1
shopt -s nullglob
mkdir -p "$LOGS/../reports/json"
cp -r reports/cuda-* "$LOGS/../reports/" 2>/dev/null
cp reports/json/cuda-* "$LOGS/../reports/json/" 2>/dev/null
tar -czf "$OUT/cuda-run.tar.gz" -C "$LOGS/.." logs reports
cp "$LOGS/summary.txt" "$OUT/summary.txt"
cat "$OUT/summary.txt"
