"""Max and average pooling (routines/pool.py) on C-contiguous (N, C, H, W) arrays.

The routines run over the kh*kw window offsets in row-major order, each a strided slice
of the whole (padded) batch; the kernels go one (image, channel) plane at a time, so the
plane stays in cache, and keep, for every output and every input pixel, the routine's
order of operations: a window's running maximum or sum takes its offsets in row-major
order, and an input pixel that several windows cover adds their gradients in the order
of the offsets that reach it (offset outermost, as the routine's loop over slices).

The padding is never built: a pixel outside the image reads as the routine's fill (-inf
for max, 0 for average). Windows wholly inside the image (the interior) run as row loops
with no bounds checks, which the compiler vectorizes; the windows that reach into the
padding go one by one through ``_pixel``.
"""
from __future__ import annotations

import numba

from ._flags import JIT


@numba.njit(inline="always", **JIT)
def _maximum(a, b):
    """np.maximum(a, b) bit for bit: a NaN in either propagates, and of two equal values
    (0.0 and -0.0) NumPy returns the second, on every loop it has (checked on contiguous,
    strided and broadcast operands)."""
    return a if a > b or a != a else b


@numba.njit(inline="always", **JIT)
def _pixel(plane, r, c, fill):
    """The padded image's value at (r, c) of the unpadded plane: ``fill`` outside it."""
    if r < 0 or c < 0 or r >= plane.shape[0] or c >= plane.shape[1]:
        return fill
    return plane[r, c]


@numba.njit(inline="always", **JIT)
def _span(n, stride, offset, size):
    """The outputs o in [lo, hi) of n whose pixel o * stride + offset lies in [0, size)."""
    lo = 0 if offset >= 0 else (stride - 1 - offset) // stride
    hi = 0 if offset >= size else min(n, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


@numba.njit(inline="always", **JIT)
def _interior(n, stride, pad, k, size):
    """The outputs whose whole window (k pixels from o * stride - pad) is inside [0, size)."""
    lo = _span(n, stride, -pad, size)[0]
    return lo, max(lo, _span(n, stride, k - 1 - pad, size)[1])


@numba.njit(inline="always", **JIT)
def _window(plane, r, c, kh, kw, fill, average):
    """One window's running maximum (or sum) from (r, c), pixel by pixel: for the border."""
    s = _pixel(plane, r, c, fill)
    for k in range(1, kh * kw):
        v = _pixel(plane, r + k // kw, c + k % kw, fill)
        s = s + v if average else _maximum(s, v)
    return s


@numba.njit(inline="always", **JIT)
def _pool_row(flat, base, w, o, kh, kw, sw, average):
    """o, a row of windows inside the image whose first pixel is flat[base] (rows w
    apart), each window's pixels in row-major order. (Indices from 0 into a view of the
    whole array let the compiler drop numba's negative-index checks and vectorize; views
    of each plane or row cost more than the row's work.)"""
    win = flat[base:]
    for t in range(o.size):
        s = win[t * sw]
        for di in range(kh):
            for dj in range(kw):
                v = win[di * w + t * sw + dj]
                s = v if di == 0 and dj == 0 else (s + v if average else _maximum(s, v))
        o[t] = s


@numba.njit(inline="always", **JIT)
def _border(plane, o, i, j_from, j_to, kh, kw, sh, sw, ph, pw, fill, average):
    """o[i, j_from:j_to], windows that reach into the padding, pixel by pixel."""
    for j in range(j_from, j_to):
        o[i, j] = _window(plane, i * sh - ph, j * sw - pw, kh, kw, fill, average)


@numba.njit(inline="always", **JIT)
def _pool(x, kh, kw, sh, sw, ph, pw, fill, scale, out, average):
    (oh, ow), (h, w), flat = out.shape[2:], x.shape[2:], x.reshape(-1)
    i_lo, i_hi = _interior(oh, sh, ph, kh, h)
    j_lo, j_hi = _interior(ow, sw, pw, kw, w)
    for b in range(x.shape[0]):
        for ch in range(x.shape[1]):
            plane, o, first = x[b, ch], out[b, ch], (b * x.shape[1] + ch) * h * w + j_lo * sw - pw
            for i in range(oh):
                if i_lo <= i < i_hi:
                    _pool_row(flat, first + (i * sh - ph) * w, w, o[i, j_lo:j_hi], kh, kw, sw, average)
                    _border(plane, o, i, 0, j_lo, kh, kw, sh, sw, ph, pw, fill, average)
                    _border(plane, o, i, j_hi, ow, kh, kw, sh, sw, ph, pw, fill, average)
                else:
                    _border(plane, o, i, 0, ow, kh, kw, sh, sw, ph, pw, fill, average)
            if average:
                o *= scale


# Entry points, one per window geometry (kh, kw, sh, sw): with the geometry a constant the
# compiler unrolls each window and vectorizes over the output row, 4-6x faster than the
# same code with the geometry as arguments, which is slower than NumPy's strided passes.
# Other geometries run the portable routine (``for_geometry`` returns None).
@numba.njit(**JIT)
def max_pool_2x2s2(x, ph, pw, fill, out):
    _pool(x, 2, 2, 2, 2, ph, pw, fill, fill, out, False)


@numba.njit(**JIT)
def max_pool_3x3s2(x, ph, pw, fill, out):
    _pool(x, 3, 3, 2, 2, ph, pw, fill, fill, out, False)


@numba.njit(**JIT)
def avg_pool_2x2s2(x, ph, pw, zero, scale, out):
    _pool(x, 2, 2, 2, 2, ph, pw, zero, scale, out, True)


@numba.njit(**JIT)
def avg_pool_3x3s2(x, ph, pw, zero, scale, out):
    _pool(x, 3, 3, 2, 2, ph, pw, zero, scale, out, True)


@numba.njit(inline="always", **JIT)
def _first_hit(plane, r, c, target, kh, kw, fill):
    """The first window offset (row-major) from (r, c) whose pixel equals ``target``, or -1
    (a NaN window, whose maximum equals nothing): the routine's ``img[window] == y`` and
    not yet found."""
    for k in range(kh * kw):
        if _pixel(plane, r + k // kw, c + k % kw, fill) == target:
            return k
    return -1


@numba.njit(inline="always", **JIT)
def _hits_border(plane, y, hit, i, j_from, j_to, kh, kw, sh, sw, ph, pw, fill):
    for j in range(j_from, j_to):
        hit[i, j] = _first_hit(plane, i * sh - ph, j * sw - pw, y[i, j], kh, kw, fill)


@numba.njit(inline="always", **JIT)
def _hits_row(xf, base, w, t, g, dxf, kh, kw, sw, zero, one, hit, write):
    """The first maxima of a row of windows inside the image (first pixel xf[base]); when
    ``write`` (windows that neither overlap nor pad), also each window's gradient, d * 1
    or d * 0 (a -0.0 or NaN included), straight into dxf (the same layout as xf)."""
    win, dst = xf[base:], dxf[base:]
    for u in range(t.size):
        found, free = -1, True  # the routine's ``free`` mask, one window at a time
        for di in range(kh):
            for dj in range(kw):
                k = di * kw + dj
                equal = win[di * w + u * sw + dj] == t[u]
                first = equal & free  # no branches: ties are common (ReLU's zeros)
                free = free > equal
                found = k if first else found
                if write:
                    dst[di * w + u * sw + dj] = g[u] * (one if first else zero)
        hit[u] = found


@numba.njit(inline="always", **JIT)
def _route(d, h, w, flat, first, hit, kh, kw, sh, sw, ph, pw, zero, one, scale, adding):
    """Offset by offset (row-major), each window's pixel inside the image takes
    ``d * (hit == offset)`` (max: the routine's multiply(dout, hit), added when windows
    overlap) or ``d * scale`` (average, always added); padding pixels are dropped, as
    the routine crops them. The plane (h, w) starts at ``flat[first]``."""
    oh, ow = d.shape
    for k in range(kh * kw):
        di, dj = k // kw - ph, k % kw - pw
        i_lo, i_hi = _span(oh, sh, di, h)
        j_lo, j_hi = _span(ow, sw, dj, w)
        for i in range(i_lo, i_hi):
            row, g = flat[first + (i * sh + di) * w + j_lo * sw + dj:], d[i, j_lo:j_hi]
            if hit is None:
                for u in range(g.size):
                    row[u * sw] += g[u] * scale
                continue
            t = hit[i, j_lo:j_hi]
            for u in range(g.size):
                v = g[u] * (one if t[u] == k else zero)
                row[u * sw] = row[u * sw] + v if adding else v


@numba.njit(inline="always", **JIT)
def _max_pool_backward(dout, x, y, kh, kw, sh, sw, ph, pw, overlap, covered, fill, zero, one, hit, dx):
    """Interior windows that tile (no overlap) write their gradient as they find their
    maximum; the rest is routed offset by offset (``_route``)."""
    (h, w), (oh, ow), xf, dxf = x.shape[2:], y.shape[2:], x.reshape(-1), dx.reshape(-1)
    i_lo, i_hi = _interior(oh, sh, ph, kh, h)
    j_lo, j_hi = _interior(ow, sw, pw, kw, w)
    fused = not overlap and covered
    for b in range(x.shape[0]):
        for ch in range(x.shape[1]):
            plane, first = x[b, ch], (b * x.shape[1] + ch) * h * w
            for i in range(oh):
                if not i_lo <= i < i_hi:
                    _hits_border(plane, y[b, ch], hit, i, 0, ow, kh, kw, sh, sw, ph, pw, fill)
                    continue
                _hits_row(xf, first + (i * sh - ph) * w + j_lo * sw - pw, w, y[b, ch, i, j_lo:j_hi],
                          dout[b, ch, i, j_lo:j_hi], dxf, kh, kw, sw, zero, one, hit[i, j_lo:j_hi], fused)
                _hits_border(plane, y[b, ch], hit, i, 0, j_lo, kh, kw, sh, sw, ph, pw, fill)
                _hits_border(plane, y[b, ch], hit, i, j_hi, ow, kh, kw, sh, sw, ph, pw, fill)
            if not fused:
                if not covered:
                    dx[b, ch] = zero
                _route(dout[b, ch], h, w, dxf, first, hit, kh, kw, sh, sw, ph, pw, zero, one, one, overlap)


# dx (the unpadded shape of x) receives the gradient of each window's first maximum.
# Without overlap every pixel is written once (``d * 1`` or ``d * 0``, a -0.0 or NaN
# included); pixels no window covers hold 0, as in the routine's zeroed image.
@numba.njit(**JIT)
def max_pool_backward_2x2s2(dout, x, y, ph, pw, covered, fill, zero, one, hit, dx):
    _max_pool_backward(dout, x, y, 2, 2, 2, 2, ph, pw, False, covered, fill, zero, one, hit, dx)


@numba.njit(**JIT)
def max_pool_backward_3x3s2(dout, x, y, ph, pw, covered, fill, zero, one, hit, dx):
    _max_pool_backward(dout, x, y, 3, 3, 2, 2, ph, pw, True, covered, fill, zero, one, hit, dx)


@numba.njit(inline="always", **JIT)
def _avg_pool_backward(dout, kh, kw, sh, sw, ph, pw, zero, scale, dx):
    """Each window adds ``dout * scale`` to its pixels, offset by offset, into a zeroed image."""
    (h, w), dxf = dx.shape[2:], dx.reshape(-1)
    dx[:] = zero
    for b in range(dx.shape[0]):
        for ch in range(dx.shape[1]):
            first = (b * dx.shape[1] + ch) * h * w
            _route(dout[b, ch], h, w, dxf, first, None, kh, kw, sh, sw, ph, pw, zero, zero, scale, True)


@numba.njit(**JIT)
def avg_pool_backward_2x2s2(dout, ph, pw, zero, scale, dx):
    _avg_pool_backward(dout, 2, 2, 2, 2, ph, pw, zero, scale, dx)


@numba.njit(**JIT)
def avg_pool_backward_3x3s2(dout, ph, pw, zero, scale, dx):
    _avg_pool_backward(dout, 3, 3, 2, 2, ph, pw, zero, scale, dx)


GEOMETRIES = {(2, 2, 2, 2): "2x2s2", (3, 3, 2, 2): "3x3s2"}


def for_geometry(name, kh, kw, sh, sw):
    """The kernel ``name`` (max_pool, avg_pool, max_pool_backward, avg_pool_backward)
    compiled for this window geometry, or None: the routine runs."""
    suffix = GEOMETRIES.get((kh, kw, sh, sw))
    return None if suffix is None else globals()[f"{name}_{suffix}"]
