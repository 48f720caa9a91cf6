"""Issue 31, cases 7, 14, 18 and 19: the simulated device keeps CuPy's rules for recorded
steps with data-dependent shapes, counts printing as a copy to the host, keeps each
asyncio task's device scope its own, and copies arrays and models on the device."""
import asyncio
import copy
import pickle
import threading

import numpy
import pytest

import xpnet as xn

SIM = xn.Device("sim")
SIM1 = xn.Device("sim:1")


def _on(device, values):
    return xn.to_device(numpy.asarray(values), device)


# -- 31.7: a result shaped by the data cannot be recorded ---------------------------------

def test_boolean_mask_in_a_recorded_step_raises_capture_error_naming_it():
    x, limit = _on(SIM, [1.0, 2, 3, 4, 5]), _on(SIM, 2.5)
    with xn.use_device(SIM):
        step = SIM.backend.record(lambda: (x[x > limit] * 2).sum())
        assert float(step()) == 24.0  # the eager run before recording: right
        with pytest.raises(xn.CaptureError, match=r"boolean-mask indexing \(x\[mask\]\).*sim:0"):
            step()  # recording: refused, instead of replaying three entries forever


def test_the_mask_written_as_a_weight_records_and_follows_the_data():
    x, limit = _on(SIM, [1.0, 2, 3, 4, 5]), _on(SIM, 2.5)
    with xn.use_device(SIM):
        step = SIM.backend.record(lambda: (SIM.xp.where(x > limit, x, 0) * 2).sum())
        step(), step()  # run, record
        limit[...] = 4.5  # the mask changes: one entry left
        assert float(step()) == 10.0


_SIZED_BY_DATA = {
    "boolean-mask assignment": lambda x: x.__setitem__(x > 2, 0),
    "numpy.nonzero": lambda x: SIM.xp.nonzero(x > 2),
    "ndarray.nonzero": lambda x: (x > 2).nonzero(),
    "numpy.argwhere": lambda x: SIM.xp.argwhere(x > 2),
    "numpy.flatnonzero": lambda x: SIM.xp.flatnonzero(x > 2),
    "numpy.where with a condition only": lambda x: SIM.xp.where(x > 2),
    "numpy.unique": lambda x: SIM.xp.unique(x),
    "numpy.compress": lambda x: SIM.xp.compress(x > 2, x),
    "ndarray.compress": lambda x: x.compress(x > 2),
    "numpy.extract": lambda x: SIM.xp.extract(x > 2, x),
    "boolean-mask indexing": lambda x: x[:, None][x > 2],
}


@pytest.mark.parametrize("name", list(_SIZED_BY_DATA))
def test_every_operation_shaped_by_the_data_is_refused_while_recording(name):
    op = _SIZED_BY_DATA[name]
    x = _on(SIM, [1.0, 2, 3, 4, 5])
    with xn.use_device(SIM):
        op(x * 1)  # outside a recording it runs, as on the GPU
        step = SIM.backend.record(lambda: op(x * 1))
        step()
        with pytest.raises(xn.CaptureError, match=name.replace("(", r"\(")):
            step()


def test_a_replay_whose_result_changed_shape_is_refused_not_broadcast():
    """An operation the list does not name (repeat by counts on the device) is still caught."""
    x, counts = _on(SIM, [1.0, 2, 3]), _on(SIM, [1, 1, 1])
    with xn.use_device(SIM):
        step = SIM.backend.record(lambda: SIM.xp.repeat(x, counts).sum())
        step(), step()
        counts[...] = 2
        with pytest.raises(xn.CaptureError, match=r"numpy\.repeat .*shape \(6,\).*shape \(3,\)"):
            step()


class _MaskedMSE(xn.nn.MeanSquaredError):
    """A user's loss that skips rows without a target (target < 0), by boolean indexing."""

    def forward(self, y, t):
        keep = t[:, 0] >= 0
        self.y, self.t, self.keep = y, t, keep
        d = y[keep] - t[keep]
        return (d * d).sum() / keep.sum()

    def backward(self, dout=1.0):
        xp = xn.get_array_module(self.y)
        keep = self.keep[:, None]
        return (dout * 2 * xp.where(keep, self.y - self.t, 0) / keep.sum()).astype(self.y.dtype)


def _regression():
    rng = numpy.random.default_rng(0)
    x = rng.random((32, 4), dtype=numpy.float32)
    t = (x @ rng.random((4, 1), dtype=numpy.float32)).astype(numpy.float32)
    t[::3] = -1  # no target
    return x, t


def _fit(device, graph):
    xn.seed(0)
    with xn.use_device(device):
        model = xn.nn.Sequential(xn.nn.Affine(4, 1))
    opt = xn.optim.SGD(model, lr=0.1)
    history = xn.fit(model, _MaskedMSE(), opt, _regression(), epochs=3, batch_size=8, seed=0, graph=graph)
    return history.epoch_loss


def test_a_masked_loss_in_fit_says_it_cannot_be_recorded_and_runs_unrecorded():
    with pytest.raises(xn.CaptureError, match=r"boolean-mask indexing.*graph=False"):
        _fit(SIM, graph=True)
    numpy.testing.assert_allclose(_fit(SIM, graph=False), _fit("cpu", graph=True), rtol=1e-6)


# -- 31.14: printing reads the array on the host ------------------------------------------

_PRINTS = {  # how it is printed: (the text, what it shows, the array it reads)
    "repr": (repr, "5.", False),
    "str": (str, "5.", False),
    "format": (format, "5.", False),
    "f-string": (lambda a: f"{a}", "5.", False),
    "format-spec-0d": (lambda a: f"{a:.3f}", "15.000", True),
    "str-0d": (str, "15.0", True),
}


@pytest.mark.parametrize("how", list(_PRINTS))
def test_printing_a_sim_array_is_a_counted_copy_to_the_host(how):
    show, shown, total = _PRINTS[how]
    a = _on(SIM, numpy.arange(6.0).reshape(2, 3))
    with xn.use_device(SIM):
        if total:
            a = a.sum()
        before = xn.transfer_stats()
        text = show(a)
        after = xn.transfer_stats()
    assert shown in text
    assert (after.d2h_count - before.d2h_count, after.d2h_bytes - before.d2h_bytes) == (1, a.nbytes)
    assert after.h2d_count == before.h2d_count


def test_str_and_format_of_a_sim_array_read_as_numpys_do():
    host = numpy.arange(6.0).reshape(2, 3)
    a = _on(SIM, host)
    assert str(a) == str(host) and format(a) == format(host)
    assert str(a.sum()) == str(host.sum()) and f"{a.sum():.2f}" == "15.00"
    assert "sim:0" in repr(a)


@pytest.mark.parametrize("show", [repr, str, format], ids=["repr", "str", "format"])
def test_printing_inside_a_recording_is_refused(show):
    a = _on(SIM, [1.0, 2.0])
    with xn.use_device(SIM):
        step = SIM.backend.record(lambda: show(a * 2))
        step()
        with pytest.raises(xn.CaptureError, match=rf"printing a device array \({show.__name__}:"):
            step()


# -- 31.18: the device scope is per context ----------------------------------------------

def test_use_device_in_two_asyncio_tasks_keeps_each_tasks_device():
    both_in = {}

    async def task(n, mine, other):
        with xn.use_device(f"sim:{n}") as dev:
            y = xn.to_device(numpy.full(3, float(n + 1)), dev)
            mine.set()
            await other.wait()  # the other task has entered its own device meanwhile
            both_in[n] = xn.current_device()
            z = (y * 2 + 1).sum()  # raw operations on this task's device
            await asyncio.sleep(0)
            return float(z), xn.device_of(z)

    async def main():
        e0, e1 = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(task(0, e0, e1), task(1, e1, e0))

    (r0, d0), (r1, d1) = asyncio.run(main())
    assert (r0, d0, r1, d1) == (9.0, SIM, 15.0, SIM1)
    assert both_in == {0: SIM, 1: SIM1}


def test_a_thread_still_starts_on_sim0_whatever_the_caller_entered():
    a = _on(SIM1, [1.0])
    seen = []

    def work():
        seen.append(xn.current_device())
        try:
            a + 1
        except ValueError as exc:
            seen.append(str(exc))

    with xn.use_device(SIM1):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert float((a + 1).sum()) == 2.0  # this thread's scope is untouched
    assert seen[0] != SIM1 and "sim:1 while sim:0 is the current device" in seen[1]


# -- 31.19: copies stay on the device; pickling is refused -------------------------------

def _model():
    return xn.nn.Sequential(xn.nn.Affine(4, 8), xn.nn.BatchNorm(8), xn.nn.ReLU(), xn.nn.Affine(8, 3))


def test_deepcopy_of_a_trained_model_works_on_every_device(device):
    rng = numpy.random.default_rng(0)
    x, t = rng.random((16, 4), dtype=numpy.float32), rng.integers(0, 3, 16)
    xn.seed(0)
    model = _model()
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(model), (x, t), epochs=1, batch_size=8)
    twin = copy.deepcopy(model)
    assert twin.device == model.device == device and twin.backend is model.backend
    original = xn.to_host(xn.predict(model, x))
    numpy.testing.assert_array_equal(xn.to_host(xn.predict(twin, x)), original)
    for name, w in twin.params().items():
        assert xn.device_of(w) == device and w is not model.params()[name]
    xn.fit(twin, xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(twin), (x, t), epochs=1, batch_size=8)
    numpy.testing.assert_array_equal(xn.to_host(xn.predict(model, x)), original)  # untouched
    assert not numpy.array_equal(xn.to_host(xn.predict(twin, x)), original)


@pytest.mark.parametrize("how", [copy.deepcopy, copy.copy], ids=["deepcopy", "copy"])
def test_copying_a_sim_array_is_one_kernel_on_its_device_not_a_host_round_trip(how):
    a = _on(SIM1, [[1.0, 2.0], [3.0, 4.0]]).T  # a view, on a device that is not current
    transfers, launches = xn.transfer_stats(), xn.launch_stats().get("sim:1", xn.LaunchStats())
    b = how(a)
    assert xn.transfer_stats() == transfers
    assert xn.launch_stats()["sim:1"] - launches == xn.LaunchStats(kernels=1, launches=1)
    assert xn.device_of(b) == SIM1 and b.shape == a.shape
    with xn.use_device(SIM1):
        b[0, 0] = 9.0
    numpy.testing.assert_array_equal(xn.to_host(a), [[1.0, 3.0], [2.0, 4.0]])


def test_pickling_a_sim_array_or_model_is_refused_with_the_way_out():
    a = _on(SIM, [1.0, 2.0])
    with pytest.raises(TypeError, match=r"sim:0.*xn\.to_host\(x\).*xn\.save"):
        pickle.dumps(a)
    with xn.use_device(SIM):
        model = _model()
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(model)


def test_deepcopy_of_a_generator_on_sim_copies_its_state_as_on_cpu():
    expected = numpy.random.default_rng(7).random(5)[2:]
    with xn.use_device(SIM):
        gen = SIM.xp.random.default_rng(7)
        gen.random(2)
        twin = copy.deepcopy(gen)
        drawn, again = twin.random(3), gen.random(3)
    assert xn.device_of(drawn) == SIM
    numpy.testing.assert_array_equal(xn.to_host(drawn), expected)
    numpy.testing.assert_array_equal(xn.to_host(again), expected)  # the original kept its own state
    assert copy.deepcopy(SIM.xp.add) is SIM.xp.add  # a ufunc is a function, as NumPy's are


def test_copying_the_sim_array_module_is_refused_as_copying_numpy_is():
    with pytest.raises(TypeError, match="module"):
        copy.deepcopy(numpy)
    with pytest.raises(TypeError, match=r"sim namespace of numpy on sim:0.*stands for a module.*\.xp"):
        copy.deepcopy(SIM.xp)
