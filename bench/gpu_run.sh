#!/usr/bin/env bash
# Everything a session with a GPU machine checks, in one command (each call there starts
# a bare machine, so the steps that belong together run together):
#   bash bench/gpu_run.sh OUTDIR
# from the repository root, with a python3 that has CuPy, NumPy, pytest and
# pytest-benchmark (PYTHON=... to choose another). Writes into OUTDIR: info.txt (the GPU
# and `xpnet info`), test-cuda.log (the whole suite with cuda as the default device),
# bench.log and the benchmark report (report.md, benchmark.json, chart.png), fit5.txt
# (five MNIST epochs, recorded step against kernel by kernel), matmul.txt (float32 and TF32
# against CuPy), recorded.txt (bench/recorded.py: each model's recorded step against
# PyTorch eager and its CUDA graph) and stream.txt (bench/gpu_stream.py: streamed epochs
# against copied-once ones). MNIST must be where XPNET_DATA_DIR points. On the device tool,
# which returns at most 8 files, write OUTDIR outside $OUT and tar it into $OUT.
set -u
out=${1:?usage: bash bench/gpu_run.sh OUTDIR}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  $py -m xpnet info; } > "$out/info.txt" 2>&1
cat "$out/info.txt"

XPNET_DEVICE=cuda timeout "${TEST_TIMEOUT:-300}" $py -m pytest -q -rs --tb=short \
    -p no:cacheprovider --durations=10 tests > "$out/test-cuda.log" 2>&1
echo "tests: exit $?"
tail -n 30 "$out/test-cuda.log"

timeout "${BENCH_TIMEOUT:-240}" $py -m xpnet bench --quick --quiet > "$out/bench.log" 2>&1
echo "bench: exit $?"
cp bench/results/latest/report.md bench/results/latest/benchmark.json bench/results/latest/chart.png "$out/" 2>/dev/null
tail -n 80 "$out/bench.log"

for batch in 100 32; do
    for mode in graph eager; do $py bench/gpu_fit5.py $mode $batch 2>&1 | tail -n 1; done
done | tee "$out/fit5.txt"
{ $py bench/gpu_matmul.py; CUPY_TF32=1 $py bench/gpu_matmul.py --tf32; } 2>&1 | tee "$out/matmul.txt"
# Issue 14's targets: recorded steps of the MLP, the Dropout/BatchNorm MLP and the CNN
# against PyTorch eager and PyTorch's CUDA graph (capturable Adam).
(cd bench && timeout "${RECORDED_TIMEOUT:-300}" $py recorded.py --device cuda) 2>&1 | tee "$out/recorded.txt"
(cd bench && for model in cnn mlp; do timeout "${STREAM_TIMEOUT:-150}" $py gpu_stream.py --model $model --epochs 3; done) \
    2>&1 | tee "$out/stream.txt"
