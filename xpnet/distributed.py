"""Data-parallel training across processes and hosts, on MPI (``pip install 'xpnet[mpi]'``:
mpi4py with MPICH's wheel, no system MPI needed).

Launch the same script on N processes: ``mpiexec -n 2 python train.py`` (across hosts:
``mpiexec -f hostfile -n 8 python train.py``). ``fit`` sees the launch and trains data
parallel: parameters broadcast from rank 0, each rank a disjoint shard of every global
batch, gradients averaged with one allreduce of the optimizer's flat buffer per step,
only rank 0 showing progress and writing checkpoints and plots. Alone, the same script
runs as one process, and mpi4py is never imported.

A rank that raises makes the whole job stop (``MPI_Abort``) with its traceback, so the
others do not wait for it forever.
"""
from __future__ import annotations

import os
import sys
import traceback

import numpy

_LAUNCH_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
_comm = None


def _launcher_says(names, default: int) -> int:
    """The first of the launchers' environment variables ``names`` that is set (MPICH's
    hydra, Open MPI, Slurm), as an int; ``default`` when none is."""
    for name in names:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return default


def launched() -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, srun) with more than one rank."""
    return _launcher_says(_LAUNCH_VARIABLES, 1) > 1


def local_rank() -> int:
    """This process's rank among those on its host (0 when not launched by MPI)."""
    return _launcher_says(("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"), 0)


def local_size() -> int:
    """How many ranks share this host (1 when not launched by MPI)."""
    return _launcher_says(("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"), 1)


def init():
    """The MPI world communicator (imports mpi4py on first use). Installs a hook that
    aborts the whole job when this rank dies of an exception."""
    global _comm
    if _comm is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError(f"xpnet.distributed needs mpi4py and an MPI library: pip install "
                              f"'xpnet[mpi]' (mpi4py and MPICH's wheel) ({exc}).") from None
        _comm = MPI.COMM_WORLD
        if _comm.size > 1:
            _install_abort_hook(_comm)
    return _comm


def _install_abort_hook(comm):
    previous = sys.excepthook

    def abort(kind, value, tb):
        sys.stderr.write(f"xpnet.distributed: rank {comm.rank} of {comm.size} failed; stopping every rank.\n")
        sys.stderr.write("".join(traceback.format_exception(kind, value, tb)))
        sys.stderr.flush()
        comm.Abort(1)
        previous(kind, value, tb)
    sys.excepthook = abort


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
