"""Cases a fixed list would miss, drawn by Hypothesis (deterministic: the conftest's
profile fixes the seed and keeps the examples few): convolution and pooling geometry
(rectangular kernels, strides, pads, remainders), batch sizes with remainders, soft-label
rows. Each is checked against the plain NumPy reference in float64."""
import numpy
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import xpnet as xn

from .registry import ref_conv, ref_pool, ref_softmax_cross_entropy
from .support import host_input
from .test_reference import central, close

side = st.integers(1, 3)


@given(n=st.integers(1, 3), c=st.integers(1, 2), f=st.integers(1, 2), h=st.integers(1, 6), w=st.integers(1, 6),
       kh=side, kw=side, sh=side, sw=side, ph=st.integers(0, 2), pw=st.integers(0, 2))
@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_conv2d_geometry_matches_the_reference(device, n, c, f, h, w, kh, kw, sh, sw, ph, pw):
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    with xn.use_device(device):
        layer = xn.nn.Conv2D(c, f, (kh, kw), stride=(sh, sw), pad=(ph, pw), dtype="float64", seed=0)
        layer.set_params({"b": host_input((f,), 3)})
        x = host_input((n, c, h, w))
        p = {k: xn.to_host(v).copy() for k, v in layer.params().items()}
        y = layer(xn.to_device(x))
        close(y, ref_conv(x, p, (sh, sw), (ph, pw)), 1e-10, "forward")
        wt = host_input(tuple(y.shape), 1)
        dx = layer.backward(xn.to_device(wt))
        close(dx, central(lambda: float((ref_conv(x, p, (sh, sw), (ph, pw)) * wt).sum()), x), 1e-6, "dL/dx")
        close(layer.grads()["W"], central(lambda: float((ref_conv(x, p, (sh, sw), (ph, pw)) * wt).sum()), p["W"]),
              1e-6, "dL/dW")


@given(kind=st.sampled_from(["max", "avg"]), n=st.integers(1, 2), c=st.integers(1, 2), h=st.integers(1, 6),
       w=st.integers(1, 6), kh=side, kw=side, sh=side, sw=side, ph=st.integers(0, 1), pw=st.integers(0, 1))
@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_pooling_geometry_matches_the_reference(device, kind, n, c, h, w, kh, kw, sh, sw, ph, pw):
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    assume(kind == "avg" or (ph <= kh // 2 and pw <= kw // 2))
    cls = xn.nn.MaxPool2D if kind == "max" else xn.nn.AvgPool2D
    with xn.use_device(device):
        layer = cls((kh, kw), stride=(sh, sw), pad=(ph, pw))
        x = host_input((n, c, h, w))
        y = layer(xn.to_device(x))
        ref = lambda: ref_pool(x, (kh, kw), (sh, sw), (ph, pw), kind)  # noqa: E731
        close(y, ref(), 1e-12, "forward")
        wt = host_input(tuple(y.shape), 1)
        close(layer.backward(xn.to_device(wt)), central(lambda: float((ref() * wt).sum()), x), 1e-6, "dL/dx")


@given(rows=st.integers(1, 6), classes=st.integers(2, 5), seed=st.integers(0, 2 ** 16))
@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_soft_label_rows_match_the_reference(device, rows, classes, seed):
    rng = numpy.random.default_rng(seed)
    t = rng.dirichlet(numpy.full(classes, 0.5), rows)  # rows summing to 1, some near one-hot
    y = rng.standard_normal((rows, classes)) * 3
    with xn.use_device(device):
        loss = xn.nn.SoftmaxCrossEntropy()
        close(loss(xn.to_device(y), xn.to_device(t)), ref_softmax_cross_entropy(y, t), 1e-12, "loss")
        close(loss.backward(), central(lambda: ref_softmax_cross_entropy(y, t), y), 1e-6, "dL/dy")


@given(n=st.integers(1, 40), batch_size=st.integers(1, 45))
@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_predict_in_batches_equals_one_forward_for_any_batch_size(device, n, batch_size):
    x = host_input((n, 5))
    with xn.use_device(device):
        model = xn.nn.Sequential(xn.nn.Affine(5, 4, dtype="float64", seed=0), xn.nn.Tanh(),
                                 xn.nn.Affine(4, 3, dtype="float64", seed=1))
        whole = xn.to_host(model.eval()(xn.to_device(x.copy()))).copy()
        close(xn.predict(model, x.copy(), batch_size=batch_size), whole, 1e-12, "batched predict")


@given(n=st.integers(2, 30), batch_size=st.integers(1, 12))
@pytest.mark.parametrize("device", ["cpu", "sim"])
def test_fit_with_a_remainder_batch_equals_the_manual_loop(device, n, batch_size):
    """One epoch of plain SGD over batches with a remainder, against the same steps by hand."""
    x, t = host_input((n, 3)), numpy.arange(n) % 2
    with xn.use_device(device):
        model = xn.nn.Sequential(xn.nn.Affine(3, 2, dtype="float64", seed=0))
        manual = xn.nn.Sequential(xn.nn.Affine(3, 2, dtype="float64", seed=0))
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.5), (x, t), epochs=1,
               batch_size=batch_size, shuffle=False, progress=False)
        loss, opt = xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(manual, lr=0.5)
        for lo in range(0, n, batch_size):
            loss(manual(xn.to_device(x[lo:lo + batch_size])), xn.to_device(t[lo:lo + batch_size]))
            manual.backward(loss.backward())
            opt.step()
        for k in model.params():
            close(model.params()[k], xn.to_host(manual.params()[k]), 1e-12, k)
