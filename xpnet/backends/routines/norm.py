"""Batch normalisation (book ch. 6.3).

A mixin of ``Backend``: every method works on ``self.xp``."""
from __future__ import annotations


class NormRoutines:
    def batchnorm_forward(self, x, gamma, beta, running_mean, running_var, momentum, eps, training):
        """x: (N, D), or (N, C, H, W) normalised per channel. Updates the running statistics
        in place when training.

        Returns (y, xn, std) (y of x's shape), xn and std being what backward needs. In eval
        mode the running statistics stand in for the batch's. A 4-D batch is normalised as
        the (N*H*W, C) rows of its transpose.
        """
        if x.ndim == 4:
            y, xn, std = self.batchnorm_forward(_rows(x), gamma, beta, running_mean, running_var, momentum, eps,
                                                training)
            return _maps(y, x.shape), xn, std
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
        """Writes dgamma, dbeta in place; returns dx (of dout's shape: (N, D) or (N, C, H, W)).

        After a training forward the book's chain of steps collapses to
        dx = gamma / std * (dout - mean(dout) - xn * mean(dout * xn)), and those two means
        are dbeta / N and dgamma / N, already at hand. After an eval forward the statistics
        are constants, and dx = dout * gamma / std.
        """
        if dout.ndim == 4:
            return _maps(self.batchnorm_backward(_rows(dout), gamma, xn, std, dgamma, dbeta, training), dout.shape)
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


def _rows(x):
    """(N, C, H, W) -> its (N*H*W, C) transpose, a copy (the rows BatchNorm normalises)."""
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def _maps(rows, shape):
    """The inverse of ``_rows``: (N*H*W, C), or (N, H*W, C), -> (N, C, H, W), a view."""
    n, c, h, w = shape
    return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)
