"""Window geometry shared by convolution and pooling. ``stride`` and ``pad`` are (height,
width) pairs; every routine loops over the kernel's or window's offsets (strided views of
the whole batch), never over pixels, so the Python overhead is the same for any image size.

A mixin of ``Backend``: every method works on ``self.xp``."""
from __future__ import annotations


class Geometry:
    @staticmethod
    def _window_slices(kh, kw, stride, oh, ow):
        """For each window offset (i, j), row-major: the slices of the padded image it meets."""
        (sh, sw) = stride
        return [(Ellipsis, slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))
                for i in range(kh) for j in range(kw)]

    def _padded(self, x, pad, fill):
        (ph, pw) = pad
        if not (ph or pw):
            return x
        return self.xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)

    @staticmethod
    def _conv_geometry(x_shape, kh, kw, stride, pad):
        (sh, sw), (ph, pw) = stride, pad
        return (x_shape[2] + 2 * ph - kh) // sh + 1, (x_shape[3] + 2 * pw - kw) // sw + 1
