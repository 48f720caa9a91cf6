"""``Sequential``: layers applied in order, and the buffer plan that keeps what its caller
holds from being overwritten (see the class)."""
from __future__ import annotations

from .. import autodiff
from ..device import Device
from ..errors import DTypeError, ImplicitTransferError, ShapeError
from .layer import Layer
from .wrapping import _leaf_layers, _refuse_traced


class _Layers(tuple):
    """Sequential's layers: a tuple, since the buffer plan and the optimizers' slots are
    built for one structure. Changing it says what to do instead."""

    def _fixed(self, *args, **kwargs):
        raise TypeError("a Sequential's layers are fixed once it is built (its buffer reuse and "
                        "its optimizer depend on them). Build a new one instead, for example "
                        "Sequential(*model.layers[:2], Dropout(0.5), *model.layers[2:]), and a new "
                        "optimizer for it.")

    append = extend = insert = pop = remove = clear = sort = reverse = __setitem__ = __delitem__ = _fixed
    __iadd__ = __imul__ = _fixed


def _checked(layers):
    """``layers`` once each is a layer, used once in the whole tree (nested Sequentials too)."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential item {i} is {type(layer).__name__}, not a layer.")
    seen = set()
    for layer in _leaf_layers(layers):
        if id(layer) in seen:
            raise ValueError(
                f"Sequential: the same {layer.describe()} layer object is used twice. A layer "
                f"keeps what its backward needs from its last call, so a second use would give "
                f"the first wrong gradients. Use two layers; to share weights, write a layer "
                f"that applies one weight twice, or use xn.grad.")
        seen.add(id(layer))
    return layers


def _one_device(layers):
    """The device all ``layers`` are on; raises naming the first that is elsewhere."""
    device = layers[0].device
    for i, layer in enumerate(layers):
        if layer.device != device:
            raise ImplicitTransferError(
                f"Sequential layer {i} ({layer.describe()}) is on {layer.device}, layer 0 "
                f"on {device}. Build them under one device or call model.to(device).")
    return device


class Sequential(Layer):
    """Layers applied in order; parameters are named ``"<index>.<name>"`` (``"0.W"``, and
    ``"0.1.W"`` for layer 1 of a Sequential nested at index 0).

    ``backward`` returns the gradient with respect to the input only when built with
    ``input_grad=True``: otherwise the first layers skip computing what nobody reads.
    ``layers`` is fixed once built; a layer may appear only once (a layer keeps the
    input of its last call for backward, so a second use would overwrite the first's).

    The buffer plan: no layer writes into an array it was given, and built-in layers write
    their results into buffers they reuse from call to call, except the ones that leave
    the Sequential. Its output is made fresh on each call by the last layer that does not
    pass its input through (``returns_input``: Flatten, Dropout, a Lambda or layer of
    yours may), and so is the input gradient by the first such layer; so what a caller
    holds is never overwritten by a later call. The plan is the Sequential's, set on its
    layers for the length of each call, so a layer shared by two Sequentials follows the
    one that runs it.
    """

    _unrecorded = ("_ran",)  # what the last forward ran: set by each call

    def __init__(self, *layers, input_grad: bool = False):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        self.layers = _Layers(_checked(layers))
        self.input_grad = input_grad
        self._need_dx = input_grad  # nested in another Sequential: set by it for each call
        if self.layers:
            self.device = _one_device(self.layers)
        allocating = [i for i, layer in enumerate(self.layers) if not layer.returns_input]
        self._last = allocating[-1] if allocating else -1  # makes the output (fresh)
        self._first = allocating[0] if allocating else len(self.layers)  # makes the input gradient
        self._first_trained = next((i for i, l in enumerate(self.layers) if l.params()), len(self.layers))
        self._fusions = {}  # first layer's index -> a stage running several layers in one pass
        for i, layer in enumerate(self.layers):
            stage = layer._fuse(self.layers[i + 1:])
            if stage is not None:
                self._fusions[i] = stage
        self._ran = None  # what the last forward ran, for backward: (index, size, layer or stage)

    @property
    def _version(self):
        """Changes whenever this Sequential or a layer inside it moves or is re-laid out (by
        any optimizer: a layer shared with another model's optimizer too), so an optimizer
        of this one notices and lays its buffers out again."""
        return (self._own_version,) + tuple(layer._version for layer in self.layers)

    @_version.setter
    def _version(self, value):  # Layer.__init__'s 0
        self._own_version = value

    @property
    def returns_input(self):
        return all(layer.returns_input for layer in self.layers)

    def __call__(self, x):
        self._check_device(x)
        return self.forward(x)  # forward names the failing layer itself

    def sublayers(self):
        return self.layers

    def __len__(self):
        return len(self.layers)

    @property
    def graph_safe(self):
        return all(layer.graph_safe for layer in self.layers)

    def clear_workspace(self):
        for layer in self.layers:
            layer.clear_workspace()

    def random_state(self):
        return self._named(lambda layer: layer.random_state())

    def __getitem__(self, i):
        return self.layers[i]

    def forward(self, x):
        if type(x) is autodiff.Tensor:  # inside xn.grad: every layer traced, no fused stage,
            _refuse_traced(self)        # and the last plain forward kept for backward
            for layer in self.layers:
                x = layer.forward(x)
            return x
        layers, reuse_all = self.layers, self._reuse  # reuse_all: an outer Sequential's plan allows it
        i, ran, self._ran = 0, [], None  # a forward that fails leaves nothing to go back through
        try:
            while i < len(layers):
                stage, size = self._fusions.get(i), 1
                if stage is not None and stage.applies(x):
                    size = stage.size
                else:
                    stage = layers[i]
                for k in range(i, i + size):
                    layers[k]._reuse = reuse_all or k < self._last
                try:
                    x = stage.forward(x)
                finally:
                    for k in range(i, i + size):
                        layers[k]._reuse = False
                ran.append((i, size, stage))
                i += size
        except (ShapeError, DTypeError) as exc:
            raise type(exc)(f"Sequential layer {i} ({layers[i].describe()}): {exc}") from None
        self._ran = ran
        return x

    def backward(self, dout):
        if self._ran is None:
            raise RuntimeError(f"{self.describe()}: backward needs a forward pass first (the last one "
                               f"failed, or none ran). Call model(x), then model.backward(dout).")
        layers, reuse_all, need_input = self.layers, self._reuse, self._need_dx
        for i, size, stage in reversed(self._ran):
            told = [layers[k]._need_dx for k in range(i, i + size)]
            for k in range(i, i + size):
                layers[k]._reuse = reuse_all or k > self._first
                layers[k]._need_dx = need_input or k > self._first_trained
            try:
                needed = layers[i]._need_dx
                dout = stage.backward(dout)
            finally:
                for k, was in zip(range(i, i + size), told):
                    layers[k]._reuse, layers[k]._need_dx = False, was
            if dout is None:
                if needed:
                    raise RuntimeError(
                        f"Sequential layer {i} ({layers[i].describe()}): backward returned None, but "
                        f"{'the layers before it need' if i else 'the caller asked for'} the gradient "
                        f"with respect to its input. End its backward with 'return dx'.")
                break
        return dout

    def _nonnegative_buffers(self):
        return {f"{i}.{n}" for i, layer in enumerate(self.layers) for n in layer._nonnegative_buffers()}

    def _named(self, getter):
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in getter(layer).items()}

    def params(self):
        return self._named(lambda layer: layer.params())

    def grads(self):
        return self._named(lambda layer: layer.grads())

    def buffers(self):
        return self._named(lambda layer: layer.buffers())

    def _rebind(self, params, grads):
        for i, layer in enumerate(self.layers):
            prefix = f"{i}."
            layer._rebind({k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)},
                          {k[len(prefix):]: v for k, v in grads.items() if k.startswith(prefix)})
        self._own_version += 1

    def to(self, device):
        device = Device(device)
        for layer in self.layers:
            layer.to(device)
        self.device = device
        self._own_version += 1
        return self

    def train(self, mode=True):
        for layer in self.layers:
            layer.train(mode)
        self.training = mode
        return self

    def describe(self):
        return "Sequential(" + ", ".join(l.describe() for l in self.layers) + ")"
