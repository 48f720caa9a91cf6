"""Property h: every out-of-range constructor argument is refused when the part is built
(naming the argument), and ``load`` refuses the same ranges in a checkpoint."""
import json

import numpy
import pytest

import xpnet as xn

from .registry import LAYERS, OPTIMIZERS, SCHEDULES

BAD = {f"{e.name}-{id}": build for e in LAYERS for id, build in e.bad_args}
BAD_OPT = {f"{e.name}-{id}": build for e in OPTIMIZERS for id, build in e.bad_args}
BAD_SCHED = {f"{e.name}-{id}": build for e in SCHEDULES for id, build in e.bad_args}


def _argument(case):
    return case.split("-", 1)[1].split("=")[0].split(" ")[0]


@pytest.mark.parametrize("case", list(BAD))
def test_layer_refuses_an_out_of_range_argument(case, device):
    with pytest.raises((ValueError, TypeError), match=_argument(case)):
        BAD[case]()


@pytest.mark.parametrize("case", list(BAD_OPT))
def test_optimizer_refuses_an_out_of_range_argument(case, device):
    with pytest.raises((ValueError, TypeError), match=_argument(case)):
        BAD_OPT[case](xn.nn.Affine(2, 2))


@pytest.mark.parametrize("case", list(BAD_SCHED))
def test_schedule_refuses_an_out_of_range_argument(case, device):
    with pytest.raises((ValueError, TypeError), match=_argument(case)):
        BAD_SCHED[case](xn.optim.SGD(xn.nn.Affine(2, 2), lr=0.1))


def _tamper(path, arrays=None, meta=None):
    """Rewrite the checkpoint at ``path`` with some arrays or record fields replaced."""
    with numpy.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    record = json.loads(str(data["__xpnet__"]))
    for k, v in (arrays or {}).items():
        data[k] = v
    for k, v in (meta or {}).items():
        target = record
        *head, last = k.split("/")
        for h in head:
            target = target[h]
        target[last] = v
    data["__xpnet__"] = numpy.array(json.dumps(record))
    numpy.savez(path, **data)


def _trained(optimizer):
    model = xn.nn.Sequential(xn.nn.Affine(3, 4, seed=0), xn.nn.BatchNorm(4), xn.nn.Affine(4, 2, seed=1))
    opt = optimizer(model)
    rng = numpy.random.default_rng(0)
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, (rng.standard_normal((8, 3)), rng.integers(0, 2, 8)),
           epochs=1, batch_size=4, progress=False)
    return model, opt


TAMPERED = {  # what is written into the file -> the optimizer it is loaded with
    "negative_running_var": ({"buffer/1.running_var": -numpy.ones(4, dtype=numpy.float32)}, None, xn.optim.SGD),
    "negative_step_count": (None, {"optimizer/t": -3}, xn.optim.Adam),
    "negative_lr": (None, {"optimizer/lr": -0.1}, xn.optim.Adam),
    "nan_lr": (None, {"optimizer/lr": float("nan")}, xn.optim.SGD),
    "negative_adam_second_moment": ({"optim/0.W/v": -numpy.ones((3, 4), dtype=numpy.float32)}, None, xn.optim.Adam),
    "negative_adagrad_sum": ({"optim/0.W/h": -numpy.ones((3, 4), dtype=numpy.float32)}, None, xn.optim.AdaGrad),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_load_refuses_out_of_range_values(case, device, tmp_path):
    arrays, meta, optimizer = TAMPERED[case]
    with xn.use_device(device):
        model, opt = _trained(lambda m: optimizer(m, lr=0.1))
        path = tmp_path / "ckpt.npz"
        xn.save(model, path, optimizer=opt)
        _tamper(path, arrays, meta)
        fresh, fresh_opt = _trained(lambda m: optimizer(m, lr=0.1))
        before = xn.to_host(fresh.params())
        with pytest.raises(xn.CheckpointError):
            xn.load(fresh, path, optimizer=fresh_opt)
        for k, v in xn.to_host(fresh.params()).items():
            numpy.testing.assert_array_equal(v, before[k])  # nothing written
