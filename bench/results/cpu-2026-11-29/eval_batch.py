"""The speedrun example's one evaluation of the 10,000 test images, in a fresh process after
10 training steps (as in the example, where the evaluation's buffers are new memory), at the
evaluation batch size given.

    for b in 1000 250 128 1000 250 128; do python bench/results/cpu-2026-11-29/eval_batch.py $b; done
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import models  # noqa: E402

import xpnet as xn  # noqa: E402


def main():
    batch = int(sys.argv[1])
    (x, t), test = xn.datasets.mnist(flatten=False)
    model = models.speedrun_cnn()
    opt = xn.optim.Momentum(model, lr=0.1, momentum=0.9, nesterov=True)
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (x[:1280], t[:1280]), epochs=1, batch_size=128, progress=False)
    start = time.perf_counter()
    xn.evaluate(model, test, batch_size=batch)
    print(f"evaluation in batches of {batch}: {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
