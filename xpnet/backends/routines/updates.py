"""Optimizer updates, in place (book ch. 6): one routine per optimizer, so a backend can fuse it.

A mixin of ``Backend``: every method works on ``self.xp``."""
from __future__ import annotations


class UpdateRoutines:
    def decay_gradient(self, p, g, wd, out):
        """out = p * wd + g: the gradient with the L2 penalty wd/2 |p|^2's added (weight decay)."""
        self.xp.multiply(p, wd, out=out)
        out += g
        return out

    def sgd_update(self, p, g, lr, scratch):
        p -= self.xp.multiply(g, lr, out=scratch)

    def momentum_update(self, p, g, v, lr, momentum, scratch):
        v *= momentum
        v -= self.xp.multiply(g, lr, out=scratch)
        p += v

    def nesterov_update(self, p, g, v, lr, momentum, scratch):
        """Nesterov momentum in the book's signs: v = momentum v - lr g; p += momentum v - lr g."""
        self.xp.multiply(g, lr, out=scratch)
        v *= momentum
        v -= scratch
        p -= scratch
        p += self.xp.multiply(v, momentum, out=scratch)

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
