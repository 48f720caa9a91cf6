"""Property: every layer sample of the registry that has an ONNX form exports with
``xn.export_onnx``, passes ``onnx.checker``, and computes in ONNX Runtime what
``xn.predict`` computes (within 1e-5), for a batch size other than the example's; a layer
without one is refused by its name, and nothing is written.

ONNX and ONNX Runtime are the suite's dev-only oracles (backends/oracles.txt, installed by
``make test``): where they are missing this module fails to import, loudly, rather than
skipping the property.
"""
import re

import numpy
import pytest

import xpnet as xn

from .registry import LAYERS, layer_samples
from .support import host_input

try:
    import onnx
    import onnxruntime
except ImportError as exc:  # not a skip: CI installs them, and a silent skip would hide the property
    raise ImportError(f"{exc}. The ONNX conformance property needs the suite's oracles: "
                      f"pip install -r backends/oracles.txt (make test installs them).") from None

# The registry's layers that have no ONNX form, and why; every other entry must export.
NO_ONNX_FORM = {"Lambda": "runs a Python function, which no ONNX operator stands for"}
SAMPLES = {id: (entry, sample) for id, entry, sample in layer_samples()}
# float32 values of order 1 through a few sums: ONNX Runtime's kernels add in another order
# than NumPy's BLAS and im2col, so the last bits differ (about 1e-7 seen); 1e-5 is the contract.
TOLERANCE = 1e-5


def run_in_onnx_runtime(path, x):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # the test machines share their cores
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_every_registry_entry_is_exported_or_named_as_having_no_onnx_form():
    names = {entry.name for entry in LAYERS}
    assert set(NO_ONNX_FORM) <= names, f"NO_ONNX_FORM names layers the registry lacks: {set(NO_ONNX_FORM) - names}"


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_layer_sample_exports_and_matches_predict_in_onnx_runtime(sample, device, tmp_path):
    entry, s = SAMPLES[sample]
    layer = s.make("float32")
    x = host_input(s.shape, dtype="float32")
    path = tmp_path / "layer.onnx"
    if entry.name in NO_ONNX_FORM:
        with pytest.raises(TypeError, match=re.escape(layer.describe()) + ".*no ONNX form"):
            xn.export_onnx(layer, path, x)
        assert not path.exists()
        return
    if layer.buffers():  # one training forward moves the running statistics off 0 and 1
        layer(xn.to_device(x * 2 + 1, device))
    exported = xn.export_onnx(layer, path, x[:1])
    model = onnx.load(exported)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    expected = xn.to_host(xn.predict(layer, xn.to_device(x, device)))
    got = run_in_onnx_runtime(exported, x)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    numpy.testing.assert_allclose(got, expected, rtol=TOLERANCE, atol=TOLERANCE)


def test_nested_sequentials_export_as_their_layers_in_order(device, tmp_path):
    """Sequentials inside Sequentials (two levels), with the registry's geometries: strided
    padded convolution, overlapping padded max pooling, a rectangular padded average
    pooling, BatchNorm over channels and features, and Affine's implicit flatten."""
    xn.seed(3)
    model = xn.nn.Sequential(
        xn.nn.Sequential(xn.nn.Conv2D(2, 3, 3, stride=2, pad=1), xn.nn.LeakyReLU(0.2)),
        xn.nn.Sequential(xn.nn.MaxPool2D(3, stride=1, pad=1),
                         xn.nn.Sequential(xn.nn.BatchNorm(3), xn.nn.AvgPool2D((2, 3), stride=(1, 2), pad=1))),
        xn.nn.Affine(3 * 4 * 2, 6), xn.nn.BatchNorm(6), xn.nn.Tanh(), xn.nn.Dropout(0.5), xn.nn.Affine(6, 4),
        xn.nn.Sigmoid(), xn.nn.Softmax())
    x = host_input((7, 2, 5, 5), dtype="float32")
    model(xn.to_device(x, device))  # training mode: BatchNorm's running statistics move
    path = xn.export_onnx(model, tmp_path / "nested.onnx", x[:2])
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert [op for op in ops if op not in ("Flatten", "Identity")] == [
        "Conv", "LeakyRelu", "MaxPool", "BatchNormalization", "AveragePool", "Gemm",
        "BatchNormalization", "Tanh", "Gemm", "Sigmoid", "Softmax"]
    numpy.testing.assert_allclose(run_in_onnx_runtime(path, x), xn.to_host(xn.predict(model, x)),
                                  rtol=TOLERANCE, atol=TOLERANCE)
