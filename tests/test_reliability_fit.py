"""Issue 25, the training loop and its data (cases 1, 11, 12, 14, 16, 17, 21, 22): the NaN
guard never keeps or restores a non-finite state and says truthfully where it restored to;
ranks given different data are refused before the first step; xn.seed makes shuffles
reproducible; a schedule of another optimizer, a one-shot validation iterable and nested
Python sequences are each read as what they are; and fit, evaluate and predict leave the
caller's arrays as they were.

The MPI case runs this file as the job: ``mpiexec -n 2 python tests/test_reliability_fit.py``."""
import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import xpnet as xn

HERE = Path(__file__).resolve().parent
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


def _host_params(model):
    return {k: v.copy() for k, v in xn.to_host(model.params()).items()}


def _assert_same_params(a, b):
    assert a.keys() == b.keys()
    for name in a:
        numpy.testing.assert_array_equal(a[name], b[name], err_msg=name)


# 17: a schedule built for another optimizer ----------------------------------------------

def test_a_schedule_built_for_another_optimizer_is_refused():
    with xn.use_device("cpu"):
        xn.seed(0)
        model = xn.nn.Affine(3, 2)
        before = _host_params(model)
        trained, other = xn.optim.SGD(model, lr=0.1), xn.optim.SGD(model, lr=0.1)
        schedule = xn.optim.schedules.StepDecay(other, step_size=1, gamma=0.5)
        data = (numpy.ones((4, 3), numpy.float32), numpy.zeros(4, numpy.int64))
        with pytest.raises(ValueError, match=r"built for another optimizer.*StepDecay\(optimizer, \.\.\.\)"):
            xn.fit(model, xn.nn.SoftmaxCrossEntropy(), trained, data, epochs=2, schedule=schedule)
        assert other.lr == 0.1 and trained.lr == 0.1
        _assert_same_params(_host_params(model), before)  # refused before the first step
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), trained, data, epochs=2,
               schedule=xn.optim.schedules.StepDecay(trained, step_size=1, gamma=0.5))
        assert trained.lr == 0.025
