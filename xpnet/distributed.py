"""Data-parallel training across processes and hosts, on MPI (``pip install 'xpnet[mpi]'``:
mpi4py with MPICH's wheel, no system MPI needed).

Launch the same script on N processes: ``mpiexec -n 2 python train.py`` (across hosts:
``mpiexec -f hostfile -n 8 python train.py``). ``fit`` sees the launch and trains data
parallel: parameters broadcast from rank 0, each rank a disjoint shard of every global
batch, gradients averaged with one allreduce of the optimizer's flat buffer per step,
only rank 0 showing progress and writing checkpoints and plots. Alone, the same script
runs as one process, and mpi4py is never imported.

A rank that raises makes the whole job stop (``MPI_Abort``) with its traceback, so the
others do not wait for it forever: from the moment xpnet is imported under a launcher,
before this rank has used MPI too (its exception hook then starts MPI to abort). A rank
that leaves quietly instead (``sys.exit``, ``os._exit``) is not seen: the others wait.
"""
from __future__ import annotations

import os
import sys
import traceback

import numpy

# Launch detection reads the launcher's environment only; it lives in _launch, which
# xpnet/__init__ runs before NumPy loads, to give each rank its share of the cores.
from ._launch import launched, local_rank, local_size  # noqa: F401  (public here)

_comm = None


def init():
    """The MPI world communicator (imports mpi4py on first use; the abort hook, ``_abort``,
    is installed when xpnet is imported under a launcher)."""
    global _comm
    if _comm is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError(f"xpnet.distributed needs mpi4py and an MPI library: pip install "
                              f"'xpnet[mpi]' (mpi4py and MPICH's wheel) ({exc}).") from None
        _comm = MPI.COMM_WORLD
    return _comm


def _abort(kind, value, tb):
    """``sys.excepthook`` under a launcher: this rank's traceback, then ``MPI_Abort``, which
    ends this process and, through the launcher, every rank (which may be waiting for this
    one in a collective, whether or not this one has used MPI yet)."""
    try:
        comm = init()
    except Exception:  # noqa: BLE001 (no MPI to abort through: Python's own report)
        sys.__excepthook__(kind, value, tb)
        return
    _write_before_abort(f"xpnet.distributed: rank {comm.rank} of {comm.size} failed; stopping every rank.\n"
                        + "".join(traceback.format_exception(kind, value, tb)))
    comm.Abort(1)


if launched():
    sys.excepthook = _abort


def _write_before_abort(text: str, timeout: float = 10.0) -> None:
    """Write ``text`` to stderr and wait (at most ``timeout`` s) until the launcher has read
    it, and what stdout holds. A launcher gives each rank pipes for its output and forwards
    what it reads; ``MPI_Abort`` has it kill the job at once, and whatever is still in a pipe
    then is lost: with ``mpiexec -n 2`` about one run in ten ended with no traceback."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is sys.stderr:
                stream.write(text)
            stream.flush()
        except (AttributeError, OSError, ValueError):  # None, or closed: nothing to wait for
            continue
        _wait_until_read(stream, timeout)


def _wait_until_read(stream, timeout: float) -> None:
    """Return once the pipe behind ``stream`` is empty (a reader took every byte), after
    ``timeout`` seconds at the latest; at once for a terminal, a file, or off Linux/macOS."""
    import stat
    import time
    try:
        import fcntl
        import termios
        fd = stream.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        unread = bytearray(4)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fcntl.ioctl(fd, termios.FIONREAD, unread)
            if int.from_bytes(unread, sys.byteorder) == 0:
                return
            time.sleep(0.002)
    except (ImportError, AttributeError, OSError, ValueError):
        return


def size() -> int:
    """Processes in the job (1 when not launched by MPI)."""
    return init().size if launched() else 1


def rank() -> int:
    """This process's rank, 0..size-1 (0 when not launched by MPI)."""
    return init().rank if launched() else 0


def separate_streams(model, which: int) -> None:
    """Move the model's random streams (``random_state``: Dropout's counters) to a range
    of their own for rank ``which`` (2^48 blocks apart), so ranks draw different masks
    for their different samples."""
    for counter in model.random_state().values():
        counter += which << 48


def barrier() -> None:
    if launched():
        init().Barrier()


def allreduce(array):
    """Sum ``array`` across ranks, in place; returns it. A device array travels through the
    host (two counted copies): NCCL for CUDA arrays is not wired up yet."""
    if not launched():
        return array
    from mpi4py import MPI

    from .transfer import to_device, to_host
    if isinstance(array, numpy.ndarray):
        init().Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
        return array
    host = numpy.ascontiguousarray(to_host(array))
    init().Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
    array[...] = to_device(host, array.device)
    return array


def broadcast(arrays: dict, root: int = 0) -> None:
    """Overwrite each array of ``arrays`` (name -> host or device array) with rank ``root``'s."""
    if not launched():
        return
    from .transfer import to_device, to_host
    comm = init()
    for name in sorted(arrays):
        array = arrays[name]
        host = numpy.ascontiguousarray(to_host(array))
        comm.Bcast(host, root=root)
        if isinstance(array, numpy.ndarray):
            array[...] = host
        else:
            array[...] = to_device(host, array.device)
