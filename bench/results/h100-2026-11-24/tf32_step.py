"""Recorded 784-1024-1024-10 SGD step at batch 256: float32 against TF32, in turns. From the
repository root on a GPU: python3 bench/results/h100-2026-11-24/tf32_step.py (output: tf32-step.txt)."""
import sys

sys.path.insert(0, "bench")
from recorded import timed  # noqa: E402
from test_training import LARGE, _reference  # noqa: E402

import xpnet as xn  # noqa: E402

dev = xn.Device("cuda")
steps = {"xpnet-graph highest": _reference("xpnet-graph", dev, LARGE, 256)}
xn.set_matmul_precision("tf32")
steps["xpnet-graph tf32"] = _reference("xpnet-graph", dev, LARGE, 256)  # recorded under tf32
steps["torch-graph"] = _reference("torch-graph", dev, LARGE, 256)
r = timed(steps, dev, 15)
for k, v in r.items():
    print(f"{k}: {v * 1e6:.1f} us")
print(f"highest / tf32: {r['xpnet-graph highest'] / r['xpnet-graph tf32']:.2f}")
