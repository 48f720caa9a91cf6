"""Products, gathers and the affine layer's routines (book ch. 5).

A mixin of ``Backend``: every method works on ``self.xp``."""
from __future__ import annotations


class DenseRoutines:
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
