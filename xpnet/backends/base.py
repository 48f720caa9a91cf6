"""The portable backend: every numeric routine xpnet needs, written once on ``self.xp``.

A backend subclass sets ``xp`` and the transfer methods, and overrides a routine only
where it has something faster (thinc's ``Ops`` pattern). Generic code calls
``backend.relu_backward(...)`` and never asks which backend it holds.

Routines that take ``out=`` write into that buffer and return it; without ``out`` they
allocate. The backward formulas marked *operator-only* use nothing but Python operators
and array methods on their gradient argument, so ``xpnet.autodiff`` calls them with traced
values and gets higher-order derivatives from the same single formula.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import threading

import numpy

_PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # Philox4x32's multipliers and Weyl key increments
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_MASK32 = 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class TransferStats:
    """Counts and bytes of copies between host and devices since the process started."""

    h2d_count: int = 0
    h2d_bytes: int = 0
    d2h_count: int = 0
    d2h_bytes: int = 0
    d2d_count: int = 0
    d2d_bytes: int = 0

    def __sub__(self, other: "TransferStats") -> "TransferStats":
        return TransferStats(*(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    @property
    def count(self) -> int:
        """All copies, any direction."""
        return self.h2d_count + self.d2h_count + self.d2d_count


class _TransferCounter:
    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        with self._lock:
            self._values = {f.name: 0 for f in dataclasses.fields(TransferStats)}

    def record(self, direction: str, nbytes: int):
        with self._lock:
            self._values[f"{direction}_count"] += 1
            self._values[f"{direction}_bytes"] += int(nbytes)

    def snapshot(self) -> TransferStats:
        with self._lock:
            return TransferStats(**self._values)


TRANSFERS = _TransferCounter()


@dataclasses.dataclass(frozen=True)
class LaunchStats:
    """Device work since the process started (counted exactly on sim): ``kernels`` run,
    and ``launches``, the calls the host made to run them (a replayed recording is one
    launch of all its kernels)."""

    kernels: int = 0
    launches: int = 0

    def __sub__(self, other: "LaunchStats") -> "LaunchStats":
        return LaunchStats(self.kernels - other.kernels, self.launches - other.launches)


class _LaunchCounter:
    def __init__(self):
        self._lock = threading.Lock()
        self._values = {}

    def record(self, device: str, kernels: int, launches: int):
        with self._lock:
            k, n = self._values.get(device, (0, 0))
            self._values[device] = (k + kernels, n + launches)

    def snapshot(self) -> dict:
        with self._lock:
            return {d: LaunchStats(*v) for d, v in sorted(self._values.items())}


LAUNCHES = _LaunchCounter()


def _philox_blocks(shape):
    """Philox counters a Dropout mask of ``shape`` takes: four 32-bit words each."""
    return -(-int(numpy.prod(shape)) // 4)


def _keep_threshold(p):
    """The least 32-bit word that keeps a unit: uniform >= p, with uniform = (word >> 8) / 2^24,
    is word >= ceil(p 2^24) * 2^8, exactly."""
    return math.ceil(p * 2 ** 24) << 8


MATMUL_PRECISIONS = ("highest", "tf32")
_matmul_precision = ["highest"]


def set_matmul_precision(precision: str) -> None:
    """How CUDA devices compute float32 products, for the whole process: ``"highest"``
    (the default: float32 throughout) or ``"tf32"`` (inputs rounded to TF32's 10-bit
    mantissa on the tensor cores, float32 sums: several times faster for large products,
    about 1e-3 relative error; PyTorch's ``set_float32_matmul_precision("high")``).
    The CPU and sim always compute in float32 (NumPy has no TF32)."""
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(f"set_matmul_precision: {precision!r} is not a precision; expected one of "
                         f"{', '.join(map(repr, MATMUL_PRECISIONS))}.")
    _matmul_precision[0] = precision


def get_matmul_precision() -> str:
    """The precision set by ``set_matmul_precision`` (``"highest"`` unless set)."""
    return _matmul_precision[0]


class Backend:
    """Portable routines on ``self.xp``; subclasses provide the array module and transfers."""

    kind = "abstract"
    xp = None

    def __init__(self):
        self._aranges = {}
        self._philox = {}  # key -> Philox's device constants (see _philox_constants)

    # -- arrays and transfers (each subclass overrides these) ---------------------------
    def from_host(self, array):
        """Copy a NumPy array onto this device (counted as host->device)."""
        raise NotImplementedError

    def to_host(self, array):
        """Copy an array of this device to a NumPy array (counted as device->host)."""
        raise NotImplementedError

    def from_peer(self, array):
        """Copy an array from another device of the same kind onto this one (counted)."""
        raise NotImplementedError

    def upload(self, host, out):
        """Copy the NumPy array ``host`` into the device array ``out`` of its shape (counted
        as host->device): how a streamed batch enters the buffers a recorded step reads."""
        raise NotImplementedError

    overlaps_copies = False  # whether upload_async overlaps the device's work (then fit reads batches ahead)

    def upload_async(self, host, out, after=None):
        """Start copying the NumPy array ``host`` into the device array ``out``, once the
        event ``after`` (the step that last read ``out``) has passed; returns an event that
        marks the copy's end, for ``wait``. Where copies cannot overlap compute (the CPU)
        the copy is made at once and there are no events (None)."""
        self.upload(host, out)
        return None

    def wait(self, event):
        """Make the work queued next wait for ``event`` (None: nothing to wait for)."""

    def step_event(self):
        """An event after the work queued so far (None where work runs at once)."""
        return None

    def free_memory(self):
        """Bytes a new array may still take on this device, or None where that is the
        host's memory (cpu; sim unless given a limit)."""
        return None

    def synchronize(self):
        """Wait until all work queued on this device has finished."""

    scoped = False  # whether activate() matters: a device that has a "current device"

    def activate(self):
        """Context manager that makes this device current for array creation and kernels
        (CuPy's ``with cupy.cuda.Device(i)``); xpnet's layers, losses, optimizers and
        training loop run under their device's."""
        return contextlib.nullcontext()

    def __reduce__(self):
        """A backend is its device's: ``copy.deepcopy`` of a model (or unpickling one) gives
        back the device's one backend, not a second with its own caches and handles."""
        from . import get_backend
        return get_backend, (self.kind, getattr(self, "index", 0))

    def describe(self) -> dict:
        """Facts about this device for ``xpnet info`` (name, memory, versions)."""
        return {}

    def record(self, fn, owners=()):
        """The step ``fn`` as this device runs it best: a callable that, on a device that
        records (sim, CUDA), records fn's device work on its first call and replays it on
        every later one; on the CPU it is fn. The first call returns fn's result; a replay
        returns the same arrays, rewritten. ``owners`` (layers, losses) give up their
        reusable buffers before recording, so the recording owns every buffer it touches.
        """
        return _Recorded(self, fn, owners) if self.records else fn

    records = False  # whether record() records on this device

    def capture(self, fn):
        """Run ``fn()`` once and record it for replay; returns ``(result, replay)``.

        ``replay()`` redoes fn's device work in one launch and returns the arrays fn
        returned while being recorded, rewritten. It reruns no Python: inputs must be fed
        by writing into the buffers fn reads, and fn must not depend on host values that
        change between calls. ``replay`` is None where the backend cannot record (here:
        every backend but CUDA), and the caller runs fn itself each time.
        """
        return fn(), None

    def arange(self, n: int):
        """0..n-1 as a device int array, cached (used to pick one entry per row)."""
        a = self._aranges.get(n)
        if a is None:
            a = self._aranges[n] = self.xp.arange(n)
        return a

    def gather_rows(self, x, idx, out=None):
        """x[idx] along the first axis, into ``out`` when given (fit's batches)."""
        return self.xp.take(x, idx, axis=0, out=out)

    def scatter_add(self, target, key, values):
        """target[key] += values, where an index repeated in ``key`` adds every time
        (``target[key] += values`` would add once): the backward of advanced indexing."""
        self.xp.add.at(target, key, values)

    def matmul(self, a, b, out=None):
        """a @ b, into ``out`` when given: 2-D products, and stacks of them (convolution)."""
        if a.ndim == 2 and b.ndim == 2:
            return self.xp.dot(a, b, out=out)  # np.dot hands transposed views to BLAS as they are
        return self.xp.matmul(a, b, out=out)

    # -- activations (book ch. 3 and 5) ---------------------------------------------------
    def step(self, x):
        return (x > 0).astype(x.dtype)

    def sigmoid(self, x, out=None):
        # 1/(1+e) for x >= 0 and e/(1+e) for x < 0, with e = exp(-|x|) in (0, 1]: exp never
        # overflows, and a small sigmoid(x) keeps its relative precision (the tanh form
        # 0.5*(1+tanh(x/2)) rounds float32 sigmoid(-20) = 2.06e-9 to 0, so log(sigmoid) = -inf).
        xp = self.xp
        if x.dtype.kind not in "fc":  # integers and booleans: float64, as x * 0.5 gave before
            x = x.astype(numpy.float64)
        e = xp.empty_like(x)  # with out=, NumPy keeps a 0-d input an array (not a scalar)
        xp.abs(x, out=e)
        xp.negative(e, out=e)
        xp.exp(e, out=e)
        # 1 where x >= 0 (as e <= 1), else e: ten times faster than where() in NumPy. x >= 0 is
        # read before ``out`` (which may be x itself) is written.
        numerator = xp.maximum(e, x >= 0, out=xp.empty_like(e) if out is None else out)
        e += 1
        return xp.divide(numerator, e, out=numerator)

    def sigmoid_backward(self, dout, y):
        """Operator-only: dL/dx = dout * y * (1 - y), y = sigmoid(x)."""
        return dout * (1.0 - y) * y

    def tanh(self, x, out=None):
        return self.xp.tanh(x, out=out)

    def tanh_backward(self, dout, y):
        """Operator-only: dL/dx = dout * (1 - y^2), y = tanh(x)."""
        return dout * (1.0 - y * y)

    def relu(self, x, out=None):
        return self.xp.maximum(x, 0, out=out)

    def relu_backward(self, dout, y, out=None, mask=None):
        """Operator-only without ``out``: dout where the forward output y was positive.

        Multiplying by the mask is about 20x faster than ``dout[~mask] = 0`` in NumPy.
        ``mask`` is an optional boolean buffer to build the mask in.
        """
        mask = self.xp.greater(y, 0, out=mask)
        if out is None:
            return dout * mask
        return self.xp.multiply(dout, mask, out=out)

    def leaky_relu(self, x, slope, out=None):
        """x where x > 0, slope * x elsewhere (PyTorch's definition, for any real slope).

        For slope <= 1 that is max(x, slope*x), for slope >= 1 min(x, slope*x): one
        elementwise op after the product, and exact either way.
        """
        xp = self.xp
        scaled = xp.multiply(x, slope)
        return (xp.maximum if slope <= 1 else xp.minimum)(x, scaled, out=out)

    def leaky_relu_backward(self, dout, x, slope):
        """Operator-only in dout: dout * (1 where x > 0 else slope)."""
        scale = self.xp.where(x > 0, 1.0, slope).astype(x.dtype)
        return dout * scale

    def softmax(self, x, axis=-1, out=None):
        # Subtracting the row maximum keeps exp from overflowing; the result is unchanged.
        xp = self.xp
        out = xp.subtract(x, x.max(axis=axis, keepdims=True), out=out)
        xp.exp(out, out=out)
        out /= out.sum(axis=axis, keepdims=True)
        return out

    def softmax_backward(self, dout, y, axis=-1):
        """Operator-only: J^T dout for y = softmax(x) is y * (dout - sum(dout * y))."""
        return y * (dout - (dout * y).sum(axis=axis, keepdims=True))

    # -- losses (book ch. 4 and 5) --------------------------------------------------------
    def softmax_cross_entropy(self, z, t, out=None, bad=None):
        """Mean cross-entropy of softmax(z) against labels t; returns (loss, softmax(z)).

        ``t`` is either class indices, shape (N,), or one-hot / soft labels, shape (N, C)
        (a row's loss is weighted by its sum: a zero row masks its sample, a multi-hot row
        counts each class). Computed as log-sum-exp of the shifted logits, so neither exp
        overflows nor log meets zero (the book's ``log(y + 1e-7)`` caps the loss instead).
        ``out`` receives softmax(z) and may be ``z`` itself. ``bad`` (optional, boolean (N,)
        on the device) marks samples whose labels are out of range: the loss and their
        softmax rows (hence their gradient) become NaN, the device's way of refusing them
        without a read on the host; their entries of ``t`` must still be valid indices.
        """
        xp = self.xp
        n = z.shape[0]
        shifted = xp.subtract(z, z.max(axis=1, keepdims=True), out=out)
        if t.ndim == 1:
            picked = shifted[self.arange(n), t]
        else:  # sum_j t_j (lse - z_j) = lse * sum_j t_j - sum_j t_j z_j, for soft labels too
            picked = (shifted * t).sum(axis=1)
        p = xp.exp(shifted, out=shifted)
        total = p.sum(axis=1, keepdims=True)
        lse = xp.log(total[:, 0])
        if t.ndim != 1:
            lse *= t.sum(axis=1)
        lse -= picked
        if bad is not None:
            xp.copyto(lse, math.nan, where=bad)
        loss = lse.sum() * (1.0 / n)  # .mean() costs ~6 us more in NumPy
        p /= total
        if bad is not None:
            xp.copyto(p, math.nan, where=bad[:, None])
        return loss, p

    def softmax_cross_entropy_backward(self, p, t, dout=1.0, out=None):
        """dL/dz = (softmax(z) * sum_j t_j - t) * dout / N for the mean loss above; for
        class indices and one-hot rows (sum 1) that is (softmax(z) - onehot(t)) * dout / N."""
        xp = self.xp
        n = p.shape[0]
        if out is None:
            out = p.copy()
        elif out is not p:
            xp.copyto(out, p)
        if t.ndim == 1:
            out[self.arange(n), t] -= 1
        else:
            out *= t.sum(axis=1, keepdims=True)
            out -= t
        out *= dout / n
        return out

    def cross_entropy_error(self, y, t):
        """The book's loss on probabilities y (not logits): -sum(t log(y + 1e-7)) / N."""
        xp = self.xp
        if y.ndim == 1:
            y = y.reshape(1, -1)
            t = t.reshape(1, -1) if t.ndim == 1 and t.size == y.size else t.reshape(-1)
        n = y.shape[0]
        if t.size == y.size:  # one-hot or soft labels: the book's sum, not the argmax's pick
            return -(t * xp.log(y + 1e-7)).sum() / n
        return -xp.log(y[self.arange(n), t] + 1e-7).sum() / n

    def mean_squared_error(self, y, t):
        d = y - t
        return (d * d).mean()

    def mean_squared_error_backward(self, dout, y, t):
        """Operator-only in dout: d/dy mean((y - t)^2) = 2 (y - t) / size."""
        return dout * ((y - t) * (2.0 / y.size))

    def sum_squared_error(self, y, t):
        """The book's 0.5 * sum((y - t)^2)."""
        d = y - t
        return 0.5 * (d * d).sum()

    def sum_squared_error_backward(self, dout, y, t):
        """Operator-only in dout."""
        return dout * (y - t)

    # -- affine (book ch. 5) --------------------------------------------------------------
    def affine(self, x, W, b, out=None):
        y = self.matmul(x, W, out=out)
        y += b
        return y

    def affine_backward(self, dout, x, W, dW, db, dx=None, need_dx=True):
        """Writes dW and db in place; returns dx (into ``dx`` when given) or None."""
        self.matmul(x.T, dout, out=dW)
        dout.sum(axis=0, out=db)
        if need_dx:
            return self.matmul(dout, W.T, out=dx)
        return None

    # -- regularisation (book ch. 6) ------------------------------------------------------
    def philox4x32(self, counter, key):
        """Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
        SC 2011): four 32-bit words from each counter under ``key``.

        ``counter`` is a (4, n) uint64 array holding 32-bit words (one counter per column),
        overwritten with the result; ``key`` is two Python ints. Element-wise integer
        arithmetic only, so every backend computes the same bits (a 32x32-bit product fits
        in uint64).
        """
        state = self.xp.empty_like(counter)  # the rounds' layout: rows c0, c2, c1, c3
        state[:2], state[2:] = counter[0::2], counter[1::2]
        self._philox_rounds(state, key)
        counter[0::2], counter[1::2] = state[:2], state[2:]
        return counter

    def _philox_rounds(self, state, key):
        """The ten rounds in place on ``state``, (4, n) uint64 with rows (c0, c2, c1, c3):
        then a round is five operations on (2, n) halves, whatever n is (the GPU launches
        and the CPU's per-call costs are per operation). Each round computes
        (c0, c2) = (hi(M1 c2) ^ c1 ^ k0, hi(M0 c0) ^ c3 ^ k1), (c1, c3) = (lo(M1 c2), lo(M0 c0))."""
        xp = self.xp
        a, b = state[:2], state[2:]
        prod = xp.empty_like(a)
        multipliers, round_keys = self._philox_constants(key)
        for r in range(10):
            xp.multiply(a[::-1], multipliers, out=prod)  # (M1 c2, M0 c0): 64-bit products
            xp.right_shift(prod, 32, out=a)
            a ^= b
            a ^= round_keys[r]
            xp.bitwise_and(prod, _MASK32, out=b)
        return state

    def _philox_constants(self, key):
        """The multipliers (M1, M0) and the ten round keys for ``key`` as device columns,
        filled once per key (fills from Python values: no copy from the host)."""
        constants = self._philox.get(key)
        if constants is None:
            xp = self.xp
            multipliers = xp.empty((2, 1), dtype=xp.uint64)
            multipliers[0], multipliers[1] = _PHILOX_M[1], _PHILOX_M[0]
            round_keys = xp.empty((10, 2, 1), dtype=xp.uint64)
            for r in range(10):  # the key schedule: the Weyl constants added before every round but the first
                for i in (0, 1):
                    round_keys[r, i] = (key[i] + r * _PHILOX_W[i]) & _MASK32
            constants = self._philox[key] = (multipliers, round_keys)
        return constants

    def dropout_mask(self, key, offset, shape, p, dtype, out=None):
        """Inverted dropout's mask: keep with probability 1-p, kept units scaled by 1/(1-p).

        The mask takes blocks = ceil(size / 4) counters of Philox4x32-10 under ``key``,
        ``offset``, ``offset`` + 1, ...; unit i takes word (c0, c2, c1, c3)[i // blocks] of
        counter ``offset`` + i % blocks (the order the rounds keep the words in), and is
        kept when the word's top 24 bits, read as a uniform in [0, 1), are >= p. The 0-d
        uint64 ``offset`` lives on the device and is advanced here, so a recorded step
        draws a fresh mask on every replay, and one seed gives the same mask on every device.
        """
        out = self._dropout_mask(key, offset, shape, p, dtype, out)
        offset += _philox_blocks(shape)
        return out

    def _dropout_mask(self, key, offset, shape, p, dtype, out):
        """The mask from the counters at ``offset`` (left as it is): element-wise integer
        work, one kernel on CUDA (CupyBackend) and counted as one on sim."""
        xp = self.xp
        size = int(numpy.prod(shape))
        blocks = _philox_blocks(shape)
        state = xp.zeros((4, blocks), dtype=xp.uint64)  # counter offset + j: low word c0, high word c1
        xp.add(self._counting(blocks), offset, out=state[0])
        xp.right_shift(state[0], 32, out=state[2])
        state[0] &= _MASK32
        words = self._philox_rounds(state, key).reshape(-1)[:size].reshape(shape)
        keep = xp.greater_equal(words, _keep_threshold(p))
        return xp.multiply(keep, 1.0 / (1.0 - p), out=out, dtype=dtype)

    def _counting(self, n):
        """0, 1, ..., n-1 as a device uint64 array, cached."""
        a = self._aranges.get(("u8", n))
        if a is None:
            a = self._aranges[("u8", n)] = self.arange(n).astype(self.xp.uint64)
        return a

    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps, training):
        """x: (N, D). Updates the running statistics in place when training.

        Returns (y, xn, std), xn and std being what backward needs. In eval mode the
        running statistics stand in for the batch's.
        """
        xp = self.xp
        if not training:
            std = xp.sqrt(running_var + eps)
            xn = (x - running_mean) / std
            return gamma * xn + beta, xn, std
        mu = x.mean(axis=0)
        xn = x - mu
        var = xp.square(xn).mean(axis=0)
        std = xp.sqrt(var + eps)
        xn /= std
        running_mean *= momentum
        running_mean += (1 - momentum) * mu
        running_var *= momentum
        running_var += (1 - momentum) * var
        y = xn * gamma
        y += beta
        return y, xn, std

    def batchnorm_backward(self, dout, gamma, xn, std, dgamma, dbeta, training=True):
        """Writes dgamma, dbeta in place; returns dx.

        After a training forward the book's chain of steps collapses to
        dx = gamma / std * (dout - mean(dout) - xn * mean(dout * xn)), and those two means
        are dbeta / N and dgamma / N, already at hand. After an eval forward the statistics
        are constants, and dx = dout * gamma / std.
        """
        n = dout.shape[0]
        dout.sum(axis=0, out=dbeta)
        dx = xn * dout
        dx.sum(axis=0, out=dgamma)
        if not training:
            return self.xp.multiply(dout, gamma / std, out=dx)
        self.xp.multiply(xn, dgamma / n, out=dx)
        self.xp.subtract(dout, dx, out=dx)
        dx -= dbeta / n
        dx *= gamma / std
        return dx

    # -- convolution and pooling (book ch. 7) ---------------------------------------------
    # Every routine here loops over the kernel's rows or offsets, or the pooling window's
    # places (strided views of the whole batch), never over pixels, so the Python overhead
    # is the same for any image size. ``stride`` and ``pad`` are (height, width) pairs.

    @staticmethod
    def _window_slices(kh, kw, stride, oh, ow):
        """For each window offset (i, j), row-major: the slices of the padded image it meets."""
        (sh, sw) = stride
        return [(Ellipsis, slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))
                for i in range(kh) for j in range(kw)]

    def _padded(self, x, pad, fill):
        (ph, pw) = pad
        if not (ph or pw):
            return x
        return self.xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)

    def im2col(self, x, kh, kw, stride, pad, out=None, group=(1, 1)):
        """(N, C, H, W) -> (C*kh*kw, N*OH*OW): row (c, i, j) holds input pixel (i, j) of
        channel c's window for every output pixel of the whole batch.

        The batch is folded into the columns, so a convolution is one 2-D product
        W (F, C*kh*kw) @ col for the whole batch: one large BLAS call on the CPU and one
        gemm a CUDA graph can record, instead of N small ones. With ``group`` (gh, gw) the
        columns are taken in gh x gw blocks of output pixels, and the result holds one
        contiguous (C*kh*kw, N*OH*OW / (gh*gw)) matrix for each place in the block, place
        by place (see ``conv2d_maxpool``); each is ordered (N, OH/gh, OW/gw). One strided
        copy per kernel row.
        """
        n, c = x.shape[:2]
        oh, ow = self._conv_geometry(x.shape, kh, kw, stride, pad)
        if out is None:
            out = self.xp.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
        rows = out.reshape(group + (c, kh, kw, n, oh // group[0], ow // group[1]))
        for i, window in enumerate(self._kernel_windows(self._padded(x, pad, 0), kh, kw, stride, oh, ow, group)):
            rows[:, :, :, i] = window.transpose(2, 3, 0, 1, 4, 5, 6)
        return out

    def col2im(self, col, x_shape, kh, kw, stride, pad):
        """Adjoint of im2col: adds each row of ``col`` back onto the image it came from, one
        kernel offset at a time (the windows of one offset never overlap)."""
        n, c, h, w = x_shape
        (ph, pw) = pad
        oh, ow = self._conv_geometry(x_shape, kh, kw, stride, pad)
        col = col.reshape(c, kh, kw, n, oh, ow)
        img = self.xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype)
        for i, window in enumerate(self._kernel_windows(img, kh, kw, stride, oh, ow, (1, 1))):
            for j in range(kw):
                window[:, j, 0, 0] += col[:, i, j]
        return img[:, :, ph:ph + h, pw:pw + w]

    def _kernel_windows(self, img, kh, kw, stride, oh, ow, group):
        """For each kernel row i, a strided view (C, kw, gh, gw, N, OH/gh, OW/gw) of the
        padded image ``img`` (N, C, H, W): [c, j, a, b, n, p, q] is the pixel that kernel
        offset (i, j) of channel c meets for output pixel (a + gh*p, b + gw*q) of image n."""
        (sh, sw), (gh, gw) = stride, group
        sn, sc, sy, sx = img.strides
        shape = (img.shape[1], kw, gh, gw, img.shape[0], oh // gh, ow // gw)
        strides = (sc, sx, sh * sy, sw * sx, sn, gh * sh * sy, gw * sw * sx)
        as_strided = self.xp.lib.stride_tricks.as_strided
        return [as_strided(img[:, :, i:], shape=shape, strides=strides) for i in range(kh)]

    @staticmethod
    def _conv_geometry(x_shape, kh, kw, stride, pad):
        (sh, sw), (ph, pw) = stride, pad
        return (x_shape[2] + 2 * ph - kh) // sh + 1, (x_shape[3] + 2 * pw - kw) // sw + 1

    def conv2d(self, x, W, b, stride, pad, scratch=None, out=None):
        """Convolution by im2col and one product; returns (y, col), col kept for backward.

        The product W (F, K) @ col gives (F, N*OH*OW); adding the bias copies it into
        y (N, F, OH, OW), C-contiguous, in the same pass (``b`` None: no bias). With
        stride 1 the columns run over the padded width (``_im2col_wide``) and the extra
        ones are dropped here. ``scratch(name, shape, dtype)`` gives reusable buffers
        (None, or a None from it: a new array).
        """
        n = x.shape[0]
        f, c, kh, kw = W.shape
        oh, ow = self._conv_geometry(x.shape, kh, kw, stride, pad)
        wide = stride == (1, 1)
        width = x.shape[3] + 2 * pad[1] if wide else ow
        col = self._scratch(scratch, "col", (c * kh * kw, n * oh * width), x.dtype)
        col = self._im2col_wide(x, kh, kw, pad, col) if wide else self.im2col(x, kh, kw, stride, pad, out=col)
        prod = self.matmul(W.reshape(f, -1), col, out=self._scratch(scratch, "prod", (f, n * oh * width), x.dtype))
        if out is None:
            out = self.xp.empty((n, f, oh, ow), dtype=prod.dtype)
        nchw = prod.reshape(f, n, oh, width)[:, :, :, :ow].transpose(1, 0, 2, 3)
        if b is None:
            out[...] = nchw
        else:
            self.xp.add(nchw, b.reshape(1, f, 1, 1), out=out)
        return out, col

    def _im2col_wide(self, x, kh, kw, pad, out):
        """im2col for stride 1 with the columns running over the padded width Wp instead of
        the output's OW: (C*kh*kw, N*OH*Wp), the last Wp - OW columns of each output row
        being windows that wrap into the next row, which the product computes and conv2d
        drops. In exchange, row (c, i, j) of an image is one contiguous run of the padded
        channel from offset i*Wp + j, so the whole gather is one copy with runs of OH*Wp
        values instead of OW: on the CPU 1.7-1.9x faster than ``im2col`` for 32 channels of
        14x14 or 64 of 8x8, and the same for 16 of 28x28, where writing 45 MB is the cost.
        """
        n, c, h, w = x.shape
        (ph, pw) = pad
        hp, wp = h + 2 * ph, w + 2 * pw
        oh = hp - kh + 1
        plane = hp * wp + kw - 1  # each padded channel, flat, with room for the last row's overhang
        img = self.xp.zeros((n, c, plane), dtype=x.dtype)
        sn, sc, item = img.strides
        as_strided = self.xp.lib.stride_tricks.as_strided  # views for certain (a reshape may copy)
        as_strided(img[:, :, ph * wp + pw:], shape=x.shape, strides=(sn, sc, wp * item, item))[...] = x
        rows = as_strided(img, shape=(c, kh, kw, n, oh * wp), strides=(sc, wp * item, item, sn, item))
        out.reshape(c, kh, kw, n, oh * wp)[...] = rows
        return out

    def _scratch(self, scratch, name, shape, dtype):
        """``scratch(name, shape, dtype)``'s buffer, or a new array where it gives none."""
        buf = scratch(name, shape, dtype) if scratch is not None else None
        return self.xp.empty(shape, dtype=dtype) if buf is None else buf

    def conv2d_backward(self, dout, col, W, x_shape, stride, pad, dW, db, need_dx=True, scratch=None):
        """Writes dW and db in place; returns dx, or None when ``need_dx`` is False.
        ``col`` is what conv2d returned; ``scratch`` as for conv2d."""
        n, f, oh, ow = dout.shape
        width = col.shape[1] // (n * oh)  # the padded width where conv2d's columns ran over it
        work = self._scratch(scratch, "prod", (f, col.shape[1]), dout.dtype)
        d4 = work.reshape(f, n, oh, width)
        d4[:, :, :, :ow] = dout.transpose(1, 0, 2, 3)
        if width > ow:
            d4[:, :, :, ow:] = 0  # the wrapped windows take no part in dW
        self.matmul(work, col.T, out=dW.reshape(f, -1))
        work.sum(axis=1, out=db)
        if not need_dx:
            return None
        return self._input_grad(dout, W, x_shape, stride, pad, product=work if width == ow else None,
                                scratch=scratch)

    def _input_grad(self, dy, W, x_shape, stride, pad, product=None, scratch=None):
        """dL/dx of a convolution from dL/dy (N, F, OH, OW) (``product``: the same in the
        product's (F, N*OH*OW) layout, if at hand).

        With stride 1 it is itself a convolution, one of dy, padded by kernel - 1 - pad,
        with W flipped and its two channel axes swapped: im2col and one product, like the
        forward pass, instead of W^T @ dy and col2im's kh*kw read-modify-write passes over
        the whole image (the book's DeepConvNet step 1.27-1.48x faster on the CPU). Other
        strides take that second way.
        """
        f, c, kh, kw = W.shape
        (ph, pw) = pad
        if stride == (1, 1) and ph < kh and pw < kw:
            flipped = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
            inner = None if scratch is None else (lambda name, shape, dtype: scratch("dx_" + name, shape, dtype))
            return self.conv2d(dy, flipped, None, (1, 1), (kh - 1 - ph, kw - 1 - pw), scratch=inner)[0]
        if product is None:
            product = self.xp.empty((f, dy.size // f), dtype=dy.dtype)
            product.reshape(f, dy.shape[0], dy.shape[2], dy.shape[3])[...] = dy.transpose(1, 0, 2, 3)
        return self.col2im(self.matmul(W.reshape(f, -1).T, product), x_shape, kh, kw, stride, pad)

    def conv2d_maxpool(self, x, W, b, stride, pad, size, relu, scratch=None, out=None):
        """Conv2D, ReLU when ``relu``, then max pooling over ``size`` windows that tile the
        convolution's output (stride = size, no pad, size divides it): the book's conv
        block in one pass. Returns y (N, F, OH/gh, OW/gw) and what backward needs.

        im2col lays the columns out place by place in the pooling window (``group``), so
        the product for one place (k) of every window is W @ col[k], an (F, M) array that
        stays in cache: pooling is a running maximum over the gh*gw places, noting in
        ``first`` the place of each window's first maximum (what backward routes by), and
        the full-size product is never stored. Max commutes with adding the channel's bias
        and with ReLU (both monotone, and rounding is monotone too), so those run after
        pooling on a gh*gw times smaller array, exactly as if run before it.
        ``scratch(name, shape, dtype)`` gives a buffer (default: a new array).
        """
        xp, scratch = self.xp, functools.partial(self._scratch, scratch)
        n = x.shape[0]
        f, c, kh, kw = W.shape
        oh, ow = self._conv_geometry(x.shape, kh, kw, stride, pad)
        qh, qw = oh // size[0], ow // size[1]
        m, places = n * qh * qw, size[0] * size[1]
        col = self.im2col(x, kh, kw, stride, pad, out=scratch("col", (c * kh * kw, n * oh * ow), x.dtype),
                          group=size)
        blocks, W2 = col.reshape(places, -1, m), W.reshape(f, -1)
        places_type = xp.uint8 if places <= 256 else xp.int32
        pooled, first = scratch("pooled", (f, m), x.dtype), scratch("first", (f, m), places_type)
        self.matmul(W2, blocks[0], out=pooled)
        first[...] = 0
        if places > 1:
            place, better = scratch("place", (f, m), x.dtype), scratch("better", (f, m), bool)
            marks = scratch("marks", (f, m), places_type)
        for k in range(1, places):
            self.matmul(W2, blocks[k], out=place)
            xp.greater(place, pooled, out=better)  # strictly: a tie keeps the earlier place
            xp.maximum(pooled, place, out=pooled)
            xp.multiply(better, k, out=marks, dtype=places_type)  # k where place k leads so far:
            xp.maximum(first, marks, out=first)                # later places have larger k
        if out is None:
            out = xp.empty((n, f, qh, qw), dtype=x.dtype)
        xp.add(pooled.reshape(f, n, qh, qw).transpose(1, 0, 2, 3), b.reshape(1, f, 1, 1), out=out)
        if relu:
            xp.maximum(out, 0, out=out)
        return out, (col, first)

    def conv2d_maxpool_backward(self, dout, y, saved, x_shape, W, stride, pad, size, relu, dW, db,
                                need_dx=True, scratch=None):
        """Backward of ``conv2d_maxpool`` (``saved`` is what it returned besides y): writes
        dW and db; returns dx, or None when ``need_dx`` is False. Each window's gradient,
        through ReLU's mask, goes to its first maximum in row-major window order, as
        MaxPool2D's does; dW sums one product per place, so no full-size gradient of the
        product is stored unless dx is needed (``_input_grad``)."""
        xp, buffers = self.xp, scratch
        scratch = functools.partial(self._scratch, buffers)
        n, f, qh, qw = dout.shape
        m, places = n * qh * qw, size[0] * size[1]
        col, first = saved
        blocks, dW2 = col.reshape(places, -1, m), dW.reshape(f, -1)
        d = scratch("d", (f, m), dout.dtype)  # dout in the product's layout, through ReLU
        d_nchw = d.reshape(f, n, qh, qw).transpose(1, 0, 2, 3)
        if relu:
            xp.multiply(dout, xp.greater(y, 0, out=scratch("positive", y.shape, bool)), out=d_nchw)
        else:
            d_nchw[...] = dout
        d.sum(axis=1, out=db)
        # dL/dy in NCHW, for dx: each window's gradient at its first maximum, zero elsewhere
        dy = xp.empty((n, f, qh * size[0], qw * size[1]), dtype=dout.dtype) if need_dx else None
        hit, dk = scratch("hit", (f, m), bool), scratch("dk", (f, m), dout.dtype)
        for k in range(places):
            xp.equal(first, k, out=hit)
            xp.multiply(d, hit, out=dk)
            if k == 0:
                self.matmul(dk, blocks[k].T, out=dW2)
            else:
                dW2 += self.matmul(dk, blocks[k].T)
            if need_dx:
                a, b = divmod(k, size[1])
                dy[:, :, a::size[0], b::size[1]] = dk.reshape(f, n, qh, qw).transpose(1, 0, 2, 3)
        if not need_dx:
            return None
        return self._input_grad(dy, W, x_shape, stride, pad, scratch=buffers)

    def max_pool(self, x, size, stride, pad, out=None):
        """Max over each window, as a running maximum of kh*kw strided slices (no im2col
        copy). The border is padded with -inf, so a window's max is one of its inputs."""
        xp = self.xp
        oh, ow = self._conv_geometry(x.shape, *size, stride, pad)
        img = self._padded(x, pad, -xp.inf)
        windows = self._window_slices(*size, stride, oh, ow)
        first = img[windows[0]]
        if out is None:
            out = xp.empty(first.shape, dtype=x.dtype)
        if len(windows) == 1:
            out[...] = first
        else:
            xp.maximum(first, img[windows[1]], out=out)
        for window in windows[2:]:
            xp.maximum(out, img[window], out=out)
        return out

    def max_pool_backward(self, dout, x, y, size, stride, pad):
        """Routes each window's gradient to its first maximum (in row-major window order,
        as the book's argmax does), found again by comparing each slice with the output."""
        xp = self.xp
        oh, ow = y.shape[2], y.shape[3]
        img = self._padded(x, pad, -xp.inf)
        windows = self._window_slices(*size, stride, oh, ow)
        overlap = stride[0] < size[0] or stride[1] < size[1]
        covered = not overlap and not (pad[0] or pad[1]) and \
            img.shape[2] == oh * size[0] and img.shape[3] == ow * size[1]
        dimg = xp.empty_like(img) if covered else xp.zeros_like(img)
        hit = xp.empty(y.shape, dtype=bool)
        free = xp.ones(y.shape, dtype=bool)  # windows whose maximum is not yet found
        for k, window in enumerate(windows):
            xp.equal(img[window], y, out=hit)
            hit &= free
            if overlap:
                dimg[window] += dout * hit
            else:
                xp.multiply(dout, hit, out=dimg[window])
            if k + 1 < len(windows):
                xp.greater(free, hit, out=free)  # free and not hit
        ph, pw = pad
        return dimg[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]] if ph or pw else dimg

    def avg_pool(self, x, size, stride, pad, out=None):
        """Mean over each window; zero padding counts in the mean (PyTorch's default)."""
        xp = self.xp
        oh, ow = self._conv_geometry(x.shape, *size, stride, pad)
        img = self._padded(x, pad, 0)
        windows = self._window_slices(*size, stride, oh, ow)
        first = img[windows[0]]
        if out is None:
            out = xp.empty(first.shape, dtype=x.dtype)
        out[...] = first
        for window in windows[1:]:
            out += img[window]
        out *= 1.0 / len(windows)
        return out

    def avg_pool_backward(self, dout, x_shape, size, stride, pad):
        xp = self.xp
        n, c, h, w = x_shape
        ph, pw = pad
        oh, ow = dout.shape[2], dout.shape[3]
        dimg = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dout.dtype)
        share = dout * (1.0 / (size[0] * size[1]))
        for window in self._window_slices(*size, stride, oh, ow):
            dimg[window] += share
        return dimg[:, :, ph:ph + h, pw:pw + w]

    # -- optimizer updates, in place (book ch. 6) -----------------------------------------
    def sgd_update(self, p, g, lr, scratch):
        p -= self.xp.multiply(g, lr, out=scratch)

    def momentum_update(self, p, g, v, lr, momentum, scratch):
        v *= momentum
        v -= self.xp.multiply(g, lr, out=scratch)
        p += v

    def adagrad_update(self, p, g, h, lr, eps, scratch):
        h += self.xp.multiply(g, g, out=scratch)
        self._rms_step(p, g, h, lr, eps, scratch)

    def rmsprop_update(self, p, g, h, lr, decay, eps, scratch):
        h *= decay
        self.xp.multiply(g, g, out=scratch)
        scratch *= 1 - decay
        h += scratch
        self._rms_step(p, g, h, lr, eps, scratch)

    def adam_rate(self, lr, t, beta1, beta2, out, work):
        """lr * sqrt(1 - beta2^t) / (1 - beta1^t) into the 0-d ``out``, from the 0-d device
        arrays ``lr`` and ``t`` (the step count): the book's bias-corrected rate, computed
        on the device so that a recorded step needs no value from the host. ``work`` is a
        pair of 0-d float64 buffers (the corrections need the precision)."""
        xp = self.xp
        corr1, corr2 = work
        xp.power(beta2, t, out=corr2)
        xp.subtract(1.0, corr2, out=corr2)
        xp.sqrt(corr2, out=corr2)
        xp.power(beta1, t, out=corr1)
        xp.subtract(1.0, corr1, out=corr1)
        xp.divide(corr2, corr1, out=corr2)
        return xp.multiply(lr, corr2, out=out, casting="same_kind")

    def adam_update(self, p, g, m, v, lr_t, beta1, beta2, eps, scratch):
        """The book's Adam: m, v moments; lr_t already carries the bias correction."""
        xp = self.xp
        xp.subtract(g, m, out=scratch)
        scratch *= 1 - beta1
        m += scratch
        xp.multiply(g, g, out=scratch)
        scratch -= v
        scratch *= 1 - beta2
        v += scratch
        self._rms_step(p, m, v, lr_t, eps, scratch)

    def _rms_step(self, p, step, sq, lr, eps, scratch):
        """p -= lr * step / (sqrt(sq) + eps): the update AdaGrad, RMSProp and Adam share."""
        xp = self.xp
        xp.sqrt(sq, out=scratch)
        scratch += eps
        xp.divide(step, scratch, out=scratch)
        scratch *= lr
        p -= scratch


class _Recorded:
    """A step recorded on its first call and replayed after (see ``Backend.record``)."""

    def __init__(self, backend, fn, owners):
        self.backend, self.fn, self.owners = backend, fn, owners
        self.replay = None
        self.recorded = False

    def __call__(self):
        with self.backend.activate():  # the step's device, whatever is current
            if self.replay is not None:
                return self.replay()
            if self.recorded:  # the backend could not record it: run it kernel by kernel
                return self.fn()
            for owner in self.owners:
                owner._drop_work()
            self.recorded = True
            result, self.replay = self.backend.capture(self.fn)
            return result
