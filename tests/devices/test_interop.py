"""Issue 29: data and models in and out of xpnet.

DLPack: another library's array comes in without a copy where it already sits on the
target device and with one counted copy otherwise; xpnet's arrays leave by DLPack, except
sim's, which a host consumer is refused with ``xn.to_host`` named (as CuPy's would be).
ONNX: ``xn.export_onnx`` and ``xpnet export`` write graphs that ONNX Runtime runs to
``xn.predict``'s outputs.

PyTorch, ONNX and ONNX Runtime are the suite's dev-only oracles (backends/oracles.txt,
installed by ``make test``): where they are missing this module fails to import, loudly.
"""
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import xpnet as xn

try:
    import onnx
    import onnxruntime
    import torch
except ImportError as exc:  # not a skip: CI installs them, and a silent skip would hide these cases
    raise ImportError(f"{exc}. The interoperability tests need the suite's oracles: "
                      f"pip install -r backends/oracles.txt (make test installs them).") from None

ROOT = Path(__file__).resolve().parents[2]
CNN = runpy.run_path(str(ROOT / "examples" / "mnist_cnn.py"))["MODELS"]
# float32 logits of order 1 after training, summed in another order by ONNX Runtime's
# kernels than by NumPy's BLAS (about 2e-6 seen): 1e-5 is the bound.
TOLERANCE = 1e-5


def _delta(before):
    now = xn.transfer_stats()
    return {k: getattr(now, k) - getattr(before, k) for k in ("h2d_count", "h2d_bytes", "d2h_count", "d2d_count")}


# -- DLPack in ---------------------------------------------------------------------------------
def test_cpu_tensor_comes_to_cpu_without_a_copy():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    before = xn.transfer_stats()
    x = xn.asarray(t, device="cpu")
    assert isinstance(x, numpy.ndarray) and numpy.shares_memory(x, t.numpy())
    t[0, 0] = 42.0
    assert x[0, 0] == 42.0
    assert _delta(before) == {"h2d_count": 0, "h2d_bytes": 0, "d2h_count": 0, "d2d_count": 0}


def test_cpu_tensor_comes_to_sim_by_one_counted_copy():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    before = xn.transfer_stats()
    x = xn.asarray(t, device="sim")
    assert xn.device_of(x) == xn.Device("sim")
    assert _delta(before) == {"h2d_count": 1, "h2d_bytes": 48, "d2h_count": 0, "d2d_count": 0}
    t[0, 0] = 42.0  # a copy: the device array does not see later writes
    numpy.testing.assert_array_equal(xn.to_host(x), numpy.arange(12, dtype=numpy.float32).reshape(3, 4))


def test_to_device_and_to_host_take_tensors_in_a_tree(device):
    t, u = torch.ones(2, 3), torch.arange(4)
    tree = xn.to_device({"x": t, "rest": [u, "label"]}, device)
    assert xn.device_of(tree["x"]) == device and xn.device_of(tree["rest"][0]) == device
    assert tree["rest"][1] == "label"
    numpy.testing.assert_array_equal(xn.to_host(tree["rest"][0]), numpy.arange(4))
    host = xn.to_host({"t": t})["t"]
    assert isinstance(host, numpy.ndarray) and numpy.shares_memory(host, t.numpy())


def test_asarray_casts_a_tensor_to_the_dtype_asked(device):
    x = xn.asarray(torch.arange(3), dtype="float32", device=device)
    assert x.dtype == numpy.float32 and xn.device_of(x) == device


def test_a_tensor_needing_grad_is_refused_with_the_fix():
    with pytest.raises(TypeError, match="Tensor could not be taken by DLPack.*detach"):
        xn.asarray(torch.ones(2, requires_grad=True), device="cpu")


def test_an_array_on_a_device_xpnet_cannot_read_is_refused_by_its_type():
    class OnAnotherDevice:  # DLPack's kDLVulkan (7)
        def __dlpack__(self, **kwargs):
            raise AssertionError("not to be called")

        def __dlpack_device__(self):
            return (7, 0)
    with pytest.raises(TypeError, match="OnAnotherDevice on DLPack device type 7"):
        xn.asarray(OnAnotherDevice(), device="cpu")


def test_fit_and_predict_take_tensors(device):
    rng = numpy.random.default_rng(0)
    x, t = torch.tensor(rng.standard_normal((20, 4)).astype("float32")), torch.tensor(rng.integers(0, 3, 20))
    with xn.use_device(device):
        model = xn.nn.Sequential(xn.nn.Affine(4, 3, seed=0))
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), epochs=1, batch_size=10,
           progress=False)
    numpy.testing.assert_allclose(xn.to_host(xn.predict(model, x)), xn.to_host(xn.predict(model, x.numpy())))


# -- DLPack out --------------------------------------------------------------------------------
def test_cpu_arrays_leave_for_torch_without_a_copy():
    x = xn.asarray(numpy.arange(6.0), device="cpu")
    t = torch.from_dlpack(x)
    assert t.data_ptr() == x.ctypes.data


@pytest.mark.parametrize("consumer", [torch.from_dlpack, numpy.from_dlpack], ids=["torch", "numpy"])
def test_sim_arrays_are_refused_by_host_consumers_naming_to_host(consumer):
    x = xn.asarray(numpy.arange(6.0), device="sim")
    before = xn.transfer_stats()
    with pytest.raises(BufferError, match=re.escape("xn.to_host(x)")):
        consumer(x)
    assert _delta(before)["d2h_count"] == 0
    assert torch.equal(torch.from_dlpack(xn.to_host(x)), torch.arange(6.0, dtype=torch.float64))


def test_sim_from_dlpack_takes_sim_arrays_without_a_copy_and_refuses_host_memory():
    """The sim ``xp.from_dlpack`` follows ``cupy.from_dlpack``: device arrays are shared, host
    memory is refused (before, it came in with no transfer counted)."""
    sim = xn.Device("sim")
    x = xn.asarray(numpy.zeros(3), device=sim)
    before = xn.transfer_stats()
    with xn.use_device(sim):
        y = sim.xp.from_dlpack(x)
        y[0] = 5.0
        assert float(x[0]) == 5.0  # the same memory
        z = sim.xp.from_dlpack(x, copy=True)
        z[1] = 7.0
        assert float(x[1]) == 0.0  # copy=True copies, on the device
        with pytest.raises(TypeError, match=re.escape("xn.asarray(x, device='sim:0')")):
            sim.xp.from_dlpack(torch.ones(3))
    assert _delta(before)["h2d_count"] == 0


@pytest.mark.gpu
@pytest.mark.skipif(xn.cuda_unavailable_reason() is not None, reason=f"cuda: {xn.cuda_unavailable_reason()}")
def test_cuda_dlpack_arrays_come_in_without_a_copy_on_their_gpu():
    import cupy

    class ForeignCudaArray:  # another library's CUDA tensor: only the DLPack protocol
        def __init__(self, array):
            self.array = array

        def __dlpack__(self, **kwargs):
            return self.array.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.array.__dlpack_device__()

    with cupy.cuda.Device(0):
        source = cupy.arange(6, dtype=cupy.float32)
    before = xn.transfer_stats()
    x = xn.asarray(ForeignCudaArray(source), device="cuda:0")
    assert isinstance(x, cupy.ndarray) and x.data.ptr == source.data.ptr
    assert _delta(before) == {"h2d_count": 0, "h2d_bytes": 0, "d2h_count": 0, "d2d_count": 0}
    host = xn.asarray(ForeignCudaArray(source), device="cpu")
    assert _delta(before)["d2h_count"] == 1
    numpy.testing.assert_array_equal(host, numpy.arange(6, dtype=numpy.float32))
    assert xn.asarray(numpy.ones(2), device="cuda:0").__dlpack_device__() == (2, 0)  # kDLCUDA: CuPy's own


# -- ONNX export -------------------------------------------------------------------------------
def _tf2_mlp():
    return xn.nn.Sequential(xn.nn.Affine(784, 100), xn.nn.ReLU(), xn.nn.Affine(100, 50), xn.nn.ReLU(),
                            xn.nn.Affine(50, 10))


def _batchnorm_dropout_mlp():
    return xn.nn.Sequential(xn.nn.Affine(784, 64), xn.nn.BatchNorm(64), xn.nn.ReLU(), xn.nn.Dropout(0.3),
                            xn.nn.Affine(64, 32), xn.nn.BatchNorm(32), xn.nn.ReLU(), xn.nn.Dropout(0.3),
                            xn.nn.Affine(32, 10))


MODELS = {"tf2_mlp": (_tf2_mlp, (784,)), "batchnorm_dropout_mlp": (_batchnorm_dropout_mlp, (784,)),
          "simple_convnet": (CNN["simple"][1], (1, 28, 28)), "deep_convnet": (CNN["deep"][1], (1, 28, 28))}


def run_in_onnx_runtime(path, x):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # the test machines share their cores
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _trained(name, device, n=64):
    """The model after a few steps of Adam on random images with random labels: weights and
    BatchNorm's running statistics away from their initial values."""
    build, shape = MODELS[name]
    rng = numpy.random.default_rng(1)
    x = rng.random((n, *shape), dtype=numpy.float32)
    t = rng.integers(0, 10, n)
    xn.seed(0)
    with xn.use_device(device):
        model = build()
    initial = xn.to_host(model.params())
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(model, lr=1e-2), (x, t), epochs=1, batch_size=32,
           progress=False)
    trained = xn.to_host(model.params())
    assert all(not numpy.array_equal(initial[k], trained[k]) for k in initial), "training changed no weight"
    return model, x


@pytest.mark.parametrize("name", list(MODELS))
def test_trained_model_exports_and_onnx_runtime_matches_predict(name, device, tmp_path):
    model, x = _trained(name, device)
    mode = model.training
    path = xn.export_onnx(model, tmp_path / f"{name}.onnx", x[:1])
    assert model.training == mode and model.device == device  # the export leaves the model as it was
    onnx.checker.check_model(onnx.load(path), full_check=True)
    expected = xn.to_host(xn.predict(model, x))
    numpy.testing.assert_allclose(run_in_onnx_runtime(path, x), expected, rtol=TOLERANCE, atol=TOLERANCE)


def test_batch_dimension_is_dynamic(tmp_path):
    model, x = _trained("tf2_mlp", "cpu")
    path = xn.export_onnx(model, tmp_path / "m.onnx", x[:3])
    graph = onnx.load(path).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for n in (1, 7, 64):
        assert run_in_onnx_runtime(path, x[:n]).shape == (n, 10)


def test_integer_images_are_cast_as_xpnet_casts_them(tmp_path):
    model, _ = _trained("simple_convnet", "cpu")
    images = numpy.random.default_rng(2).integers(0, 2, (5, 1, 28, 28)).astype(numpy.uint8)
    path = xn.export_onnx(model, tmp_path / "m.onnx", images)
    assert onnx.load(path).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    numpy.testing.assert_allclose(run_in_onnx_runtime(path, images), xn.to_host(xn.predict(model, images)),
                                  rtol=TOLERANCE, atol=TOLERANCE)


class _MyReLU(xn.nn.ReLU):
    pass


@pytest.mark.parametrize("layer,place", [
    (xn.nn.Lambda(lambda x: x * xn.functional.sigmoid(x), name="swish"), "layer 1.1 (Lambda(swish))"),
    (_MyReLU(), "layer 1.1 (_MyReLU)"),
], ids=["lambda", "subclass"])
def test_a_layer_without_onnx_form_is_refused_by_place_and_name(layer, place, tmp_path):
    model = xn.nn.Sequential(xn.nn.Affine(4, 3), xn.nn.Sequential(xn.nn.ReLU(), layer))
    with pytest.raises(TypeError, match=re.escape(place) + " has no ONNX form"):
        xn.export_onnx(model, tmp_path / "m.onnx", numpy.zeros((1, 4), numpy.float32))
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_example_shape_is_named_by_xpnet(tmp_path):
    with pytest.raises(xn.ShapeError, match=re.escape("Affine 784->100")):
        xn.export_onnx(_tf2_mlp(), tmp_path / "m.onnx", numpy.zeros((1, 10), numpy.float32))


def test_export_without_onnx_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=re.escape("pip install 'xpnet[onnx]'")):
        xn.export_onnx(_tf2_mlp(), tmp_path / "m.onnx", numpy.zeros((1, 784), numpy.float32))


def test_import_xpnet_loads_neither_onnx_nor_torch():
    code = "import sys, xpnet; print(sorted(m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the command line ------------------------------------------------------------------------------
def _xpnet(*args):
    env = {**os.environ, "XPNET_DEVICE": "cpu"}
    return subprocess.run([sys.executable, "-m", "xpnet", *args], capture_output=True, text=True, cwd=ROOT, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["simple", "deep"])
def test_export_command_converts_an_example_checkpoint(key, tmp_path):
    xn.seed(4)
    model = CNN[key][1]()
    xn.save(model, tmp_path / "model.npz")
    result = _xpnet("export", str(tmp_path / "model.npz"), "--example", "mnist_cnn", "--out", str(tmp_path / "m.onnx"))
    assert result.returncode == 0, result.stderr
    assert CNN[key][0] in result.stdout
    x = numpy.random.default_rng(0).random((4, 1, 28, 28), dtype=numpy.float32)
    numpy.testing.assert_allclose(run_in_onnx_runtime(tmp_path / "m.onnx", x), xn.to_host(xn.predict(model, x)),
                                  rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("args,says", [
    (["export", "{ckpt}"], "the following arguments are required: --example"),
    (["export", "{ckpt}", "--example", "mnist_mlp"], "give one of mnist_cnn"),
    (["export", "{ckpt}", "--example", "mnist_cnn", "--model", "big"], "'big' is not a model of mnist_cnn"),
    (["export", "{ckpt}", "--example", "mnist_cnn", "--model", "deep"], "fits no model of mnist_cnn"),
    (["export", "{dir}/none.npz", "--example", "mnist_cnn"], "no such file"),
    (["export", "{ckpt}", "--example", "mnist_cnn", "--out", "{dir}/no/m.onnx"], "does not exist"),
], ids=["no-example", "not-exportable", "unknown-model", "wrong-model", "no-checkpoint", "no-folder"])
def test_export_command_usage_errors_are_one_line_with_status_2(args, says, tmp_path):
    xn.save(CNN["simple"][1](), tmp_path / "model.npz")
    result = _xpnet(*(a.format(ckpt=tmp_path / "model.npz", dir=tmp_path) for a in args))
    assert result.returncode == 2 and says in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not list(tmp_path.glob("*.onnx"))


@pytest.mark.slow
@pytest.mark.mnist
def test_onnx_example_reaches_xpnets_accuracy_in_onnx_runtime(tmp_path):
    env = {**os.environ, "XPNET_DEVICE": "sim"}
    result = subprocess.run([sys.executable, "examples/mnist_onnx.py", "--limit", "500", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    ours, theirs = re.search(r"xpnet test accuracy ([\d.]+); ONNX Runtime test accuracy ([\d.]+)",
                             result.stdout).groups()
    assert ours == theirs and float(ours) > 0.3  # trained: chance is 0.1
    assert (tmp_path / "model.onnx").exists()


# -- the guide ---------------------------------------------------------------------------------------
GUIDE = ROOT / "docs" / "interop.md"


def test_the_interop_guide_runs_on_every_device(device):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace = {"__name__": "guide"}
    exec(compile("\n".join(blocks), str(GUIDE), "exec"), namespace)  # noqa: S102 (our own document)
    assert namespace["device"] == device and namespace["model"].device == device
