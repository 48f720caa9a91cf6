"""The DeepConvNet step (batch 100) four ways, alternating round by round in one process, as
run at commit 5454cc0 (before a chunked convolution's products ran on one OpenBLAS thread):
"before" (as 5454cc0), "chunks-1t" (the chunks' products on one thread, what the next commit
does), "conv-1t" (every convolution routine on one thread), "all-1t" (the whole step on
one). One line a round; session3-blas-threads.txt is a 150-round run. At later commits
"before" and "chunks-1t" are the same (both then on one thread).

    python bench/results/cpu-2026-11-29/ab_blas_threads.py deep 150
"""
import contextlib
import functools
import sys
from pathlib import Path

import numpy
from _alternate import alternate, print_round
from threadpoolctl import ThreadpoolController

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import models  # noqa: E402

from xpnet.backends.routines.conv import ConvRoutines  # noqa: E402

CONTROLLER = ThreadpoolController().select(user_api="blas")
VARIANTS = ["before", "chunks-1t", "conv-1t", "all-1t"]
MODE = {"now": None}


def _one_thread_in(name, variants):
    """ConvRoutines.<name> on one BLAS thread while MODE is one of ``variants``."""
    method = getattr(ConvRoutines, name)

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        if MODE["now"] in variants:
            with CONTROLLER.limit(limits=1):
                return method(self, *args, **kwargs)
        return method(self, *args, **kwargs)
    setattr(ConvRoutines, name, run)


@contextlib.contextmanager
def _switch(variant):
    """``variant`` switched in: the mode the wrapped routines read, and for all-1t the whole
    step on one BLAS thread."""
    MODE["now"] = variant
    with CONTROLLER.limit(limits=1) if variant == "all-1t" else contextlib.nullcontext():
        yield


def main():
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    _one_thread_in("_conv2d_chunks", ("chunks-1t", "conv-1t"))
    for name in ("conv2d_backward", "conv2d_maxpool", "conv2d_maxpool_backward"):
        _one_thread_in(name, ("conv-1t",))
    x, t = models._data(100, (1, 28, 28))
    steps = {v: models._xpnet_step(models.deep_convnet(), x, t) for v in VARIANTS}
    times = alternate(steps, rounds, turn=_switch, each_round=print_round)
    for v in VARIANTS:
        print(v, f"median {numpy.median(times[v]):.1f}")


if __name__ == "__main__":
    main()
