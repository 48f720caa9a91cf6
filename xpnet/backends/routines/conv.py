"""Convolution (book ch. 7): im2col and a matrix product for the whole batch (an input
gradient's over cache-sized chunks of it on the CPU: ``conv_chunk_bytes``), the
conv+ReLU+max-pool stage, and their backward passes.

A mixin of ``Backend``: every method works on ``self.xp``."""
from __future__ import annotations

import functools

from .. import blas


class ConvRoutines:
    def im2col(self, x, kh, kw, stride, pad, out=None, group=(1, 1)):
        """(N, C, H, W) -> (C*kh*kw, N*OH*OW): row (c, i, j) holds input pixel (i, j) of
        channel c's window for every output pixel of the whole batch.

        The batch is folded into the columns, so a convolution is one 2-D product
        W (F, C*kh*kw) @ col for the whole batch: one gemm a CUDA graph can record, instead
        of N small ones. With ``group`` (gh, gw) the columns are taken in gh x gw blocks of
        output pixels, and the result holds one contiguous (C*kh*kw, N*OH*OW / (gh*gw))
        matrix for each place in the block, place by place (see ``conv2d_maxpool``); each
        is ordered (N, OH/gh, OW/gw). One strided copy per kernel row.
        """
        n, c = x.shape[:2]
        oh, ow = self._conv_geometry(x.shape, kh, kw, stride, pad)
        if out is None:
            out = self.xp.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
        rows = out.reshape(tuple(group) + (c, kh, kw, n, oh // group[0], ow // group[1]))
        for i, window in enumerate(self._kernel_windows(self._padded(x, pad, 0), kh, kw, stride, oh, ow, group)):
            rows[:, :, :, i] = window.transpose(2, 3, 0, 1, 4, 5, 6)
        return out

    def col2im(self, col, x_shape, kh, kw, stride, pad):
        """Adjoint of im2col: adds each row of ``col`` back onto the image it came from, one
        kernel offset at a time (the windows of one offset never overlap)."""
        n, c, h, w = x_shape
        (ph, pw) = pad
        oh, ow = self._conv_geometry(x_shape, kh, kw, stride, pad)
        col = col.reshape(c, kh, kw, n, oh, ow)
        img = self.xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype)
        for i, window in enumerate(self._kernel_windows(img, kh, kw, stride, oh, ow, (1, 1))):
            for j in range(kw):
                window[:, j, 0, 0] += col[:, i, j]
        return img[:, :, ph:ph + h, pw:pw + w]

    def _kernel_windows(self, img, kh, kw, stride, oh, ow, group):
        """For each kernel row i, a strided view (C, kw, gh, gw, N, OH/gh, OW/gw) of the
        padded image ``img`` (N, C, H, W): [c, j, a, b, n, p, q] is the pixel that kernel
        offset (i, j) of channel c meets for output pixel (a + gh*p, b + gw*q) of image n."""
        (sh, sw), (gh, gw) = stride, group
        sn, sc, sy, sx = img.strides
        shape = (img.shape[1], kw, gh, gw, img.shape[0], oh // gh, ow // gw)
        strides = (sc, sx, sh * sy, sw * sx, sn, gh * sh * sy, gw * sw * sx)
        as_strided = self.xp.lib.stride_tricks.as_strided
        return [as_strided(img[:, :, i:], shape=shape, strides=strides) for i in range(kh)]

    # An input gradient's stride-1 convolution runs over chunks of about this many bytes
    # of columns, so the columns and the product of a chunk are still in cache when the
    # product and the output's copy read them (1, 2, 4 MiB measured on a 2-core EPYC;
    # 512 KiB and 8 MiB slower), each chunk's product on one BLAS thread
    # (backends/blas.py: a DeepConvNet step 1.30x faster in the VM's slow stretches, 0.90x
    # in its fast ones). A forward convolution, whose columns backward reads, runs whole:
    # one product on every thread, 1.02-1.04x a DeepConvNet step against chunks
    # (bench/results/cpu-2026-11-29/README.md). None: no chunks (cuda: one large gemm).
    # sim takes cpu's value, so the products' shapes, and their bits, are the same on both.
    conv_chunk_bytes = 2 << 20

    def conv2d(self, x, W, b, stride, pad, scratch=None, out=None):
        """Convolution by im2col and a product; returns (y, col), col (the whole batch's
        columns) kept for backward.

        The product W (F, K) @ col gives (F, N*OH*OW); adding the bias copies it into
        y (N, F, OH, OW), C-contiguous, in the same pass (``b`` None: no bias). With
        stride 1 the columns run over the padded width (``_im2col_wide``) and the extra
        ones are dropped here. ``scratch(name, shape, dtype)`` gives reusable buffers
        (None, or a None from it: a new array).
        """
        return self._conv2d(x, W, b, stride, pad, scratch, out, keep_col=True)

    def _conv2d(self, x, W, b, stride, pad, scratch, out, keep_col):
        """``conv2d``; with ``keep_col`` False (the input gradient's convolution, whose
        columns nothing reads afterwards) a stride-1 one goes in chunks
        (``conv_chunk_bytes``), and its second result is None."""
        n = x.shape[0]
        f, c, kh, kw = W.shape
        oh, ow = self._conv_geometry(x.shape, kh, kw, stride, pad)
        wide = stride == (1, 1)
        width = x.shape[3] + 2 * pad[1] if wide else ow
        if out is None:
            out = self.xp.empty((n, f, oh, ow), dtype=x.dtype)
        chunk = self._conv_chunk(c * kh * kw * oh * width * x.dtype.itemsize) if wide and not keep_col else n
        if chunk < n:
            return self._conv2d_chunks(x, W.reshape(f, -1), b, (kh, kw), pad, chunk, scratch, out), None
        col = self._scratch(scratch, "col", (c * kh * kw, n * oh * width), x.dtype)
        col = self._im2col_wide(x, kh, kw, pad, col) if wide else self.im2col(x, kh, kw, stride, pad, out=col)
        prod = self.matmul(W.reshape(f, -1), col, out=self._scratch(scratch, "prod", (f, n * oh * width), x.dtype))
        return self._conv_output(prod.reshape(f, n, oh, width), b, out), col

    def _conv_chunk(self, image_bytes):
        """Images a chunk of a stride-1 convolution holds (``conv_chunk_bytes``; at least one)."""
        return max(1, self.conv_chunk_bytes // max(1, image_bytes)) if self.conv_chunk_bytes else 2 ** 62

    def _conv2d_chunks(self, x, W2, b, kernel, pad, chunk, scratch, out):
        """Stride-1 ``conv2d`` ``chunk`` images at a time, its columns not kept: each
        chunk's columns, product and output in turn (the same columns, the same dot
        products)."""
        (n, _, h, w), f, k = x.shape, W2.shape[0], W2.shape[1]
        oh, wp = h + 2 * pad[0] - kernel[0] + 1, w + 2 * pad[1]
        run = oh * wp
        cols = self._scratch(scratch, "col_chunk", (k * chunk * run,), x.dtype)
        prods = self._scratch(scratch, "prod_chunk", (f * chunk * run,), x.dtype)
        with blas.one_thread():  # small products, many of them (backends/blas.py)
            for s in range(0, n, chunk):
                m = min(chunk, n - s) * run
                cc, pc = cols[:k * m].reshape(k, m), prods[:f * m].reshape(f, m)
                self._im2col_wide(x[s:s + m // run], *kernel, pad, cc)
                self.matmul(W2, cc, out=pc)
                self._conv_output(pc.reshape(f, m // run, oh, wp), b, out[s:s + m // run])
        return out

    def _conv_output(self, prod, b, out):
        """conv2d's last step: ``out`` (N, F, OH, OW) = the product ``prod`` (F, N, OH, width)
        transposed, its columns past OW dropped, plus the bias ``b`` (None: none)."""
        nchw = prod[:, :, :, :out.shape[3]].transpose(1, 0, 2, 3)
        if b is None:
            out[...] = nchw
        else:
            self.xp.add(nchw, b.reshape(1, -1, 1, 1), out=out)
        return out

    def _im2col_wide(self, x, kh, kw, pad, out):
        """im2col for stride 1 with the columns running over the padded width Wp instead of
        the output's OW: (C*kh*kw, N*OH*Wp), the last Wp - OW columns of each output row
        being windows that wrap into the next row, which the product computes and conv2d
        drops. In exchange, row (c, i, j) of an image is one contiguous run of the padded
        channel from offset i*Wp + j, so the whole gather is one copy with runs of OH*Wp
        values instead of OW: on the CPU faster than ``im2col`` for small maps of many channels,
        and the same for large ones, where writing the columns is the cost (docs/performance.md).
        """
        n, c, h, w = x.shape
        (ph, pw) = pad
        hp, wp = h + 2 * ph, w + 2 * pw
        oh = hp - kh + 1
        plane = hp * wp + kw - 1  # each padded channel, flat, with room for the last row's overhang
        img = self.xp.zeros((n, c, plane), dtype=x.dtype)
        sn, sc, item = img.strides
        as_strided = self.xp.lib.stride_tricks.as_strided  # views for certain (a reshape may copy)
        as_strided(img[:, :, ph * wp + pw:], shape=x.shape, strides=(sn, sc, wp * item, item))[...] = x
        rows = as_strided(img, shape=(c, kh, kw, n, oh * wp), strides=(sc, wp * item, item, sn, item))
        out.reshape(c, kh, kw, n, oh * wp)[...] = rows
        return out

    def _scratch(self, scratch, name, shape, dtype):
        """``scratch(name, shape, dtype)``'s buffer, or a new array where it gives none."""
        buf = scratch(name, shape, dtype) if scratch is not None else None
        return self.xp.empty(shape, dtype=dtype) if buf is None else buf

    def conv2d_backward(self, dout, col, W, x_shape, stride, pad, dW, db, need_dx=True, scratch=None):
        """Writes dW and db in place; returns dx, or None when ``need_dx`` is False.
        ``col`` is what conv2d returned; ``scratch`` as for conv2d."""
        n, f, oh, ow = dout.shape
        width = x_shape[3] + 2 * pad[1] if stride == (1, 1) else ow  # as conv2d's columns ran (_im2col_wide)
        work = self._scratch(scratch, "prod", (f, col.shape[1]), dout.dtype)
        self._product_layout(dout, work.reshape(f, n, oh, width))
        self._weight_grad(work, col, dW.reshape(f, -1))
        work.sum(axis=1, out=db)
        if not need_dx:
            return None
        return self._input_grad(dout, W, x_shape, stride, pad, product=work if width == ow else None,
                                scratch=scratch)

    # dW = dy @ cols.T, an (F, K) product summing over every output pixel of the batch.
    # OpenBLAS runs it 1.1-1.35x faster as cols @ dy.T, transposed, where the K rows of the
    # columns outnumber the F filters (the 3x3 layers of DeepConvNet and of the speedrun),
    # and 0.8-0.95x where they do not (a first layer's K of 9 or 25), on the 2-core EPYC
    # (docs/performance.md). sim takes cpu's choice, so both sum in the same order; False:
    # always dy @ cols.T (cuda, where this was not measured).
    weight_grad_by_columns = True

    def _weight_grad(self, grad, cols, dW2, add=False):
        """dW2 (F, K) = grad (F, M) @ cols.T, the columns (K, M); ``add``: dW2 += it. The
        product is a new (F, K) array either way, so dW2 may be any writable view."""
        f, k = dW2.shape
        if self.weight_grad_by_columns and k > f:
            product = self.matmul(cols, grad.T).T
        else:
            product = self.matmul(grad, cols.T)
        if add:
            dW2 += product
        else:
            dW2[...] = product
        return dW2

    def _product_layout(self, dy, d4):
        """``d4`` (F, N, OH, width) = ``dy`` (N, F, OH, OW) transposed into the product's
        layout, and zero in the columns past OW (the wrapped windows take no part in dW)."""
        ow = dy.shape[3]
        d4[:, :, :, :ow] = dy.transpose(1, 0, 2, 3)
        if d4.shape[3] > ow:
            d4[:, :, :, ow:] = 0

    # A stride-1 input gradient as a convolution of dy (its columns: F*kh*kw rows, N*H*(W+kw-1)
    # values each) or as W.T @ dy and col2im's scatter (C*kh*kw rows of N*OH*OW): the scatter
    # where the convolution's columns are at least this many times larger. Alone, at batch 100
    # on the 2-core EPYC, the scatter took 0.71-0.85x the time for the speedrun's unpadded
    # 32 -> 16 layer (3.4x), 0.72-0.95x for 64-channel 7x7 and 8x8 ones (1.25-1.29x) and
    # 0.75-1.13x where the channels halve (2.3-2.6x), but 1.9-2.3x for DeepConvNet's 16-channel
    # 28x28 layer (1.07x) and 1.2-1.4x for a 32-channel 14x14 one (1.14x). In whole steps 1.2
    # beat 2.0 and None: DeepConvNet 1.07x (the same in the VM's slow stretches), the speedrun
    # 1.02-1.07x (bench/results/cpu-2026-11-29/README.md, session 4). sim takes cpu's value;
    # None: always the convolution (cuda, where this was not measured).
    input_grad_scatter_ratio = 1.2

    def _input_grad_by_convolution(self, dy_shape, W_shape, x_shape, pad) -> bool:
        """Whether a stride-1 input gradient runs as a convolution (``input_grad_scatter_ratio``)."""
        f, c, kh, kw = W_shape
        if not (pad[0] < kh and pad[1] < kw):
            return False
        if self.input_grad_scatter_ratio is None:
            return True
        convolution = f * x_shape[2] * (x_shape[3] + kw - 1)  # x's rows, over dy's padded width
        scatter = c * dy_shape[2] * dy_shape[3]
        return convolution < self.input_grad_scatter_ratio * scatter

    def _input_grad(self, dy, W, x_shape, stride, pad, product=None, scratch=None):
        """dL/dx of a convolution from dL/dy (N, F, OH, OW) (``product``: the same in the
        product's (F, N*OH*OW) layout, if at hand).

        With stride 1 it is itself a convolution, one of dy, padded by kernel - 1 - pad,
        with W flipped and its two channel axes swapped: im2col and one product, like the
        forward pass, instead of W^T @ dy and col2im's kh*kw read-modify-write passes over
        the whole image (faster where the convolution's columns are about as large as
        col2im's: ``input_grad_scatter_ratio``). Other strides, and the layers where the
        scatter moves less, take that second way.
        """
        f, c, kh, kw = W.shape
        (ph, pw) = pad
        dtype = self.xp.result_type(W.dtype, dy.dtype)  # the layers pass one dtype; a direct call may not
        W, dy = W.astype(dtype, copy=False), dy.astype(dtype, copy=False)
        if stride == (1, 1) and self._input_grad_by_convolution(dy.shape, W.shape, x_shape, pad):
            flipped = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
            inner = None if scratch is None else (lambda name, shape, dtype: scratch("dx_" + name, shape, dtype))
            return self._conv2d(dy, flipped, None, (1, 1), (kh - 1 - ph, kw - 1 - pw), inner, None,
                                keep_col=False)[0]
        if product is None:
            product = self._scratch(scratch, "dx_dy", (f, dy.size // f), dy.dtype)
            self._product_layout(dy, product.reshape(f, dy.shape[0], dy.shape[2], dy.shape[3]))
        dtype = self.xp.result_type(dtype, product.dtype)
        cols = self.matmul(W.reshape(f, -1).T, product,
                           out=self._scratch(scratch, "dx_cols", (c * kh * kw, product.shape[1]), dtype))
        return self.col2im(cols, x_shape, kh, kw, stride, pad)

    def conv2d_maxpool(self, x, W, b, stride, pad, size, relu, scratch=None, out=None):
        """Conv2D, ReLU when ``relu``, then max pooling over ``size`` windows that tile the
        convolution's output (stride = size, no pad, size divides it): the book's conv
        block in one pass. Returns y (N, F, OH/gh, OW/gw) and what backward needs.

        im2col lays the columns out place by place in the pooling window (``group``), so
        the product for one place (k) of every window is W @ col[k], an (F, M) array that
        stays in cache: pooling is a running maximum over the gh*gw places, noting in
        ``first`` the place of each window's first maximum (what backward routes by), and
        the full-size product is never stored. Max commutes with adding the channel's bias
        and with ReLU (both monotone, and rounding is monotone too), so those run after
        pooling on a gh*gw times smaller array, exactly as if run before it.
        ``scratch(name, shape, dtype)`` gives a buffer (default: a new array).
        """
        xp, scratch = self.xp, functools.partial(self._scratch, scratch)
        n = x.shape[0]
        f, c, kh, kw = W.shape
        oh, ow = self._conv_geometry(x.shape, kh, kw, stride, pad)
        qh, qw = oh // size[0], ow // size[1]
        m, places = n * qh * qw, size[0] * size[1]
        col = self.im2col(x, kh, kw, stride, pad, out=scratch("col", (c * kh * kw, n * oh * ow), x.dtype),
                          group=size)
        blocks, W2 = col.reshape(places, c * kh * kw, m), W.reshape(f, -1)
        places_type = xp.uint8 if places <= 256 else xp.int32
        pooled, first = scratch("pooled", (f, m), x.dtype), scratch("first", (f, m), places_type)
        self.matmul(W2, blocks[0], out=pooled)
        first[...] = 0
        if places > 1:
            place, better = scratch("place", (f, m), x.dtype), scratch("better", (f, m), bool)
            marks = scratch("marks", (f, m), places_type)
        for k in range(1, places):
            self.matmul(W2, blocks[k], out=place)
            self._running_max(place, pooled, first, k, (better, marks))
        if out is None:
            out = xp.empty((n, f, qh, qw), dtype=x.dtype)
        return self._pooled_output(pooled.reshape(f, n, qh, qw), b, relu, out), (col, first)

    def _running_max(self, place, pooled, first, k, temps):
        """One step of the pooling: ``pooled`` = max(pooled, place), and ``first`` = k where
        place k is strictly greater (a tie keeps the earlier place). ``temps``: a bool and a
        ``first``-typed buffer of the same shape."""
        xp, (better, marks) = self.xp, temps
        xp.greater(place, pooled, out=better)
        xp.maximum(pooled, place, out=pooled)
        xp.multiply(better, k, out=marks, dtype=first.dtype)  # k where place k leads so far:
        xp.maximum(first, marks, out=first)                   # later places have larger k

    def _pooled_output(self, pooled, b, relu, out):
        """``out`` (N, F, QH, QW) = ``pooled`` (F, N, QH, QW) transposed plus the bias, then
        ReLU when ``relu``."""
        xp = self.xp
        xp.add(pooled.transpose(1, 0, 2, 3), b.reshape(1, -1, 1, 1), out=out)
        if relu:
            xp.maximum(out, 0, out=out)
        return out

    def conv2d_maxpool_backward(self, dout, y, saved, x_shape, W, stride, pad, size, relu, dW, db,
                                need_dx=True, scratch=None):
        """Backward of ``conv2d_maxpool`` (``saved`` is what it returned besides y): writes
        dW and db; returns dx, or None when ``need_dx`` is False. Each window's gradient,
        through ReLU's mask, goes to its first maximum in row-major window order, as
        MaxPool2D's does; dW sums one product per place, so no full-size gradient of the
        product is stored unless dx is needed (``_input_grad``)."""
        xp, buffers = self.xp, scratch
        scratch = functools.partial(self._scratch, buffers)
        n, f, qh, qw = dout.shape
        m, places = n * qh * qw, size[0] * size[1]
        col, first = saved
        blocks, dW2 = col.reshape(places, W.size // f, m), dW.reshape(f, -1)
        d = scratch("d", (f, m), dout.dtype)  # dout in the product's layout, through ReLU
        self._relu_grad_product(dout, y if relu else None, d.reshape(f, n, qh, qw), scratch)
        d.sum(axis=1, out=db)
        # dL/dy in NCHW, for dx: each window's gradient at its first maximum, zero elsewhere
        dy = xp.empty((n, f, qh * size[0], qw * size[1]), dtype=dout.dtype) if need_dx else None
        hit, dk = scratch("hit", (f, m), bool), scratch("dk", (f, m), dout.dtype)
        for k in range(places):
            self._place_grad(d, first, k, size, (hit, dk), dy)
            self._weight_grad(dk, blocks[k], dW2, add=k > 0)
        if not need_dx:
            return None
        return self._input_grad(dy, W, x_shape, stride, pad, scratch=buffers)

    def _relu_grad_product(self, dout, y, d4, scratch):
        """``d4`` (F, N, QH, QW) = ``dout`` (N, F, QH, QW) transposed, times ReLU's mask y > 0
        when ``y`` is given."""
        d_nchw = d4.transpose(1, 0, 2, 3)
        if y is None:
            d_nchw[...] = dout
        else:
            self.xp.multiply(dout, self.xp.greater(y, 0, out=scratch("positive", y.shape, bool)), out=d_nchw)

    def _place_grad(self, d, first, k, size, temps, dy):
        """The gradient of place k of every pooling window: d where ``first`` is k, else
        d * 0, into ``temps``' second buffer (F, M) and, when ``dy`` (N, F, OH, OW) is given,
        into place k's pixels of dy. ``temps``: a bool and a d-typed buffer like ``d``."""
        hit, dk = temps
        self.xp.equal(first, k, out=hit)
        self.xp.multiply(d, hit, out=dk)
        if dy is not None:
            self._scatter_place(dk, k, size, dy)

    @staticmethod
    def _scatter_place(dk, k, size, dy):
        """Place k's gradient ``dk`` (F, N*QH*QW) into its pixels of dy (N, F, QH*gh, QW*gw)."""
        (gh, gw), (n, f, oh, ow) = size, dy.shape
        a, b = divmod(k, gw)
        dy[:, :, a::gh, b::gw] = dk.reshape(f, n, oh // gh, ow // gw).transpose(1, 0, 2, 3)
