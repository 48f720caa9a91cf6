"""Dropout's Philox4x32-10 mask (routines/random.py)."""
from __future__ import annotations

import numba
import numpy

from ._flags import JIT

_MASK32 = numpy.uint64(0xFFFFFFFF)
_SHIFT = numpy.uint64(32)
_M0 = numpy.uint64(0xD2511F53)  # Philox4x32's multipliers (routines/random.py's _PHILOX_M)
_M1 = numpy.uint64(0xCD9E8D57)

@numba.njit(**JIT)
def dropout_mask(out, offset, round_keys, threshold, scale):
    """``out`` (flat) gets ``scale`` where the unit is kept, else 0: unit i takes word
    (c0, c2, c1, c3)[i // blocks] of counter offset + i % blocks, as the portable routine's
    layout gives. ``round_keys`` is (10, 2) uint64, ``threshold`` a uint64."""
    size = out.size
    blocks = (size + 3) // 4
    zero = out.dtype.type(0)
    base = offset[()]
    for j in range(blocks):
        ctr = base + numpy.uint64(j)  # wraps modulo 2^64 as the portable uint64 add does
        c0 = ctr & _MASK32
        c1 = ctr >> _SHIFT
        c2 = numpy.uint64(0)
        c3 = numpy.uint64(0)
        for r in range(10):
            p0 = _M1 * c2
            p1 = _M0 * c0
            c0 = (p0 >> _SHIFT) ^ c1 ^ round_keys[r, 0]
            c2 = (p1 >> _SHIFT) ^ c3 ^ round_keys[r, 1]
            c1 = p0 & _MASK32
            c3 = p1 & _MASK32
        i = j
        out[i] = scale if c0 >= threshold else zero
        i += blocks
        if i < size:
            out[i] = scale if c2 >= threshold else zero
        i += blocks
        if i < size:
            out[i] = scale if c1 >= threshold else zero
        i += blocks
        if i < size:
            out[i] = scale if c3 >= threshold else zero
