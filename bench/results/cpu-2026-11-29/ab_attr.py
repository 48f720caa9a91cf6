"""In-process A/B of a ConvRoutines class attribute on a training step: the values alternate
round by round in one process (this VM puts whole processes in a fast or a 1.5x slower mode,
so separate processes do not compare).

    python bench/results/cpu-2026-11-29/ab_attr.py weight_grad_by_columns deep 100 [True False]
"""
import ast
import sys
import time
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import models  # noqa: E402

from xpnet.backends.routines.conv import ConvRoutines  # noqa: E402


def main():
    attr, name, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    values = [ast.literal_eval(v) for v in sys.argv[4:]] or [True, False]
    x, t = models._data(batch, (1, 28, 28))
    build = {"deep": models.deep_convnet, "cnn": models.convnet}[name]
    steps = {}
    for v in values:
        setattr(ConvRoutines, attr, v)
        steps[v] = models._xpnet_step(build(), x, t)
    times = {v: [] for v in values}
    for r in range(12):
        for v in values if r % 2 == 0 else values[::-1]:
            setattr(ConvRoutines, attr, v)
            steps[v]()
            start = time.perf_counter()
            for _ in range(3):
                steps[v]()
            times[v].append((time.perf_counter() - start) / 3 * 1e3)
    base = numpy.median(times[values[0]])
    for v in values:
        rounds = " ".join(f"{a:.0f}" for a in times[v])
        print(f"{attr}={v}: median {numpy.median(times[v]):.1f} ms ({numpy.median(times[v]) / base:.3f} of the first)"
              f"  rounds: {rounds}")


if __name__ == "__main__":
    main()
