"""What a process's devices did: counts and bytes of copies between host and devices,
kernel launches (counted exactly on sim), and how CUDA computes float32 products."""
from __future__ import annotations

import dataclasses
import threading


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

