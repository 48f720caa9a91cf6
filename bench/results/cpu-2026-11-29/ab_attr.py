"""In-process A/B of a class attribute of the cpu backend on a training step: the values
alternate round by round in one process (this VM puts whole processes, and sometimes
stretches of one, in a fast or a 1.5x slower mode, so separate processes do not compare).

    python bench/results/cpu-2026-11-29/ab_attr.py ConvRoutines.weight_grad_by_columns deep 100 True False
    python bench/results/cpu-2026-11-29/ab_attr.py ConvKernels.im2col deep 100 ConvKernels.im2col ConvRoutines.im2col
    python bench/results/cpu-2026-11-29/ab_attr.py ConvRoutines.input_grad_scatter_ratio speedrun 128 1.2 None

Values are Python expressions over the classes named below (the second line times the
grouped im2col kernel against NumPy's routine).
"""
import sys
from pathlib import Path

import numpy
from _alternate import alternate, setting

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import models  # noqa: E402

from xpnet.backends.numpy_conv import ConvKernels  # noqa: E402
from xpnet.backends.routines.conv import ConvRoutines  # noqa: E402

CLASSES = {"ConvKernels": ConvKernels, "ConvRoutines": ConvRoutines}


def main():
    target, name, batch, labels = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    owner, attr = target.split(".")
    values = {label: eval(label, dict(CLASSES)) for label in labels}  # noqa: S307 (a benchmark's own arguments)
    x, t = models._data(batch, (1, 28, 28))
    build = {"deep": models.deep_convnet, "cnn": models.convnet, "speedrun": models.speedrun_cnn}[name]
    steps = {}
    for label, v in values.items():
        setattr(CLASSES[owner], attr, v)
        steps[label] = models._xpnet_step(build(), x, t)
    times = alternate(steps, 12, turn=lambda label: setting(CLASSES[owner], attr, values[label]))
    base = numpy.median(times[labels[0]])
    for label in labels:
        rounds = " ".join(f"{a:.0f}" for a in times[label])
        print(f"{target} = {label}: median {numpy.median(times[label]):.1f} ms "
              f"({numpy.median(times[label]) / base:.3f} of the first)  rounds: {rounds}")


if __name__ == "__main__":
    main()
