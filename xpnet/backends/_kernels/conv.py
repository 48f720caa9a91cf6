"""The convolution's data movement (routines/conv.py): col2im, the transposing copies
around the matrix product, and the conv+ReLU+max-pool stage's element-wise steps.

Some only move values, which is exact; the rest do the routine's one operation per element
(an add, a multiply by a 0/1 mask, NumPy's maximum) in the arrays' dtype. Each is one pass
over its output, in memory order, where NumPy makes two or four.

The conv+pool stage's grouped im2col is here in one form: from the batch's phase planes,
where each run it copies is contiguous (1.4-1.9x NumPy's strided copy on the 2-core EPYC).
Not here: the other im2cols and the scatter of the pooling gradient into dy. They are
copies in runs of 14-840 values, which NumPy's strided copy does at memory speed; numba
loops over them measured 0.3-0.6x NumPy's (2-core EPYC), each short run paying for its
views or its indices' wraparound tests, as did the grouped im2col read straight from the
batch (every other pixel of a row).
"""
from __future__ import annotations

import numba

from ._flags import JIT
from .pool import _maximum


@numba.njit(**JIT)
def col2im(col, sh, sw, ph, pw, img):
    """``img`` (N, C, H, W) = the sum, in kernel-offset order (i, j) from 0, of the
    ``col`` (C, kh, kw, N, OH, OW) entries that land on each pixel, as ``col2im`` (whose
    padding border is dropped, so it is never summed here)."""
    c, kh, kw, n, oh, ow = col.shape
    h, w = img.shape[2], img.shape[3]
    img[:] = 0
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                for ni in range(n):
                    for y in range(oh):
                        yi = i + sh * y - ph
                        if 0 <= yi < h:
                            for x in range(ow):
                                xi = j + sw * x - pw
                                if 0 <= xi < w:
                                    img[ni, ci, yi, xi] += col[ci, i, j, ni, y, x]


@numba.njit(**JIT)
def grouped_columns(phases, kh, kw, out):
    """``out`` (gh, gw, C, kh, kw, N, QH, QW) = the stride-1 columns of ``im2col`` grouped
    by place in the gh x gw pooling window, from ``phases`` (N, C, gw, Hp, Wq): the
    zero-padded batch with each row's columns split by their remainder mod gw
    (``ConvKernels._phases``). Output pixel (gh*p + a, gw*q + b) meets padded pixel
    (gh*p + a + i, gw*q + b + j) at kernel offset (i, j): phase (b + j) % gw, from column
    (b + j) // gw on, a contiguous run of QW values."""
    gh, gw, c = out.shape[0], out.shape[1], out.shape[2]
    n, qh, qw = out.shape[5], out.shape[6], out.shape[7]
    for a in range(gh):
        for b in range(gw):
            for ci in range(c):
                for i in range(kh):
                    for j in range(kw):
                        phase, start = (b + j) % gw, (b + j) // gw
                        for ni in range(n):
                            for p in range(qh):
                                src = phases[ni, ci, phase, gh * p + a + i]
                                dst = out[a, b, ci, i, j, ni, p]
                                for q in range(qw):
                                    dst[q] = src[start + q]


@numba.njit(**JIT)
def conv_output(prod, b, bias, out):
    """``out`` (N, F, OH, OW) = ``prod`` (F, N, OH, width)'s first OW columns, transposed,
    plus b[f] when ``bias``, as ``_conv_output``."""
    n, f, oh, ow = out.shape
    for ni in range(n):
        for fi in range(f):
            bf = b[fi] if bias else b[0]
            for y in range(oh):
                src = prod[fi, ni, y]
                dst = out[ni, fi, y]
                if bias:
                    for x in range(ow):
                        dst[x] = src[x] + bf
                else:
                    for x in range(ow):
                        dst[x] = src[x]


@numba.njit(**JIT)
def product_layout(dy, d4):
    """``d4`` (F, N, OH, width) = ``dy`` (N, F, OH, OW) transposed, zeros past OW, as
    ``_product_layout``."""
    f, n, oh, width = d4.shape
    ow = dy.shape[3]
    zero = d4.dtype.type(0)
    for fi in range(f):
        for ni in range(n):
            for y in range(oh):
                src = dy[ni, fi, y]
                dst = d4[fi, ni, y]
                for x in range(ow):
                    dst[x] = src[x]
                for x in range(ow, width):
                    dst[x] = zero


@numba.njit(**JIT)
def running_max(place, pooled, first, k):
    """One pooling step on flat arrays, as ``_running_max``: first = k where place is
    strictly greater than pooled, then pooled = maximum(pooled, place)."""
    for i in range(place.size):
        p = place[i]
        q = pooled[i]
        if p > q:
            first[i] = k
        pooled[i] = _maximum(q, p)


@numba.njit(**JIT)
def pooled_output(pooled, b, relu, out):
    """``out`` (N, F, QH, QW) = ``pooled`` (F, N, QH, QW) transposed plus b[f], then
    maximum(., 0) when ``relu``, as ``_pooled_output``."""
    n, f, qh, qw = out.shape
    zero = out.dtype.type(0)
    for ni in range(n):
        for fi in range(f):
            bf = b[fi]
            for y in range(qh):
                src = pooled[fi, ni, y]
                dst = out[ni, fi, y]
                for x in range(qw):
                    v = src[x] + bf
                    dst[x] = _maximum(v, zero) if relu else v


@numba.njit(**JIT)
def relu_grad_product(dout, y, relu, d4):
    """``d4`` (F, N, QH, QW) = ``dout`` (N, F, QH, QW) transposed, times 1 or 0 by the mask
    y > 0 when ``relu`` (so -x * 0 is -0.0 and inf * 0 NaN, as NumPy's multiply by a
    bool array), as ``_relu_grad_product``."""
    f, n, qh, qw = d4.shape
    one, zero = d4.dtype.type(1), d4.dtype.type(0)
    for fi in range(f):
        for ni in range(n):
            for r in range(qh):
                src = dout[ni, fi, r]
                dst = d4[fi, ni, r]
                if relu:
                    mask = y[ni, fi, r]
                    for x in range(qw):
                        dst[x] = src[x] * (one if mask[x] > 0 else zero)
                else:
                    for x in range(qw):
                        dst[x] = src[x]


@numba.njit(**JIT)
def place_grad(d, first, k, dk):
    """``dk`` = ``d`` times 1 where ``first`` is k, else times 0 (all flat), as
    ``_place_grad`` without dy."""
    one, zero = d.dtype.type(1), d.dtype.type(0)
    for i in range(d.size):
        dk[i] = d[i] * (one if first[i] == k else zero)
