"""Regressions from the hostile pass over the whole API after issues 25 and 31 were fixed:
each failed on the code before its fix (wrong results and data loss, on cpu and sim)."""
import numpy
import pytest

import xpnet as xn
from xpnet.nn import Affine, Sequential


def test_an_optimizer_notices_another_optimizer_relaying_a_shared_layer(device):
    xn.seed(0)
    enc, head = Affine(3, 4, dtype="float64"), Affine(4, 2, dtype="float64")
    model = Sequential(enc, head)
    opt_all = xn.optim.SGD(model, lr=0.1)
    opt_enc = xn.optim.SGD(Sequential(enc), lr=0.1)  # a second phase on the encoder alone
    x = xn.to_device(numpy.ones((2, 3)))
    dy = xn.to_device(numpy.ones((2, 2)))
    expected = xn.to_host(enc.params())
    model(x)
    model.backward(dy)
    grads = xn.to_host(enc.grads())
    opt_all.step()
    for name in expected:
        numpy.testing.assert_allclose(xn.to_host(enc.params()[name]), expected[name] - 0.1 * grads[name])
    model(x)
    model.backward(dy)
    before, grads = xn.to_host(enc.params()), xn.to_host(enc.grads())
    opt_enc.step()
    for name in before:
        numpy.testing.assert_allclose(xn.to_host(enc.params()[name]), before[name] - 0.1 * grads[name])


class Scale(xn.nn.Layer):
    """The book's habit: the parameter kept as an attribute."""

    def __init__(self, n):
        super().__init__()
        self.s = self.add_param("s", numpy.ones(n, numpy.float32))

    def forward(self, x):
        self.x = x
        return x * self.s

    def backward(self, dout):
        self.grad("s")[...] = (dout * self.x).sum(axis=0)
        return dout * self.s


def _three_steps(layer):
    """``layer`` in a Sequential after three SGD steps (lr 0.1, ones in, ones back: s = 0.4),
    with the input it took."""
    model = Sequential(layer)
    opt = xn.optim.SGD(model, lr=0.1)
    x = xn.to_device(numpy.ones((2, 3), numpy.float32))
    for _ in range(3):
        model(x)
        model.backward(xn.to_device(numpy.ones((2, 3), numpy.float32)))
        opt.step()
    return model, x


def test_a_parameter_kept_as_an_attribute_is_the_one_the_optimizer_trains(device):
    model, x = _three_steps(Scale(3))
    trained = xn.to_host(model.params()["0.s"])
    numpy.testing.assert_allclose(trained, 0.4, rtol=1e-6)
    numpy.testing.assert_array_equal(xn.to_host(model(x))[0], trained)


class Kept(xn.nn.Layer):
    """y = x * s, its parameter kept where ``where`` says: a private attribute, a list or a dict
    (a prober found the optimizer's layout left these pointing at the old array: no training)."""

    def __init__(self, where):
        super().__init__()
        s = self.add_param("s", numpy.ones(3, numpy.float32))
        self.where = where
        self._s, self.ss, self.named = s, [s], {"s": s}

    def scale(self):
        return {"private": self._s, "list": self.ss[0], "dict": self.named["s"]}[self.where]

    def forward(self, x):
        self.x = x
        return x * self.scale()

    def backward(self, dout):
        self.grad("s")[...] = (dout * self.x).sum(axis=0)
        return dout * self.scale()


@pytest.mark.parametrize("where", ["private", "list", "dict"])
def test_a_parameter_kept_in_a_private_attribute_or_a_container_is_trained(where, device):
    model, x = _three_steps(Kept(where))
    numpy.testing.assert_array_equal(xn.to_host(model(x))[0], xn.to_host(model.params()["0.s"]))
    numpy.testing.assert_allclose(xn.to_host(model.params()["0.s"]), 0.4, rtol=1e-6)


class Lazy(xn.nn.Layer):
    """y = x + b, ``b`` made at the first forward (when the width is known)."""

    def forward(self, x):
        if "b" not in self.params():
            self.add_param("b", numpy.zeros(x.shape[1], numpy.float32))
        return x + self.param("b")

    def backward(self, dout):
        self.grad("b")[...] = dout.sum(axis=0)
        return dout


def test_a_parameter_added_after_the_optimizer_was_built_is_trained(device):
    """A prober's finding (session 5): the optimizer never laid it out, so it kept its zeros."""
    model = Sequential(Lazy())
    opt = xn.optim.SGD(model, lr=0.5)
    x = xn.to_device(numpy.ones((2, 3), numpy.float32))
    model(x)
    model.backward(xn.to_device(numpy.ones((2, 3), numpy.float32)))
    opt.step()
    numpy.testing.assert_array_equal(xn.to_host(model.params()["0.b"]), [-1.0, -1.0, -1.0])


def test_the_epoch_loss_is_the_mean_over_samples_as_evaluate_gives(device):
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((11, 2))
    t = (x[:, 0] > 0).astype(int)
    xn.seed(0)
    model = Sequential(Affine(2, 2, dtype="float64"))
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=1e-300), (x, t), epochs=1,
                     batch_size=10, shuffle=False, progress=False)
    # the step losses are read through a float32 buffer: equal to its precision
    assert history.epoch_loss[0] == pytest.approx(xn.evaluate(model, (x, t))["loss"], rel=1e-6)


def test_an_unshuffled_loader_hands_out_batches_of_their_own():
    x, t = numpy.arange(8.0).reshape(4, 2), numpy.arange(4)
    before = x.copy()

    def augment(xb, tb):
        xb += 1
        return xb, tb

    for _ in range(3):
        for _ in xn.data.Loader(x, t, batch_size=2, shuffle=False, transform=augment):
            pass
    for xb, _ in xn.data.Loader(x, t, batch_size=2, shuffle=False):
        xb /= 255
    numpy.testing.assert_array_equal(x, before)


def test_to_host_is_a_snapshot_on_every_device(device):
    xn.seed(1)
    model = Sequential(Affine(2, 2))
    snapshot = xn.to_host(model.params())
    kept = {k: v.copy() for k, v in snapshot.items()}
    x = numpy.ones((4, 2), numpy.float32)
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.5), (x, numpy.array([0, 1, 0, 1])),
           epochs=2, batch_size=2, progress=False)
    for name, value in snapshot.items():
        numpy.testing.assert_array_equal(value, kept[name])
    memmap_like = numpy.zeros(3)
    assert xn.to_host(memmap_like) is not memmap_like


def test_a_parameter_kept_as_an_attribute_moves_with_the_layer():
    model = Sequential(Scale(3))
    x = numpy.ones((2, 3), numpy.float32)
    model(x)
    model.to("sim")
    assert xn.device_of(model.layers[0].s) == xn.Device("sim")
    y = model(xn.to_device(x, "sim"))
    numpy.testing.assert_array_equal(xn.to_host(y), numpy.ones((2, 3)))
