"""Counter-based random numbers (Philox4x32-10) and Dropout's mask, drawn on the device.

A mixin of ``Backend``: every method works on ``self.xp``."""
from __future__ import annotations

import math

import numpy

_PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # Philox4x32's multipliers and Weyl key increments

_PHILOX_W = (0x9E3779B9, 0xBB67AE85)

_MASK32 = 0xFFFFFFFF



def _philox_blocks(shape):
    """Philox counters a Dropout mask of ``shape`` takes: four 32-bit words each."""
    return -(-int(numpy.prod(shape)) // 4)


def _keep_threshold(p):
    """The least 32-bit word that keeps a unit: uniform >= p, with uniform = (word >> 8) / 2^24,
    is word >= ceil(p 2^24) * 2^8, exactly."""
    return math.ceil(p * 2 ** 24) << 8



class RandomRoutines:
    def philox4x32(self, counter, key):
        """Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
        SC 2011): four 32-bit words from each counter under ``key``.

        ``counter`` is a (4, n) uint64 array holding 32-bit words (one counter per column),
        overwritten with the result; ``key`` is two Python ints. Element-wise integer
        arithmetic only, so every backend computes the same bits (a 32x32-bit product fits
        in uint64).
        """
        state = self.xp.empty_like(counter)  # the rounds' layout: rows c0, c2, c1, c3
        state[:2], state[2:] = counter[0::2], counter[1::2]
        self._philox_rounds(state, key)
        counter[0::2], counter[1::2] = state[:2], state[2:]
        return counter

    def _philox_rounds(self, state, key):
        """The ten rounds in place on ``state``, (4, n) uint64 with rows (c0, c2, c1, c3):
        then a round is five operations on (2, n) halves, whatever n is (the GPU launches
        and the CPU's per-call costs are per operation). Each round computes
        (c0, c2) = (hi(M1 c2) ^ c1 ^ k0, hi(M0 c0) ^ c3 ^ k1), (c1, c3) = (lo(M1 c2), lo(M0 c0))."""
        xp = self.xp
        a, b = state[:2], state[2:]
        prod = xp.empty_like(a)
        multipliers, round_keys = self._philox_constants(key)
        for r in range(10):
            xp.multiply(a[::-1], multipliers, out=prod)  # (M1 c2, M0 c0): 64-bit products
            xp.right_shift(prod, 32, out=a)
            a ^= b
            a ^= round_keys[r]
            xp.bitwise_and(prod, _MASK32, out=b)
        return state

    def _philox_constants(self, key):
        """The multipliers (M1, M0) and the ten round keys for ``key`` as device columns,
        filled once per key (fills from Python values: no copy from the host)."""
        constants = self._philox.get(key)
        if constants is None:
            xp = self.xp
            multipliers = xp.empty((2, 1), dtype=xp.uint64)
            multipliers[0], multipliers[1] = _PHILOX_M[1], _PHILOX_M[0]
            round_keys = xp.empty((10, 2, 1), dtype=xp.uint64)
            for r in range(10):  # the key schedule: the Weyl constants added before every round but the first
                for i in (0, 1):
                    round_keys[r, i] = (key[i] + r * _PHILOX_W[i]) & _MASK32
            constants = self._philox[key] = (multipliers, round_keys)
        return constants

    def dropout_mask(self, key, offset, shape, p, dtype, out=None):
        """Inverted dropout's mask: keep with probability 1-p, kept units scaled by 1/(1-p).

        The mask takes blocks = ceil(size / 4) counters of Philox4x32-10 under ``key``,
        ``offset``, ``offset`` + 1, ...; unit i takes word (c0, c2, c1, c3)[i // blocks] of
        counter ``offset`` + i % blocks (the order the rounds keep the words in), and is
        kept when the word's top 24 bits, read as a uniform in [0, 1), are >= p. The 0-d
        uint64 ``offset`` lives on the device and is advanced here, so a recorded step
        draws a fresh mask on every replay, and one seed gives the same mask on every device.
        """
        out = self._dropout_mask(key, offset, shape, p, dtype, out)
        offset += _philox_blocks(shape)
        return out

    def _dropout_mask(self, key, offset, shape, p, dtype, out):
        """The mask from the counters at ``offset`` (left as it is): element-wise integer
        work, one kernel on CUDA (CupyBackend) and counted as one on sim."""
        xp = self.xp
        size = int(numpy.prod(shape))
        blocks = _philox_blocks(shape)
        state = xp.zeros((4, blocks), dtype=xp.uint64)  # counter offset + j: low word c0, high word c1
        xp.add(self._counting(blocks), offset, out=state[0])
        xp.right_shift(state[0], 32, out=state[2])
        state[0] &= _MASK32
        words = self._philox_rounds(state, key).reshape(-1)[:size].reshape(shape)
        keep = xp.greater_equal(words, _keep_threshold(p))
        return xp.multiply(keep, 1.0 / (1.0 - p), out=out, dtype=dtype)

    def _counting(self, n):
        """0, 1, ..., n-1 as a device uint64 array, cached."""
        a = self._aranges.get(("u8", n))
        if a is None:
            a = self._aranges[("u8", n)] = self.arange(n).astype(self.xp.uint64)
        return a
