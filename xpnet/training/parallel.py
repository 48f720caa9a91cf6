"""How ``fit`` and ``evaluate`` share work between processes: ``SingleProcess`` (one
process: every batch whole, nothing to reduce) or ``DataParallel`` (ranks launched by
``mpiexec``: each takes a contiguous part of every global batch, parameters start from
rank 0's, gradients and reported figures are summed across ranks). The loop talks to one
of the two and never asks which it has.

The MPI primitives themselves (rank, size, allreduce, broadcast) live in
``xpnet.distributed``.
"""
from __future__ import annotations

import numpy

from .. import distributed as dist
from ..errors import ShapeError


def span(total, rank, size):
    """(start, stop) of rank ``rank``'s contiguous part of ``total`` items shared by ``size``."""
    return total * rank // size, total * (rank + 1) // size


class SingleProcess:
    """One process trains alone: the step may be recorded, and nothing is reduced."""

    size, rank, chief, records = 1, 0, True, True

    def part(self, total, where=None):
        """This process's (start, stop) of a global batch of ``total``: None, the whole."""
        return None

    def check_sizes(self, where, sizes) -> None:
        """Ranks given different data would be refused here; one process has nothing to compare."""

    def agree(self, total, where) -> None:
        """Ranks reading batches of different sizes would be refused here; one process has
        nothing to compare."""

    def start(self, model, optimizer) -> None:
        """Before the first step: nothing to share."""

    def reduce_gradients(self, optimizer, share) -> None:
        """Inside the step, after backward: a whole batch's gradients are already the step's."""

    def sum(self, values):
        """``values`` (a host array) summed across processes: as they are."""
        return values


class DataParallel(SingleProcess):
    """Rank ``rank`` of ``size`` processes: each trains on its contiguous part of every
    global batch, weighted by the part's size, and the gradients are summed across ranks
    (one allreduce per flat gradient group, on the host), so the update is the single
    process step's on the whole batch. Not recorded: the allreduce runs on the host."""

    records = False

    def __init__(self, rank: int, size: int):
        self.rank, self.size, self.chief = rank, size, rank == 0

    def part(self, total, where="fit data"):
        if total < self.size:
            raise ShapeError(f"{where}: {total} samples for {self.size} ranks; every batch needs at least one "
                             f"sample a rank (drop_last=True drops a short one).")
        return span(total, self.rank, self.size)

    def check_sizes(self, where, sizes) -> None:
        """Raise ShapeError, naming every rank's sizes, unless all ranks have the same ``sizes``
        (name -> int, -1 unknown; or a function that gives them). One small allreduce on the
        host, before the first step: ranks with different data would otherwise train on
        mismatched parts of each batch, or wait in different collectives (MPICH: "Message
        truncated")."""
        sizes = sizes() if callable(sizes) else sizes
        table = numpy.zeros((self.size, len(sizes)), dtype=numpy.int64)
        table[self.rank] = list(sizes.values())
        dist.allreduce(table)
        if (table == table[0]).all():
            return

        def described(r):
            return ", ".join(f"{'an unknown number of' if v < 0 else v} {name}"
                             for name, v in zip(sizes, table[r]))
        shown = self._named_ranks((table != table[0]).any(1))
        raise ShapeError(f"{where}: the {self.size} ranks were given different data: "
                         + "; ".join(f"rank {r} has {described(r)}" for r in shown)
                         + ". Every rank runs the same call on the same data (each takes its part of every "
                           "global batch): give every rank the same arrays, or Loaders and lists of batches "
                           "of the same sizes.")

    def agree(self, total, where) -> None:
        """Raise ShapeError on every rank, naming each rank's batch, unless every rank read a
        batch of ``total`` samples at ``where`` (-1: its data ended). For batches whose sizes
        no rank knew before reading them: without this, ranks would weight their parts by
        different totals (a wrong step, silently), or wait in different collectives. One
        allreduce of a number a rank, a batch."""
        table = numpy.zeros(self.size, dtype=numpy.int64)
        table[self.rank] = total
        dist.allreduce(table)
        if (table == table[0]).all():
            return
        shown = self._named_ranks(table != table[0])
        raise ShapeError(f"{where}: the {self.size} ranks read batches of different sizes: "
                         + "; ".join(f"rank {r} {'had no batch left' if table[r] < 0 else f'read {table[r]} samples'}"
                                     for r in shown)
                         + ". Every rank runs the same call on the same data (each takes its part of every "
                           "global batch): give every rank the same batches.")

    def _named_ranks(self, odd):
        """The ranks a refusal names: every one up to 8, else rank 0, this one and the first
        whose entry of ``odd`` (a bool a rank) is set."""
        return range(self.size) if self.size <= 8 else sorted({0, self.rank, int(numpy.flatnonzero(odd)[0])})

    def start(self, model, optimizer) -> None:
        """Every rank starts from rank 0's parameters and buffers, and draws Dropout masks
        of its own (different samples, different masks)."""
        optimizer.groups()  # the parameters are views of the flat buffers before they are overwritten
        dist.broadcast({**model.params(), **model.buffers()})
        dist.separate_streams(model, self.rank)

    def reduce_gradients(self, optimizer, share) -> None:
        """This rank's part of the global batch: weight its gradients by its share, then sum."""
        for g in optimizer.flat_grads():
            g *= share
            dist.allreduce(g)

    def sum(self, values):
        return dist.allreduce(values.copy())


def processes(distributed, where="fit"):
    """``SingleProcess`` or ``DataParallel`` for ``distributed`` (None: whether this
    process was launched by ``mpiexec`` with more than one rank)."""
    if distributed is None:
        distributed = dist.launched()
    if not distributed:
        return SingleProcess()
    if not dist.launched():
        raise RuntimeError(f"{where}(distributed=True): this process was not launched by an MPI launcher with "
                           f"more than one rank. Run it as: mpiexec -n 2 python your_script.py (install the "
                           f"launcher with pip install 'xpnet[mpi]').")
    return DataParallel(dist.rank(), dist.size())
