"""Max and average pooling (book ch. 7) as running reductions over strided window slices.

A mixin of ``Backend``: every method works on ``self.xp``."""
from __future__ import annotations


class PoolRoutines:
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
