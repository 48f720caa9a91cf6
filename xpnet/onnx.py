"""``export_onnx``: a trained Sequential as a standard ONNX graph, for serving stacks
(ONNX Runtime, TensorRT, OpenVINO, ...). Needs the ``onnx`` package
(``pip install 'xpnet[onnx]'``), imported only when a model is exported.

Each built-in layer becomes the ONNX operator that computes the same thing, in eval mode:

====================  =========================================================
Affine                Gemm (after Flatten when its input has more than two axes)
ReLU, LeakyReLU       Relu, LeakyRelu (alpha = slope)
Sigmoid, Tanh         Sigmoid, Tanh
Softmax               Softmax (the same axis)
Dropout               Identity (inference)
BatchNorm             BatchNormalization with the running statistics
Conv2D                Conv (strides, pads, rectangular kernels)
MaxPool2D, AvgPool2D  MaxPool, AveragePool (count_include_pad=1: xpnet counts zero padding)
Flatten               Flatten (axis 1)
Sequential            its layers, in order (nested ones too)
====================  =========================================================

Inputs are cast where xpnet casts them (integer images to the parameters' dtype), so the
graph takes what the model takes. The batch axis is dynamic (``batch``); the other axes
are the example input's. ONNX Runtime's CPU provider has Conv and AveragePool in float32
only: export float32 models (xpnet's default) to run them there. A layer without such an
operator (a Lambda, a layer of your own, a subclass of a built-in) is refused by its place
and name before anything is written.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy

from ._files import write_atomically
from .nn.conv import AvgPool2D, Conv2D, MaxPool2D
from .nn.layer import Layer
from .nn.layers import Affine, BatchNorm, Dropout, Flatten, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .nn.sequential import Sequential
from .transfer import array_or_host, to_host

OPSET = 17       # ONNX 1.12's operator set: ONNX Runtime has run every operator used here since 1.12
IR_VERSION = 8   # the file format that goes with opset 17, so older runtimes read the file too


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("xn.export_onnx needs the onnx package: pip install 'xpnet[onnx]' "
                          "(or pip install onnx).") from None
    return onnx


class _Graph:
    """The nodes and weights of the graph being built, and the dtype and rank of the value
    that flows between layers (``value``), mirroring what xpnet's layers do to it."""

    def __init__(self, onnx, value, dtype, rank):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.weights = [], []
        self.value, self.dtype, self.rank = value, numpy.dtype(dtype), rank
        self._names = 0

    def weight(self, name, array):
        self.weights.append(self.onnx.numpy_helper.from_array(numpy.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, where, **attrs):
        """Append ``op`` on ``inputs``; its output becomes the flowing value."""
        self._names += 1
        out = f"{where}/{op}_{self._names}" if where else f"{op}_{self._names}"
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        self.value = out
        return out

    def cast(self, dtype, where):
        dtype = numpy.dtype(dtype)
        if dtype != self.dtype:
            self.node("Cast", [self.value], where, to=self.helper.np_dtype_to_tensor_dtype(dtype))
            self.dtype = dtype

    def as_float(self, where):
        """Layer._as_float: integer and bool values become float32; floats stay as they are."""
        if self.dtype.kind != "f":
            self.cast("float32", where)


def _prefix(where, name):
    return f"{where}.{name}" if where else name


def _affine(g, layer, where):
    W, b = to_host(layer.param("W")), to_host(layer.param("b"))
    g.cast(W.dtype, where)
    if g.rank != 2:  # Affine flattens each sample, as the book's does
        g.node("Flatten", [g.value], where, axis=1)
        g.rank = 2
    g.node("Gemm", [g.value, g.weight(_prefix(where, "W"), W), g.weight(_prefix(where, "b"), b)], where)


def _activation(op, **attrs):
    def emit(g, layer, where):
        g.as_float(where)
        values = {k: (v(layer) if callable(v) else v) for k, v in attrs.items()}
        g.node(op, [g.value], where, **values)
    return emit


def _dropout(g, layer, where):
    g.as_float(where)
    g.node("Identity", [g.value], where)  # inverted dropout is the identity in eval mode


def _flatten(g, layer, where):
    g.node("Flatten", [g.value], where, axis=1)
    g.rank = 2


def _batchnorm(g, layer, where):
    gamma = to_host(layer.param("gamma"))
    g.cast(gamma.dtype, where)
    names = [g.weight(_prefix(where, "gamma"), gamma), g.weight(_prefix(where, "beta"), to_host(layer.param("beta"))),
             g.weight(_prefix(where, "running_mean"), to_host(layer.buffer("running_mean"))),
             g.weight(_prefix(where, "running_var"), to_host(layer.buffer("running_var")))]
    # (x - running_mean) / sqrt(running_var + eps) * gamma + beta, per feature (N, C) or channel (N, C, H, W)
    g.node("BatchNormalization", [g.value, *names], where, epsilon=float(layer.eps))


def _conv(g, layer, where):
    W, b = to_host(layer.param("W")), to_host(layer.param("b"))
    g.cast(W.dtype, where)
    (sh, sw), (ph, pw) = layer.stride, layer.pad
    g.node("Conv", [g.value, g.weight(_prefix(where, "W"), W), g.weight(_prefix(where, "b"), b)], where,
           kernel_shape=[layer.kh, layer.kw], strides=[sh, sw], pads=[ph, pw, ph, pw])


def _pool(op, **extra):
    def emit(g, layer, where):
        g.as_float(where)
        (sh, sw), (ph, pw) = layer.stride, layer.pad
        g.node(op, [g.value], where, kernel_shape=[layer.ph, layer.pw], strides=[sh, sw],
               pads=[ph, pw, ph, pw], **extra)
    return emit


# The layers with an ONNX form: the classes themselves, not their subclasses (a subclass
# may compute something else, and its forward cannot be read).
EMITTERS = {
    Affine: _affine,
    ReLU: _activation("Relu"),
    LeakyReLU: _activation("LeakyRelu", alpha=lambda layer: float(layer.slope)),
    Sigmoid: _activation("Sigmoid"),
    Tanh: _activation("Tanh"),
    Softmax: _activation("Softmax", axis=lambda layer: int(layer.axis)),
    Dropout: _dropout,
    BatchNorm: _batchnorm,
    Conv2D: _conv,
    MaxPool2D: _pool("MaxPool"),
    AvgPool2D: _pool("AveragePool", count_include_pad=1),
    Flatten: _flatten,
}


def _is_sequential(layer) -> bool:
    """A Sequential, or a subclass of it that runs its layers as Sequential does."""
    return isinstance(layer, Sequential) and type(layer).forward is Sequential.forward


def _leaves(model, where=""):
    """(place, layer) for every layer ``model`` runs, in order, nested Sequentials opened;
    the place is the prefix of the layer's parameter names (``"2"``, ``"0.1"``)."""
    if _is_sequential(model):
        for i, layer in enumerate(model.layers):
            yield from _leaves(layer, _prefix(where, str(i)))
    else:
        yield where, model


def _refuse_unexported(model):
    for where, layer in _leaves(model):
        if type(layer) not in EMITTERS:
            name = type(layer).__name__  # a subclass describes itself as its built-in base may
            what = layer.describe() if layer.describe().startswith(name) else f"{name}: {layer.describe()}"
            place = f"layer {where} ({what})" if where else f"the layer {what}"
            known = ", ".join(cls.__name__ for cls in EMITTERS)
            raise TypeError(
                f"xn.export_onnx: {place} has no ONNX form. Exported are the built-in {known} and "
                f"Sequentials of them; a Lambda, a layer of your own or a subclass of a built-in runs "
                f"Python that cannot be read as ONNX operators. Build the model from those layers, or "
                f"export the part before it.")


def export_onnx(model, path, example_input) -> Path:
    """Write ``model`` (a Sequential of built-in layers, or one such layer) to ``path`` as an
    ONNX graph (opset 17) that computes ``xn.predict(model, x)``, and return the path.

    ``example_input`` is a batch the model takes (any batch size, any device, or a
    PyTorch/NumPy array): the graph's input has its dtype and its shape after the batch
    axis, which is dynamic. The model is run once on it (in eval mode, its mode restored)
    so that a wrong shape fails here, named by xpnet, not in the runtime. The graph passes
    ``onnx.checker``; the file is written whole or not at all.
    """
    onnx = _onnx()
    from .training.inference import predict
    if not isinstance(model, Layer):
        raise TypeError(f"xn.export_onnx: model must be an xpnet layer or Sequential, got {type(model).__name__}.")
    _refuse_unexported(model)
    example = to_host(array_or_host(example_input, "xn.export_onnx example_input"))
    if example.ndim < 1 or len(example) == 0:
        raise ValueError(f"xn.export_onnx: example_input must be a batch of at least one sample (shape (N, ...)), "
                         f"got shape {example.shape}.")
    if example.dtype.kind not in "biuf":
        raise TypeError(f"xn.export_onnx: example_input must hold real numbers, got {example.dtype}.")
    expected = to_host(predict(model, example))  # checks the shapes, with xpnet's messages

    helper, to_onnx_type = onnx.helper, onnx.helper.np_dtype_to_tensor_dtype
    g = _Graph(onnx, "input", example.dtype, example.ndim)
    for where, layer in _leaves(model):
        EMITTERS[type(layer)](g, layer, where)
    if g.dtype != expected.dtype:  # the walk above mirrors the layers' casts; a mismatch is a bug here
        raise AssertionError(f"export_onnx: the graph ends in {g.dtype}, the model in {expected.dtype}")
    g.node("Identity", [g.value], "")
    g.nodes[-1].output[0] = "output"
    graph = helper.make_graph(
        g.nodes, "xpnet", [helper.make_tensor_value_info("input", to_onnx_type(example.dtype),
                                                         ["batch", *example.shape[1:]])],
        [helper.make_tensor_value_info("output", to_onnx_type(expected.dtype), ["batch", *expected.shape[1:]])],
        initializer=g.weights)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="xpnet", producer_version=_version(),
                              doc_string=model.describe())
    onnx.checker.check_model(proto, full_check=True)
    return _write(Path(path), proto.SerializeToString())


def _version():
    from ._version import __version__
    return __version__


def _write(path: Path, data: bytes) -> Path:
    """``data`` at ``path``: a temporary file beside it, flushed, renamed over it (as
    ``xn.save`` writes), so a crash leaves the old file or the new one, never half of one."""
    target = Path(os.path.realpath(path))
    write_atomically(target, lambda f: f.write(data))
    return Path(path)
