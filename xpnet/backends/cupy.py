"""The CUDA backend. This module imports CuPy; nothing imports this module until a CUDA
device is first used, so ``import xpnet`` never loads CuPy or touches the driver.

Three things here go past the portable routines in routines/:

- ``matmul`` calls cuBLAS's gemm itself for 2-D float32/float64 products, through
  ctypes on the libcublas CuPy loaded, with a handle of its own. CuPy's cuBLAS bindings refuse every call while a
  stream is being captured into a CUDA graph; cuBLAS itself supports capture, so calling
  it directly is what lets a training step be recorded.
- ``capture`` records a function's device work as a CUDA graph and replays it with one
  launch. CuPy spends host time on every kernel launch, so a small network's step (about
  50 kernels) is bound by launches, not by the GPU (docs/recording.md has the figures).
  Every block of memory the recorded work touches is kept alive by the replay,
  so nothing a replay writes can land in memory handed out since.
- Adam's update and bias-corrected rate and Dropout's mask run as one kernel each
  (``_kernels``), where the portable routines take 12, 7 and about 56 element-wise
  operations (each a launch, and each a pass over memory). They compute what the portable
  routines compute: the mask bit for bit, Adam in the same order of float operations
  with no fused multiply-adds. sim counts each as one kernel too.
"""
from __future__ import annotations

import ctypes
import warnings

import cupy
import cupyx
import numpy

from .base import TRANSFERS, Backend, get_matmul_precision
from .routines.random import _MASK32, _PHILOX_M, _PHILOX_W, _keep_threshold, _philox_blocks

_OP_N, _OP_T = 0, 1                # cublasOperation_t
_MATH = {"highest": 0, "tf32": 3}  # cublasMath_t: CUBLAS_DEFAULT_MATH, CUBLAS_TF32_TENSOR_OP_MATH
_RELAXED = getattr(cupy.cuda.runtime, "streamCaptureModeRelaxed", 2)


class _Blas:
    """gemm through ctypes, on a handle of our own (so the library and the handle always
    belong together, whichever copy of libcublas this process has loaded)."""

    def __init__(self, lib):
        ptr, i = ctypes.c_void_p, ctypes.c_int
        gemm_args = [ptr, i, i, i, i, i, ptr, ptr, i, ptr, i, ptr, ptr, i]
        self.gemm = {}      # dtype -> (function, address of 1, address of 0)
        self._scalars = []  # alpha and beta, passed by address, so kept alive here
        for dtype, name in ((numpy.float32, "cublasSgemm_v2"), (numpy.float64, "cublasDgemm_v2")):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = gemm_args, i
            one, zero = numpy.ones((), dtype), numpy.zeros((), dtype)
            self._scalars += [one, zero]
            self.gemm[numpy.dtype(dtype)] = (fn, one.ctypes.data, zero.ctypes.data)
        self.set_stream = lib.cublasSetStream_v2
        self.set_stream.argtypes, self.set_stream.restype = [ptr, ptr], i
        self.set_math_mode = lib.cublasSetMathMode
        self.set_math_mode.argtypes, self.set_math_mode.restype = [ptr, i], i
        self._create = lib.cublasCreate_v2
        self._create.argtypes, self._create.restype = [ctypes.POINTER(ptr)], i

    def create_handle(self):
        """A handle on the current device (host pointer mode, the default)."""
        handle = ctypes.c_void_p()
        _check(self._create(ctypes.byref(handle)), "create")
        return handle.value

    @staticmethod
    def find():
        """None where no libcublas is found in this process's memory map (not Linux)."""
        cupy.cuda.device.get_cublas_handle()  # makes CuPy load its libcublas
        try:
            with open("/proc/self/maps") as maps:  # address perms offset dev inode [path]
                paths = {fields[5].strip() for fields in (line.split(None, 5) for line in maps)
                         if len(fields) == 6}
        except OSError:
            return None
        major = cupy.cuda.runtime.runtimeGetVersion() // 1000
        found = sorted((f"/libcublas.so.{major}" not in path, path) for path in paths if "/libcublas.so" in path)
        return _Blas(ctypes.CDLL(found[0][1])) if found else None  # CuPy's CUDA major first


def _check(status, what):
    if status:
        raise RuntimeError(f"cuBLAS {what} failed with status {status}.")


def _gemm_layout(m):
    """(op, leading dimension) under which cuBLAS (column-major) sees the transpose of
    the row-major matrix ``m``, or None when ``m`` is neither C- nor F-contiguous."""
    if m.flags.c_contiguous:
        return _OP_N, m.shape[1]
    if m.flags.f_contiguous:  # a transposed view, such as x.T
        return _OP_T, m.shape[0]
    return None


def _kernels():
    """The fused kernels, compiled by CuPy on first use (and cached on disk)."""
    no_fma = ("--fmad=false",)  # each product and sum rounded as NumPy rounds it
    philox_round = f"""
        unsigned long long p0 = {_PHILOX_M[0]}ull * c0, p1 = {_PHILOX_M[1]}ull * c2;
        unsigned int n0 = (unsigned int)(p1 >> 32) ^ c1 ^ k0, n2 = (unsigned int)(p0 >> 32) ^ c3 ^ k1;
        c1 = (unsigned int)p1; c3 = (unsigned int)p0; c0 = n0; c2 = n2;
        k0 += {_PHILOX_W[0]}u; k1 += {_PHILOX_W[1]}u;"""
    return {
        # routines/random.py's _dropout_mask: unit i reads word i / blocks, in the order
        # (c0, c2, c1, c3), of Philox4x32-10 on counter offset + i % blocks.
        "dropout_mask": cupy.ElementwiseKernel(
            "uint64 offset, uint64 blocks, uint32 key0, uint32 key1, uint64 threshold, T scale", "T mask",
            f"""
            unsigned long long counter = offset + (unsigned long long)i % blocks;
            unsigned int c0 = (unsigned int)counter, c1 = (unsigned int)(counter >> 32), c2 = 0, c3 = 0;
            unsigned int k0 = key0, k1 = key1;
            for (int r = 0; r < 10; r++) {{{philox_round}
            }}
            unsigned long long w = (unsigned long long)i / blocks;
            unsigned int word = w == 0 ? c0 : w == 1 ? c2 : w == 2 ? c1 : c3;
            mask = (unsigned long long)word >= threshold ? scale : (T)0;""",
            "xpnet_dropout_mask"),
        # routines/updates.py adam_rate: lr * sqrt(1 - beta2^t) / (1 - beta1^t), in float64.
        "adam_rate": cupy.ElementwiseKernel(
            "T lr, int64 t, float64 beta1, float64 beta2", "T out",
            "out = (T)((double)lr * (sqrt(1.0 - pow(beta2, (double)t)) / (1.0 - pow(beta1, (double)t))));",
            "xpnet_adam_rate"),
        # routines/updates.py adam_update, operation for operation.
        "adam_update": cupy.ElementwiseKernel(
            "T g, T lr_t, T keep1, T keep2, T eps", "T p, T m, T v",
            """
            m += (g - m) * keep1;
            v += (g * g - v) * keep2;
            p -= m / (sqrt(v) + eps) * lr_t;""",
            "xpnet_adam_update", options=no_fma),
    }


class _Replay:
    """A recorded CUDA graph: calling it relaunches the work on the current stream and
    returns the arrays the recorded function returned (their contents rewritten)."""

    def __init__(self, graph, result, keep):
        self._graph, self._result, self._keep = graph, result, keep

    def __call__(self):
        self._graph.launch(cupy.cuda.get_current_stream())
        return self._result


class CupyBackend(Backend):
    kind = "cuda"
    xp = cupy
    records = True
    scoped = True
    overlaps_copies = True
    conv_chunk_bytes = None  # one large gemm a graph records (routines/conv.py)
    weight_grad_by_columns = False  # dW as dy @ cols.T (routines/conv.py: not measured on a GPU)
    input_grad_scatter_ratio = None  # a stride-1 dx always as a convolution (likewise)

    def __init__(self, index: int = 0):
        super().__init__()
        self.index = index
        self._device = cupy.cuda.Device(index)
        self._blas = self._handle = None  # found, and created, on the first product
        self._math = 0  # the handle's cublasMath_t
        self._copy_stream, self._staging = None, {}  # streamed batches: their stream and pinned buffers
        self._fused = None  # _kernels(), built on first use

    def describe(self):
        rt = cupy.cuda.runtime
        props = rt.getDeviceProperties(self.index)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        with self._device:
            free, total = rt.memGetInfo()
        pool = cupy.get_default_memory_pool()

        def version(v):
            return f"{v // 1000}.{v % 1000 // 10}"
        return {
            "GPU": f"{name} (compute capability {props['major']}.{props['minor']})",
            "memory": f"{total / 2**30:.1f} GiB total, {free / 2**30:.1f} GiB free",
            "memory pool": f"{pool.used_bytes() / 2**20:.1f} MiB used, {pool.total_bytes() / 2**20:.1f} MiB held",
            "driver / runtime": f"CUDA {version(rt.driverGetVersion())} / {version(rt.runtimeGetVersion())}",
            "array module": f"CuPy {cupy.__version__}",
        }

    def activate(self):
        return self._device  # cupy.cuda.Device is a context manager

    def _gemm(self, a, b, out):
        """(gemm, alpha, beta) for a product cuBLAS can take as it is, else None."""
        if self._blas is None:
            self._blas = _Blas.find() or False
            with self._device:
                self._handle = self._blas and self._blas.create_handle()
        if not (self._blas and a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype
                and a.shape[1] == b.shape[0] and a.size and b.size):
            return None
        if out is not None and (out.shape != (a.shape[0], b.shape[1]) or out.dtype != a.dtype
                                or not out.flags.c_contiguous):
            return None
        return self._blas.gemm.get(a.dtype)

    def _kernel(self, name):
        if self._fused is None:
            self._fused = _kernels()
        return self._fused[name]

    def _dropout_mask(self, key, offset, shape, p, dtype, out):
        if out is None:
            out = cupy.empty(shape, dtype=dtype)
        elif not out.flags.c_contiguous:
            return super()._dropout_mask(key, offset, shape, p, dtype, out)
        blocks = _philox_blocks(shape)
        return self._kernel("dropout_mask")(offset, numpy.uint64(blocks), numpy.uint32(key[0] & _MASK32),
                                            numpy.uint32(key[1] & _MASK32), numpy.uint64(_keep_threshold(p)),
                                            out.dtype.type(1.0 / (1.0 - p)), out)

    def adam_rate(self, lr, t, beta1, beta2, out, work):
        return self._kernel("adam_rate")(lr, t, float(beta1), float(beta2), out)

    def adam_update(self, p, g, m, v, lr_t, beta1, beta2, eps, scratch):
        dtype = p.dtype.type
        self._kernel("adam_update")(g, lr_t, dtype(1 - beta1), dtype(1 - beta2), dtype(eps), p, m, v)

    def scatter_add(self, target, key, values):
        cupyx.scatter_add(target, key, values)

    def matmul(self, a, b, out=None):
        gemm = self._gemm(a, b, out)
        la, lb = (_gemm_layout(a), _gemm_layout(b)) if gemm else (None, None)
        if la is None or lb is None:
            return super().matmul(a, b, out=out)  # CuPy's own (and its error messages)
        (m, k), n = a.shape, b.shape[1]
        if out is None:
            out = cupy.empty((m, n), dtype=a.dtype)
        fn, one, zero = gemm
        _check(self._blas.set_stream(self._handle, cupy.cuda.get_current_stream().ptr), "set stream")
        math = _MATH[get_matmul_precision()] if a.dtype == numpy.float32 else 0
        if math != self._math:
            _check(self._blas.set_math_mode(self._handle, math), "set math mode")
            self._math = math
        # Row-major C = A @ B is column-major C^T = B^T @ A^T: swap the operands.
        _check(fn(self._handle, lb[0], la[0], n, m, k, one, b.data.ptr, lb[1], a.data.ptr, la[1],
                  zero, out.data.ptr, n), "gemm")
        return out

    def capture(self, fn):
        """Run ``fn()`` once, then record it as a CUDA graph; see ``Backend.capture``.

        The eager run and the recording allocate through a hook that keeps every block
        they were given, so each buffer the graph writes stays reserved for it (a layer
        that later swaps its buffers for another batch shape frees nothing the graph uses).
        """
        pool = cupy.get_default_memory_pool()
        keep = []

        def malloc(size):
            block = pool.malloc(size)
            keep.append(block)
            return block

        with self._device, cupy.cuda.using_allocator(malloc):
            result = fn()  # also compiles the kernels, which cannot happen while recording
            stream = cupy.cuda.Stream(non_blocking=True)
            try:
                with stream:
                    stream.begin_capture(_RELAXED)  # CuPy's pool may still cudaMalloc
                    try:
                        recorded = fn()
                    finally:
                        graph = stream.end_capture()
            except (NotImplementedError, RuntimeError) as exc:
                # Work CuPy cannot record (batched cuBLAS products, host syncs): say so once.
                warnings.warn(f"xpnet: this training step cannot be recorded as a CUDA graph "
                              f"({type(exc).__name__}: {exc}); it runs kernel by kernel instead. "
                              f"Pass graph=False to fit to silence this.", RuntimeWarning, stacklevel=3)
                return result, None
        return result, _Replay(graph, recorded, keep)

    def from_host(self, array):
        TRANSFERS.record("h2d", array.nbytes)
        with self._device:
            return cupy.asarray(array)

    def to_host(self, array):
        TRANSFERS.record("d2h", array.nbytes)
        return array.get()

    def upload(self, host, out):
        TRANSFERS.record("h2d", host.nbytes)
        out.set(host)
        return out

    def upload_async(self, host, out, after=None):
        """Stage ``host`` in page-locked memory kept for ``out`` and copy it on a stream of
        its own, after ``after``; the returned event marks the end of the copy."""
        key = id(out)
        staged = self._staging.get(key)
        if staged is None or staged[0].shape != host.shape or staged[0].dtype != host.dtype:
            memory = cupy.cuda.alloc_pinned_memory(host.nbytes)
            staged = (numpy.frombuffer(memory, host.dtype, host.size).reshape(host.shape), None)
        if staged[1] is not None:
            staged[1].synchronize()  # the last copy from this page-locked buffer is done
        numpy.copyto(staged[0], host)
        with self._device:
            if self._copy_stream is None:
                self._copy_stream = cupy.cuda.Stream(non_blocking=True)
            if after is not None:
                self._copy_stream.wait_event(after)
            TRANSFERS.record("h2d", host.nbytes)
            out.set(staged[0], stream=self._copy_stream)
            done = self._copy_stream.record()
        self._staging[key] = (staged[0], done)
        return done

    def wait(self, event):
        if event is not None:
            cupy.cuda.get_current_stream().wait_event(event)

    def step_event(self):
        return cupy.cuda.get_current_stream().record()

    def free_memory(self):
        with self._device:
            free, _ = cupy.cuda.runtime.memGetInfo()
        return free + cupy.get_default_memory_pool().free_bytes()

    def from_peer(self, array):
        TRANSFERS.record("d2d", array.nbytes)
        with self._device:
            return array.copy()  # CuPy copies onto the current device, from any device

    def synchronize(self):
        self._device.synchronize()

