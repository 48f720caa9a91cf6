"""MPI launches, seen from the launcher's environment (no MPI library needed), and each
rank's share of the cores.

``xpnet/__init__`` imports this module before anything imports NumPy: a BLAS reads its
thread count once, when it loads, and by default starts a thread per core. Under
``mpiexec -n 2`` on a 2-core machine that is four busy threads on two cores, and an epoch
of the MNIST MLP took 30 times as long as in one process. So, launched with several ranks
on this host and with no thread count of the user's, each rank's BLAS gets its share:
the cores this process may run on divided by the ranks on the host (at least 1).
``xpnet info`` says what was decided; ``xpnet.distributed`` re-exports ``launched``,
``local_rank`` and ``local_size``.
"""
from __future__ import annotations

import os
import sys

_LAUNCH_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
# The variables BLAS libraries and OpenMP read their thread count from. A user who set any
# of them chose a thread count: xpnet then sets none.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")

_decision = None  # what share_cores decided, for ``xpnet info``: a line of text, or None


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


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def share_cores() -> str | None:
    """Under an MPI launch with several ranks on this host, give each rank's BLAS (and
    OpenMP) ``usable_cores() // local_size()`` threads, at least 1, unless the user set a
    thread count (any of ``THREAD_VARIABLES``). Sets those variables, which the BLAS reads
    when NumPy loads it; where NumPy was imported before xpnet, limits the loaded BLAS
    through threadpoolctl instead (``pip install 'xpnet[mpi]'`` brings it), and warns if it
    cannot. Returns what it decided, as ``xpnet info`` prints it (None when not launched)."""
    global _decision
    ranks = local_size()
    if not launched() or ranks < 2:
        _decision = None
        return None
    chosen = {name: os.environ[name] for name in THREAD_VARIABLES if os.environ.get(name)}
    if chosen:
        given = ", ".join(f"{k}={v}" for k, v in chosen.items())
        _decision = f"MPI launch, {ranks} ranks on this host: BLAS threads as you set them ({given})"
        return _decision
    cores = usable_cores()
    threads = max(1, cores // ranks)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    how = f"xpnet set {THREAD_VARIABLES[0]}={threads} and the like"
    if "numpy" in sys.modules:  # its BLAS has read its thread count already: change it where it runs
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(limits=threads)
            how = "NumPy was imported before xpnet: xpnet limited its BLAS through threadpoolctl"
        except ImportError:
            import warnings
            warnings.warn(f"xpnet: {ranks} MPI ranks share {cores} cores, but NumPy was imported before xpnet "
                          f"and threadpoolctl is not installed, so each rank's BLAS may start a thread per "
                          f"core. Import xpnet first, pip install threadpoolctl, or set "
                          f"OPENBLAS_NUM_THREADS={threads}.", stacklevel=2)
            _decision = (f"MPI launch, {ranks} ranks on this host share {cores} cores: BLAS threads NOT "
                         f"limited (NumPy was imported before xpnet, and threadpoolctl is not installed)")
            return _decision
    _decision = (f"MPI launch, {ranks} ranks on this host share {cores} cores: {threads} BLAS thread"
                 f"{'s' if threads > 1 else ''} per rank ({how}; set OPENBLAS_NUM_THREADS to choose)")
    return _decision


def decision() -> str | None:
    """What ``share_cores`` decided when xpnet was imported (None when not launched by MPI)."""
    return _decision


share_cores()
