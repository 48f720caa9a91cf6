#!/bin/sh
# Issue 15's whole-process comparison: one MNIST epoch of the book's SimpleConvNet (or, with
# MODEL deep, its DeepConvNet: issue 26) in xpnet (examples/mnist_cnn.py) and in PyTorch eager
# (bench/torch_mnist_cnn.py), alternating, as wall time of the whole process (imports, data,
# training, evaluation, saving, plotting).
#     bash bench/whole_process.sh [PAIRS] [MODEL]   (default 3 simple; run from the repository root)
PY=${PY:-.venv/bin/python}
export XPNET_DATA_DIR=${XPNET_DATA_DIR:-../shared/data}
for i in $(seq "${1:-3}"); do
  for script in examples/mnist_cnn.py bench/torch_mnist_cnn.py; do
    start=$(date +%s.%N)
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" "$script" --epochs 1 --model "${2:-simple}" 2>&1 | grep -v '^plot:' | tail -1
    end=$(date +%s.%N)
    echo "$script wall $(echo "$end - $start" | bc) s"
  done
done
