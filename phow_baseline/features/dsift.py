"""Dense SIFT as VLFeat computes it in its fast (flat-window) mode, in Numba.

This follows ``vl/dsift.c`` of VLFeat 0.9.21 (``vl_dsift_process`` with
``useFlatWindow``) and the MATLAB/Python wrappers' conventions:

1. Gradients by central differences (one-sided at the border), modulus
   ``sqrt(gx^2 + gy^2)`` (0 below ``1e-8``) and angle by VLFeat's
   ``vl_fast_atan2_f`` polynomial; the angle, taken modulo 2 pi, is split
   linearly between the two nearest of 8 orientation bins.  The 8
   orientation planes are computed a row at a time into a ring of
   ``2 bin_size + 1`` rows, from which step 2 filters them along y as soon
   as its rows exist: they are never stored whole.
2. Each plane is filtered by a separable triangular kernel of half-width
   ``bin_size`` and unit height (``1 - |d| / bin_size``, replicate padding):
   the bilinear spatial binning of SIFT.  Only the rows and columns where
   a spatial bin centre falls are computed.
3. Each of the 4x4 spatial bins is re-weighted by the mean, over its
   support, of a Gaussian window of standard deviation
   ``window_size * bin_size`` centred on the descriptor (VLFeat's
   ``_vl_dsift_get_bin_window_mean``), in place of a per-pixel Gaussian.
4. The contrast ("norm") of a descriptor is the sum of its 128 entries
   divided by the frame area ``(3 bin_size + 1)^2``, taken before
   normalization; the descriptor is L2-normalized (+ float epsilon),
   clamped at 0.2 and normalized again.
5. The 128 entries are ordered ``index = t + 8 x + 32 y`` (orientation
   bin ``t`` of the angle ``atan2(gy, gx)`` in image axes, x to the right
   and y down; spatial bin ``x`` left to right, ``y`` top to bottom), which
   is exactly the order cyvlfeat's ``dsift`` returns for a row-major numpy
   image (VLFeat's transposition for MATLAB's column-major images cancels
   out there).  ``uint8`` output is ``min(512 d, 255)`` truncated, as
   VLFeat casts it.

Frames are the descriptor centres in 0-based pixel coordinates: the
top-left descriptor's top-left bin centre sits on ``(bounds.xmin,
bounds.ymin)`` and its centre 1.5 bins further; frames step by ``step``
pixels while the whole 4x4 grid of bin centres stays inside the bounds.

Speed.  Numba leaves LLVM's SLP vectoriser off, so a loop over the 8
orientations alone stays scalar; every hot loop here runs instead over a
long contiguous run of floats: the gradient angles and moduli a row at a
time (branch-free ``vl_fast_atan2_f``), the y filter over whole rows of
``W x 8`` floats (written x-major), the x filter over whole columns of
``R x 8`` floats, and the assembly over the 16 spatial bins of a line of
up to 128 frames at once (block-major scratch; each spatial bin's 8
``uint8`` are moved as one 64-bit word; the sums for the contrast and the
first norm use that the Gaussian bin weights are separable, so that each
row of bins is summed once for the 4 lines of frames that use it).  Indices into the hot loops are
slices or loop counters, so that Numba's negative-index wraparound
does not block vectorisation.  Memory: the orientation planes live only
in a ring of rows (fused with the y filter), the filters' outputs in a
per-thread scratch reused from call to call, and the transposed writes
(filtered rows, descriptors) go a block of rows or a whole descriptor at
a time, not one 32- or 8-byte piece per page.

One concept at this length: VLFeat's dense SIFT (its kernels, geometry and the
fast uint8 assembly).
"""

from __future__ import annotations

import functools
import math
import threading

import numba
import numpy as np

#: SIFT geometry: 4 x 4 spatial bins x 8 orientations = 128 (VLFeat's default).
NUM_BIN_X = 4
NUM_BIN_Y = 4
NUM_BIN_T = 8
DESCRIPTOR_SIZE = NUM_BIN_X * NUM_BIN_Y * NUM_BIN_T
#: Gaussian window size in units of the bin size (``vl_dsift``'s default 2;
#: ``vl_phow`` passes 1.5).
DEFAULT_WINDOW_SIZE = 2.0
#: Clamp of the normalized descriptor entries (Lowe's 0.2).
CLAMP = 0.2
#: float32 machine epsilon (VLFeat's ``VL_EPSILON_F``), added before the first normalization.
_EPS_F = np.float32(1.19209290e-07)
#: Output rows of the fused y filter written out (transposed) together.
_ROW_BLOCK = 8
#: Frames per chunk in the descriptor assembly (128 frames: a whole line of frames of a 256 px image in one chunk,
#: 16 KiB of uint8 scratch and 4 x 4 KiB of float scratch).
_CHUNK = 128
#: Block of the 4x4 spatial bins in the descriptor when the assembly's
#: outer axis is the image's x axis: loop bin (a, o) = (y bin, x bin) is
#: descriptor block ``a + 4 o`` (x fastest, see the module docstring).
_BLKPOS_T = np.array([a // NUM_BIN_X + NUM_BIN_X * (a % NUM_BIN_X) for a in range(NUM_BIN_X * NUM_BIN_Y)], np.int64)


# --------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _fast_atan2(y, x):
    """VLFeat's ``vl_fast_atan2_f``: a cubic in r, error below 0.005 rad.

    Written with both branches evaluated and selected, so that a loop of
    it vectorises.
    """
    c3 = np.float32(0.1821)
    c1 = np.float32(0.9675)
    abs_y = abs(y) + _EPS_F
    pos = x >= 0
    r_pos = (x - abs_y) / (x + abs_y)
    r_neg = (x + abs_y) / (abs_y - x)
    r = r_pos if pos else r_neg
    angle = np.float32(math.pi / 4) if pos else np.float32(3 * math.pi / 4)
    angle += (c3 * r * r - c1) * r
    return -angle if y < 0 else angle


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _angle_modulus(gx, gy, nt, mod):
    """Orientation in bins ``nt = (atan2(gy, gx) mod 2 pi) 8 / 2 pi`` and modulus
    ``sqrt(gx^2 + gy^2)`` (0 below 1e-8) of a row of gradients; one vectorised loop.
    """
    two_pi = np.float32(2 * math.pi)
    k = np.float32(NUM_BIN_T / (2 * math.pi))
    for x in range(gx.shape[0]):
        angle = _fast_atan2(gy[x], gx[x])
        angle = angle + two_pi if angle < 0 else angle
        nt[x] = angle * k
        m2 = gx[x] * gx[x] + gy[x] * gy[x]
        mod[x] = np.float32(0.0) if m2 < 1e-8 else np.float32(math.sqrt(m2))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _planes_row(im, y, gx, gy, nt, mod, o):
    """Row ``y`` of :func:`orientation_planes` into ``o`` (``W x 8`` floats, x-major);
    ``gx, gy, nt, mod`` are ``W``-float scratch rows (``gx`` zero-initialised for ``W == 1``).
    """
    H, W = im.shape
    half = np.float32(0.5)
    row = im[y]
    ra = im[min(y + 1, H - 1)]
    rb = im[max(y - 1, 0)]
    fy = half if (y > 0 and y < H - 1) else np.float32(1.0)
    if H == 1:
        fy = np.float32(0.0)
    for x in range(W):
        gy[x] = fy * (ra[x] - rb[x])
    if W > 1:
        for x in range(1, W - 1):
            gx[x] = half * (row[x + 1] - row[x - 1])
        gx[0] = row[1] - row[0]
        gx[W - 1] = row[W - 1] - row[W - 2]
    _angle_modulus(gx, gy, nt, mod)
    o[:] = 0.0
    for x in range(W):
        b = int(nt[x])
        r = nt[x] - np.float32(b)
        o[NUM_BIN_T * x + b % NUM_BIN_T] = (np.float32(1.0) - r) * mod[x]
        o[NUM_BIN_T * x + (b + 1) % NUM_BIN_T] += r * mod[x]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def orientation_planes(im, out):
    """Split gradient moduli into 8 orientation planes: ``out[y, x, t]``.

    The orientation is innermost so that the filters and the descriptor
    assembly read the 8 bins of a position from one cache line.  Central
    differences inside, one-sided on the border rows and columns.  The
    angle ``nt`` (in bins) is split linearly between bins ``floor(nt)``
    and ``floor(nt) + 1`` (mod 8), as VLFeat does.  Gradients, angles and
    moduli are computed a row at a time in vectorised loops; only the
    final two writes per pixel are scalar.

    Parameters
    ----------
    im : (H, W) float32 array
        Grey image, intensities in [0, 1] (:func:`as_float_image`).
    out : (H, W, 8) float32 array, C-contiguous
        Overwritten with the gradient modulus (intensity per pixel) split over
        the 8 orientation bins.
    """
    H, W = im.shape
    gx = np.zeros(W, np.float32)
    gy = np.empty(W, np.float32)
    nt = np.empty(W, np.float32)
    mod = np.empty(W, np.float32)
    O = out.reshape(H, W * NUM_BIN_T)
    for y in range(H):
        _planes_row(im, y, gx, gy, nt, mod, O[y])


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _tri_row(ring, y, H, b, buf):
    """:func:`_filter_rows`' y filter of output row ``y`` into ``buf``, from a ring of
    plane rows (plane row ``v`` in slot ``v % len(ring)``).
    """
    NR = ring.shape[0]
    src = ring[y % NR]
    for q in range(buf.shape[0]):
        buf[q] = src[q]
    for d in range(1, b):
        w = np.float32(b - d) / np.float32(b)
        pa = ring[min(y + d, H - 1) % NR]
        pb = ring[max(y - d, 0) % NR]
        for q in range(buf.shape[0]):
            buf[q] += w * (pa[q] + pb[q])


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _planes_filter_rows(im, rows, b, out):
    """:func:`orientation_planes` fused with :func:`_filter_rows`: ``out[x, i, t]`` from the image.

    The orientation planes are computed a row at a time, in increasing
    ``y``, into a ring of ``2 b + 1`` rows (each row once), and each
    output row is filtered from the ring as soon as its last input row
    exists: the ``H x W x 8`` planes are never written to memory and read
    back (at 1024 x 1024, 32 MiB per scale).
    Same formulas as :func:`orientation_planes` then :func:`_filter_rows`
    (planes without fastmath, the filter with it, as there); LLVM compiles
    the filter loop a little differently here, so the two agree to float
    rounding (1 ulp of the filtered planes, checked by ``tests/test_dsift.py``),
    not bit for bit.
    """
    H, W = im.shape
    WT = W * NUM_BIN_T
    NR = 2 * b + 1
    ring = np.empty((NR, WT), np.float32)
    gx = np.zeros(W, np.float32)
    gy = np.empty(W, np.float32)
    nt = np.empty(W, np.float32)
    mod = np.empty(W, np.float32)
    blk = np.empty((_ROW_BLOCK, WT), np.float32)
    blk64 = blk.view(np.uint64)  # (_ROW_BLOCK, W * 4)
    out64 = out.reshape(-1).view(np.uint64)  # (W * R * 4,) of out[x, i, t]
    R = out.shape[1]
    done = 0  # rows [0, done) of the planes have been computed (the last NR of them are in the ring)
    for i0 in range(0, rows.shape[0], _ROW_BLOCK):
        nr = min(_ROW_BLOCK, rows.shape[0] - i0)
        for r in range(nr):
            y = rows[i0 + r]
            last = min(y + b - 1, H - 1)
            if done < max(y - b + 1, 0):
                done = max(y - b + 1, 0)  # rows no output reads are skipped
            while done <= last:
                _planes_row(im, done, gx, gy, nt, mod, ring[done % NR])
                done += 1
            _tri_row(ring, y, H, b, blk[r])
        # transposed write, a block of output rows at a time: for each x, the block's rows are
        # 32 nr contiguous bytes of out (one row at a time would store 32 bytes per page)
        for x in range(W):
            q = 4 * (x * R + i0)
            for r in range(nr):
                out64[q] = blk64[r, 4 * x]
                out64[q + 1] = blk64[r, 4 * x + 1]
                out64[q + 2] = blk64[r, 4 * x + 2]
                out64[q + 3] = blk64[r, 4 * x + 3]
                q += 4


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _filter_rows(planes, rows, b, out):
    """Triangular filter (unit height, half-width b, replicate padding) along y,
    at the given rows, written transposed: ``planes[y, x, t]`` -> ``out[x, i, t]``.

    Each output row is filtered in one vectorised pass over ``W x 8``
    floats, then scattered into the x-major output 8 floats (two 64-bit
    words... four) at a time, so that the x filter also runs over long
    contiguous rows.
    """
    H, W, T = planes.shape
    WT = W * T
    P = planes.reshape(H, WT)
    buf = np.empty(WT, np.float32)
    buf64 = buf.view(np.uint64)  # (W * 4,)
    out64 = out.reshape(-1).view(np.uint64)  # (W * R * 4,) of out[x, i, t]
    R = out.shape[1]
    for i in range(rows.shape[0]):
        y = rows[i]
        src = P[y]
        for q in range(WT):
            buf[q] = src[q]
        for d in range(1, b):
            w = np.float32(b - d) / np.float32(b)
            pa = P[min(y + d, H - 1)]
            pb = P[max(y - d, 0)]
            for q in range(WT):
                buf[q] += w * (pa[q] + pb[q])
        q = 4 * i
        for x in range(W):
            out64[q] = buf64[4 * x]
            out64[q + 1] = buf64[4 * x + 1]
            out64[q + 2] = buf64[4 * x + 2]
            out64[q + 3] = buf64[4 * x + 3]
            q += 4 * R


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _filter_cols(frt, cols, b, out):
    """The same filter along x at the given columns: ``frt[x, i, t]`` -> ``out[j, i, t]``,
    one vectorised pass over ``R x 8`` floats per tap.
    """
    W = frt.shape[0]
    RT = frt.shape[1] * frt.shape[2]
    Fr = frt.reshape(W, RT)
    O = out.reshape(out.shape[0], RT)
    for j in range(cols.shape[0]):
        x = cols[j]
        o = O[j]
        src = Fr[x]
        for q in range(RT):
            o[q] = src[q]
        for d in range(1, b):
            w = np.float32(b - d) / np.float32(b)
            pa = Fr[min(x + d, W - 1)]
            pb = Fr[max(x - d, 0)]
            for q in range(RT):
                o[q] += w * (pa[q] + pb[q])


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _scaled_copy_acc(r, src, w, acc, sq):
    """``r = w src[:len(r)]``; ``acc += r``; ``sq += r^2`` (one vectorised loop)."""
    for p in range(r.shape[0]):
        v = w * src[p]
        r[p] = v
        acc[p] += v
        sq[p] += v * v


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _assemble(
    binned, wbin, sb, bb, nfx, nfy, ks_outer, ks_inner, blkpos, frame_area, threshold, float_out, desc_f, desc_u8, norms
):
    """Gather 4x4x8 bins per frame, contrast, normalize-clamp-normalize, convert.

    ``binned[i, j, t]``: filtered planes at the grid positions i (outer
    axis) and j (inner axis) (in steps of ``g``); frame (fxi, fyi)'s bin
    (bx, by) is at ``i = fyi sb + by bb``, ``j = fxi sb + bx bb`` (here
    ``y`` names the outer axis, which :func:`dsift` makes the image's x
    axis).  Frame (fxi, fyi) is descriptor ``fyi ks_outer + fxi
    ks_inner``; spatial bin ``bx + 4 by`` goes to block ``blkpos[bx + 4
    by]`` of the 16 blocks of 8 orientations.  Descriptors of contrast
    below ``threshold`` are written as zeros (PHOW's contrast threshold;
    pass -1 to keep all).

    A line of frames (fixed outer index) is processed at once in a block-major scratch
    ``raw[bin, frame * 8 + t]``: each spatial bin of the whole row is then
    one contiguous run of ``8 nfx`` floats (when ``sb == 1``), so that
    LLVM's loop vectoriser handles the gather, the sums and the
    normalizations (Numba leaves the SLP vectoriser off, so loops over the
    8 orientations alone stay scalar).  The 8 orientation bytes of a
    spatial bin are moved into the descriptor as one 64-bit word.
    """
    nb = NUM_BIN_X * NUM_BIN_Y
    CH = min(nfx, _CHUNK)  # frames per chunk: the scratch stays in L1
    F = CH * NUM_BIN_T
    C = binned.shape[1]
    flat = binned.reshape(binned.shape[0], C * NUM_BIN_T)
    raw = np.empty((nb, F), np.float32)
    acc = np.empty(F, np.float32)
    sq = np.empty(F, np.float32)
    scale = np.empty(F, np.float32)
    tmp = np.empty((nb, F), np.uint8)
    tmp64 = tmp.view(np.uint64)  # (nb, CH)
    if not float_out:
        desc64 = desc_u8.view(np.uint64)  # (n, nb)
    inv_area = np.float32(1.0) / frame_area
    top = np.float32(1.0) if float_out else np.float32(512.0)
    for fyi in range(nfy):
        k0 = fyi * ks_outer
        for c0 in range(0, nfx, CH):
            nc = min(CH, nfx - c0)
            Fc = nc * NUM_BIN_T
            acc[:Fc] = 0.0
            sq[:Fc] = 0.0
            for by in range(NUM_BIN_Y):
                i = fyi * sb + by * bb
                src = flat[i]
                for bx in range(NUM_BIN_X):
                    w = wbin[by, bx]
                    r = raw[bx + by * NUM_BIN_X]
                    if sb == 1:
                        # a slice, so that indices are provably >= 0 (no wraparound select)
                        _scaled_copy_acc(r[:Fc], src[(c0 + bx * bb) * NUM_BIN_T :], w, acc, sq)
                    else:
                        for f in range(nc):
                            base = ((c0 + f) * sb + bx * bb) * NUM_BIN_T
                            for t in range(NUM_BIN_T):
                                v = w * src[base + t]
                                p = f * NUM_BIN_T + t
                                r[p] = v
                                acc[p] += v
                                sq[p] += v * v
            # contrast, first L2 normalization (VLFeat adds FLT_EPSILON)
            for f in range(nc):
                m = np.float32(0.0)
                s = np.float32(0.0)
                for t in range(NUM_BIN_T):
                    m += acc[f * NUM_BIN_T + t]
                    s += sq[f * NUM_BIN_T + t]
                norms[k0 + (c0 + f) * ks_inner] = m * inv_area
                inv = np.float32(1.0) / (np.float32(math.sqrt(s)) + _EPS_F)
                for t in range(NUM_BIN_T):
                    scale[f * NUM_BIN_T + t] = inv
            # clamp at 0.2
            sq[:Fc] = 0.0
            for b in range(nb):
                r = raw[b]
                for p in range(Fc):
                    v = min(r[p] * scale[p], np.float32(CLAMP))
                    r[p] = v
                    sq[p] += v * v
            # second normalization (x 512 for uint8); low contrast -> 0
            for f in range(nc):
                s = np.float32(0.0)
                for t in range(NUM_BIN_T):
                    s += sq[f * NUM_BIN_T + t]
                inv = top / (np.float32(math.sqrt(s)) + _EPS_F)
                if norms[k0 + (c0 + f) * ks_inner] < threshold:
                    inv = np.float32(0.0)
                for t in range(NUM_BIN_T):
                    scale[f * NUM_BIN_T + t] = inv
            if float_out:
                for f in range(nc):
                    k = k0 + (c0 + f) * ks_inner
                    for b in range(nb):
                        for t in range(NUM_BIN_T):
                            desc_f[k, blkpos[b] * NUM_BIN_T + t] = raw[b, f * NUM_BIN_T + t] * scale[f * NUM_BIN_T + t]
            else:
                for b in range(nb):
                    r = raw[b]
                    o = tmp[b]
                    for p in range(Fc):
                        o[p] = np.uint8(np.int32(min(r[p] * scale[p], np.float32(255.0))))
                for f in range(nc):
                    k = k0 + (c0 + f) * ks_inner
                    for b in range(nb):
                        desc64[k, blkpos[b]] = tmp64[b, f]


# Fast path of the assembly (uint8 output, frames one grid step apart: ``sb == 1``).
# Each pass after the first (row sums, see _assemble_uint8) reads the 16
# spatial bins of a chunk of frames as 16 contiguous
# runs (one argument each, so that the loop over ``p`` = frame x 8 + t is
# one vectorised loop with the 16 bins unrolled in its body) and keeps the
# per-entry sums in registers instead of re-reading scratch arrays 16 times.


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy", inline="always")
def _sum16(v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15):
    return (((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7))) + (
        ((v8 + v9) + (v10 + v11)) + ((v12 + v13) + (v14 + v15))
    )


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _pass_clamped_sq(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15, w, scale, sq, n):
    """sq[p] = sum_b min(w_b s_b[p] scale[p], CLAMP)^2: the norm after clamping."""
    c = np.float32(CLAMP)
    w0, w1, w2, w3, w4, w5, w6, w7 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
    w8, w9, w10, w11, w12, w13, w14, w15 = w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15]
    for p in range(n):
        k = scale[p]
        v0, v1, v2, v3 = min(w0 * s0[p] * k, c), min(w1 * s1[p] * k, c), min(w2 * s2[p] * k, c), min(w3 * s3[p] * k, c)
        v4, v5, v6, v7 = min(w4 * s4[p] * k, c), min(w5 * s5[p] * k, c), min(w6 * s6[p] * k, c), min(w7 * s7[p] * k, c)
        v8, v9 = min(w8 * s8[p] * k, c), min(w9 * s9[p] * k, c)
        v10, v11 = min(w10 * s10[p] * k, c), min(w11 * s11[p] * k, c)
        v12, v13 = min(w12 * s12[p] * k, c), min(w13 * s13[p] * k, c)
        v14, v15 = min(w14 * s14[p] * k, c), min(w15 * s15[p] * k, c)
        sq[p] = _sum16(
            v0 * v0,
            v1 * v1,
            v2 * v2,
            v3 * v3,
            v4 * v4,
            v5 * v5,
            v6 * v6,
            v7 * v7,
            v8 * v8,
            v9 * v9,
            v10 * v10,
            v11 * v11,
            v12 * v12,
            v13 * v13,
            v14 * v14,
            v15 * v15,
        )


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _pass_uint8(src, w, scale1, scale2, out, n):
    """out[p] = uint8(min(min(w src[p] scale1[p], CLAMP) scale2[p], 255)) for one spatial bin."""
    c = np.float32(CLAMP)
    top = np.float32(255.0)
    for p in range(n):
        out[p] = np.uint8(np.int32(min(min(w * src[p] * scale1[p], c) * scale2[p], top)))


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _frame_sums(a, out, n):
    """out[f] = a[8 f] + ... + a[8 f + 7] for f < n (the 8 orientations of a frame)."""
    for f in range(n):
        q = NUM_BIN_T * f
        out[f] = ((a[q] + a[q + 1]) + (a[q + 2] + a[q + 3])) + ((a[q + 4] + a[q + 5]) + (a[q + 6] + a[q + 7]))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _repeat8(v, out, n):
    """out[8 f + t] = v[f] for t < 8, f < n."""
    for f in range(n):
        x = v[f]
        q = NUM_BIN_T * f
        out[q], out[q + 1], out[q + 2], out[q + 3] = x, x, x, x
        out[q + 4], out[q + 5], out[q + 6], out[q + 7] = x, x, x, x


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _row_sums(s0, s1, s2, s3, w, a, q, n):
    """a[p] = sum_i w_i s_i[p]; q[p] = sum_i (w_i s_i[p])^2 over the 4 spatial bins of a row."""
    w0, w1, w2, w3 = w[0], w[1], w[2], w[3]
    for p in range(n):
        v0, v1, v2, v3 = w0 * s0[p], w1 * s1[p], w2 * s2[p], w3 * s3[p]
        a[p] = (v0 + v1) + (v2 + v3)
        q[p] = (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _col_sums(a0, a1, a2, a3, q0, q1, q2, q3, w, acc, sq, n):
    """acc[p] = sum_i w_i a_i[p]; sq[p] = sum_i w_i^2 q_i[p]: :func:`_row_sums` of 4 rows combined."""
    w0, w1, w2, w3 = w[0], w[1], w[2], w[3]
    u0, u1, u2, u3 = w0 * w0, w1 * w1, w2 * w2, w3 * w3
    for p in range(n):
        acc[p] = (w0 * a0[p] + w1 * a1[p]) + (w2 * a2[p] + w3 * a3[p])
        sq[p] = (u0 * q0[p] + u1 * q1[p]) + (u2 * q2[p] + u3 * q3[p])


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _assemble_uint8(binned, wbin, wm, bb, nfx, nfy, ks_outer, ks_inner, blkpos, frame_area, threshold, desc_u8, norms):
    """:func:`_assemble` for uint8 output with ``sb == 1`` (frames one grid step apart), faster.

    Same arithmetic as :func:`_assemble` (sums in another order), in three
    vectorised passes over a chunk of frames: the sums and squared sums of
    the weighted bins (contrast, first norm), the squared sum after the
    clamp (second norm), and the uint8 conversion, bin by bin.

    The first pass uses that the bin weights are separable, ``wbin[a, o] =
    wm[a] wm[o]`` (the Gaussian window's mean per bin along each axis): the
    weighted sums (and squared sums) over the 4 bins of a row, for every
    frame of a line, are computed once per row of ``binned`` (kept in a ring
    of ``3 bb + 1`` rows), each row then serving the 4 lines of frames whose
    bins lie on it; a line combines 4 such rows instead of 16 bins (about
    half the arithmetic of that pass).
    """
    nb = NUM_BIN_X * NUM_BIN_Y
    CH = min(nfx, _CHUNK)
    F = CH * NUM_BIN_T
    flat = binned.reshape(binned.shape[0], binned.shape[1] * NUM_BIN_T)
    w = np.empty(nb, np.float32)
    for by in range(NUM_BIN_Y):
        for bx in range(NUM_BIN_X):
            w[bx + NUM_BIN_X * by] = wbin[by, bx]
    # weighted row sums: ring slot R % NR holds (sum, squared sum) over the 4 bins of row R for each
    # frame of the chunk
    NR = 3 * bb + 1
    ring_a = np.empty((NR, F), np.float32)
    ring_q = np.empty((NR, F), np.float32)
    d1, d2, d3 = bb * NUM_BIN_T, 2 * bb * NUM_BIN_T, 3 * bb * NUM_BIN_T
    acc = np.empty(F, np.float32)
    sq = np.empty(F, np.float32)
    fsum = np.empty(CH, np.float32)
    fval = np.empty(CH, np.float32)
    scale1 = np.empty(F, np.float32)
    scale2 = np.empty(F, np.float32)
    tmp = np.empty((nb, F), np.uint8)
    tmp64 = tmp.view(np.uint64)  # (nb, CH)
    desc64 = desc_u8.reshape(-1).view(np.uint64)  # (n * nb,)
    inv_area = np.float32(1.0) / frame_area
    top = np.float32(512.0)
    for c0 in range(0, nfx, CH):
        nc = min(CH, nfx - c0)
        Fc = nc * NUM_BIN_T
        o0, o1, o2, o3 = c0 * NUM_BIN_T, (c0 + bb) * NUM_BIN_T, (c0 + 2 * bb) * NUM_BIN_T, (c0 + 3 * bb) * NUM_BIN_T
        for R in range(3 * bb):
            row = flat[R][o0:]
            _row_sums(row, row[d1:], row[d2:], row[d3:], wm, ring_a[R % NR], ring_q[R % NR], Fc)
        for fyi in range(nfy):
            k0 = fyi * ks_outer
            R = fyi + 3 * bb  # the one new row of this line (rows fyi + by bb, by < 3, are in the ring)
            row = flat[R][o0:]
            _row_sums(row, row[d1:], row[d2:], row[d3:], wm, ring_a[R % NR], ring_q[R % NR], Fc)
            a0, a1, a2, a3 = ring_a[fyi % NR], ring_a[(fyi + bb) % NR], ring_a[(fyi + 2 * bb) % NR], ring_a[R % NR]
            q0, q1, q2, q3 = ring_q[fyi % NR], ring_q[(fyi + bb) % NR], ring_q[(fyi + 2 * bb) % NR], ring_q[R % NR]
            r0, r1, r2, r3 = flat[fyi], flat[fyi + bb], flat[fyi + 2 * bb], flat[fyi + 3 * bb]
            # spatial bin bx + 4 by (by: outer axis) starts at row fyi + by bb, column c0 + bx bb
            s0, s1, s2, s3 = r0[o0:], r0[o1:], r0[o2:], r0[o3:]
            s4, s5, s6, s7 = r1[o0:], r1[o1:], r1[o2:], r1[o3:]
            s8, s9, s10, s11 = r2[o0:], r2[o1:], r2[o2:], r2[o3:]
            s12, s13, s14, s15 = r3[o0:], r3[o1:], r3[o2:], r3[o3:]
            _col_sums(a0, a1, a2, a3, q0, q1, q2, q3, wm, acc, sq, Fc)
            # contrast and first L2 normalization (VLFeat adds FLT_EPSILON)
            _frame_sums(acc, fsum, nc)
            for f in range(nc):
                norms[k0 + (c0 + f) * ks_inner] = fsum[f] * inv_area
            _frame_sums(sq, fsum, nc)
            for f in range(nc):
                fval[f] = np.float32(1.0) / (np.float32(math.sqrt(fsum[f])) + _EPS_F)
            _repeat8(fval, scale1, nc)
            # clamp at 0.2, second normalization (x 512 for uint8); low contrast -> 0
            _pass_clamped_sq(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15, w, scale1, sq, Fc)
            _frame_sums(sq, fsum, nc)
            for f in range(nc):
                inv = top / (np.float32(math.sqrt(fsum[f])) + _EPS_F)
                fval[f] = np.float32(0.0) if norms[k0 + (c0 + f) * ks_inner] < threshold else inv
            _repeat8(fval, scale2, nc)
            _pass_uint8(s0, w[0], scale1, scale2, tmp[0], Fc)
            _pass_uint8(s1, w[1], scale1, scale2, tmp[1], Fc)
            _pass_uint8(s2, w[2], scale1, scale2, tmp[2], Fc)
            _pass_uint8(s3, w[3], scale1, scale2, tmp[3], Fc)
            _pass_uint8(s4, w[4], scale1, scale2, tmp[4], Fc)
            _pass_uint8(s5, w[5], scale1, scale2, tmp[5], Fc)
            _pass_uint8(s6, w[6], scale1, scale2, tmp[6], Fc)
            _pass_uint8(s7, w[7], scale1, scale2, tmp[7], Fc)
            _pass_uint8(s8, w[8], scale1, scale2, tmp[8], Fc)
            _pass_uint8(s9, w[9], scale1, scale2, tmp[9], Fc)
            _pass_uint8(s10, w[10], scale1, scale2, tmp[10], Fc)
            _pass_uint8(s11, w[11], scale1, scale2, tmp[11], Fc)
            _pass_uint8(s12, w[12], scale1, scale2, tmp[12], Fc)
            _pass_uint8(s13, w[13], scale1, scale2, tmp[13], Fc)
            _pass_uint8(s14, w[14], scale1, scale2, tmp[14], Fc)
            _pass_uint8(s15, w[15], scale1, scale2, tmp[15], Fc)
            # each spatial bin's 8 bytes are one 64-bit word of the descriptor; one descriptor after
            # the other (its 16 words on one page), not one bin after the other: consecutive frames
            # of a chunk are ks_inner descriptors apart (a page or more), and 16 passes over a chunk's
            # descriptors would miss the TLB at every store
            q = (k0 + c0 * ks_inner) * nb
            for f in range(nc):
                for b in range(nb):
                    desc64[q + blkpos[b]] = tmp64[b, f]
                q += ks_inner * nb


@numba.njit(cache=True, nogil=True)
def _write_frames(out, x0, y0, step, nfx, nfy, norms):
    """out[k, :3] = (x, y, contrast) of frame k = fxi + nfx fyi; x = x0 + step fxi (y alike)."""
    for fyi in range(nfy):
        y = y0 + step * fyi
        for fxi in range(nfx):
            k = fxi + nfx * fyi
            out[k, 0] = x0 + step * fxi
            out[k, 1] = y
            out[k, 2] = norms[k]


# --------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------


def bin_window_mean(bin_size: int, num_bins: int, bin_index: int, window_size: float) -> np.float32:
    """Mean of the Gaussian window over one spatial bin's support (VLFeat's
    ``_vl_dsift_get_bin_window_mean``), float32 arithmetic as in C.

    The window is ``exp(-(x - delta)^2 / 2 sigma^2)`` with ``sigma = window_size bin_size``
    and the bin centre ``delta = bin_size (bin_index - (num_bins - 1) / 2)`` relative to
    the descriptor centre, averaged over the ``2 bin_size - 1`` integer offsets of the
    bin's triangular support.

    Parameters
    ----------
    bin_size : int
        Side of a spatial bin in pixels.
    num_bins : int
        Spatial bins along the axis (4 for SIFT).
    bin_index : int
        The bin, 0-based, in ``[0, num_bins)``.
    window_size : float
        Window standard deviation in bins.

    Returns
    -------
    numpy.float32
        The mean window value over the bin, in (0, 1].
    """
    delta = np.float32(bin_size) * np.float32(bin_index - 0.5 * (num_bins - 1))
    sigma = np.float32(bin_size) * np.float32(window_size)
    x = np.arange(-bin_size + 1, bin_size, dtype=np.float32)
    z = (x - delta) / sigma
    acc = np.float32(0.0)
    for v in np.exp(np.float32(-0.5) * z * z).astype(np.float32):
        acc = np.float32(acc + v)
    return np.float32(acc / np.float32(2 * bin_size - 1))


@functools.lru_cache(maxsize=64)
def _bin_means(b: int, window_size: float) -> np.ndarray:
    """Window mean of each of the 4 spatial bins along one axis (x and y alike).

    :func:`_bin_weights` is their outer product (the same float32 products).
    """
    m = np.array([bin_window_mean(b, NUM_BIN_X, i, window_size) for i in range(NUM_BIN_X)], np.float32)
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=64)
def _bin_weights(b: int, window_size: float) -> np.ndarray:
    """Window mean of each of the 4x4 spatial bins, times VLFeat's unit-height factors."""
    w = np.empty((NUM_BIN_Y, NUM_BIN_X), np.float32)
    for by in range(NUM_BIN_Y):
        for bx in range(NUM_BIN_X):
            w[by, bx] = bin_window_mean(b, NUM_BIN_Y, by, window_size) * bin_window_mean(b, NUM_BIN_X, bx, window_size)
    w.setflags(write=False)
    return w


def dsift_grid(shape, step: int, bin_size: int, bounds=None):
    """Frame grid of :func:`dsift` for an image of ``shape`` (H, W).

    Parameters
    ----------
    shape : (int, int)
        Image height and width in pixels.
    step : int
        Frame spacing in pixels.
    bin_size : int
        Side of a spatial bin in pixels; a frame spans ``3 bin_size + 1`` pixels.
    bounds : (xmin, ymin, xmax, ymax), optional
        0-based inclusive pixel bounds, clipped to the image; default the whole image.

    Returns
    -------
    x0, y0 : int
        Top-left bin centre of the first frame, 0-based pixels.
    nfx, nfy : int
        Number of frames along x and y (0 when none fits).
    """
    H, W = shape
    if bounds is None:
        xmin, ymin, xmax, ymax = 0, 0, W - 1, H - 1
    else:
        xmin, ymin, xmax, ymax = (int(v) for v in bounds)
        xmin, ymin = max(xmin, 0), max(ymin, 0)
        xmax, ymax = min(xmax, W - 1), min(ymax, H - 1)
    frame_size = bin_size * (NUM_BIN_X - 1) + 1
    nfx = (xmax - frame_size + 1 - xmin) // step + 1 if xmax - frame_size + 1 >= xmin else 0
    nfy = (ymax - frame_size + 1 - ymin) // step + 1 if ymax - frame_size + 1 >= ymin else 0
    return xmin, ymin, max(nfx, 0), max(nfy, 0)


def as_float_image(image) -> np.ndarray:
    """A grey image as float32 in [0, 1] (``im2single``): uint8 / 255, uint16 / 65535, float as is.

    Parameters
    ----------
    image : (H, W) or (H, W, 1) array
        ``uint8``, ``uint16`` or floating-point pixels (floats are not rescaled).

    Returns
    -------
    (H, W) float32
        C-contiguous intensities.

    Raises
    ------
    ValueError
        If the image is not 2-D (or one-channel 3-D), has another dtype, or holds NaN or inf.
    """
    im = np.asarray(image)
    if im.ndim == 3 and im.shape[2] == 1:
        im = im[:, :, 0]
    if im.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale image, got shape {im.shape}")
    if im.dtype == np.uint8:
        return im.astype(np.float32) * np.float32(1 / 255.0)
    if im.dtype == np.uint16:
        return im.astype(np.float32) * np.float32(1 / 65535.0)
    if not np.issubdtype(im.dtype, np.floating):
        raise ValueError(f"expected uint8, uint16 or floating-point pixels, got {im.dtype}")
    im = np.ascontiguousarray(im, dtype=np.float32)
    if not np.isfinite(im).all():
        raise ValueError("image contains NaN or infinite values")
    return im


#: Largest filter scratch (floats) kept per thread between calls (64 MiB): 24 MiB at 1024 x 1024.
_SCRATCH_KEEP = 16 << 20
_scratch = threading.local()


def _filter_scratch(W: int, C: int, R: int) -> tuple[np.ndarray, np.ndarray]:
    """Uninitialised ``(W, R, 8)`` and ``(C, R, 8)`` float32 views for the y and x filters' outputs.

    Both are carved from one buffer kept per thread between calls (up to
    :data:`_SCRATCH_KEEP` floats), so that a stream of images does not pay
    the kernel's page faults and zeroing for ``3 x 8 x W x R`` fresh bytes per
    scale (at 1024 x 1024 a tenth of the extraction time).  The kernels
    overwrite every entry; the views are valid until this thread's next call.
    """
    n1, n2 = W * R * NUM_BIN_T, C * R * NUM_BIN_T
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.size < n1 + n2:
        buf = np.empty(n1 + n2, np.float32)
        if buf.size <= _SCRATCH_KEEP:
            _scratch.buf = buf
    return buf[:n1].reshape(W, R, NUM_BIN_T), buf[n1 : n1 + n2].reshape(C, R, NUM_BIN_T)


def dsift(
    image,
    step: int = 1,
    bin_size: int = 3,
    window_size: float = DEFAULT_WINDOW_SIZE,
    bounds=None,
    float_descriptors: bool = False,
    planes: np.ndarray | None = None,
    contrast_threshold: float = -1.0,
    out: np.ndarray | None = None,
    frames_out: np.ndarray | None = None,
):
    """Dense SIFT descriptors of a greyscale image, VLFeat's fast mode.

    Parameters
    ----------
    image : (H, W) array
        ``uint8`` (scaled to [0, 1] like MATLAB's ``im2single``) or float.
        Not smoothed here (see :func:`phow_baseline.features.phow.phow`).
    step : int
        Frame spacing in pixels (VLFeat's default 1).
    bin_size : int
        Side of a spatial bin in pixels (VLFeat's default 3); a
        descriptor spans ``3 bin_size + 1`` pixels between its outer bin
        centres.
    window_size : float
        Gaussian window standard deviation in bins (VLFeat's default 2).
    bounds : (xmin, ymin, xmax, ymax), optional
        0-based, inclusive; default the whole image.
    float_descriptors : bool
        Return float32 descriptors (unit L2 norm or all zero) instead of
        ``uint8`` ``min(512 d, 255)``.
    planes : (H, W, 8) float32, optional
        Precomputed :func:`orientation_planes` of ``image``; by default they
        are computed a row at a time, fused with the y filter, and never stored
        whole (faster; equal to float rounding).
    contrast_threshold : float
        Descriptors of lower contrast are returned as zeros (default: none).
    out : (n, 128) array, optional
        Where to write the descriptors (of the output dtype).
    frames_out : (n, >= 3) float64 array, optional
        Where to write the frames (their first 3 columns).

    Returns
    -------
    frames : (n, 3) float64
        ``x, y`` of each descriptor centre (0-based pixels) and its contrast
        ("norm": mean gradient mass over the frame, before normalization).
    descriptors : (n, 128) uint8 or float32
        Row-major over frames: x fastest, then y.

    Notes
    -----
    An image too small for one descriptor (fewer than ``3 bin_size + 1``
    pixels along a side inside the bounds) gives ``n = 0``.
    """
    step, b = int(step), int(bin_size)
    if step < 1 or b < 1:
        raise ValueError(f"step and bin_size must be >= 1, got {step}, {b}")
    if not window_size > 0:
        raise ValueError(f"window_size must be positive, got {window_size}")
    im = as_float_image(image)
    H, W = im.shape
    x0, y0, nfx, nfy = dsift_grid(im.shape, step, b, bounds)
    n = nfx * nfy
    dtype = np.float32 if float_descriptors else np.uint8
    if n == 0:
        return np.zeros((0, 3)), np.zeros((0, DESCRIPTOR_SIZE), dtype)
    g = math.gcd(step, b)
    span = 3 * b
    rows = np.arange(y0, y0 + (nfy - 1) * step + span + 1, g, dtype=np.int64)
    cols = np.arange(x0, x0 + (nfx - 1) * step + span + 1, g, dtype=np.int64)
    # y filter at the needed rows (x-major output), x filter at the needed columns:
    # binned[j, i, t] is x-major, so the assembly runs along columns of frames.
    frt, binned = _filter_scratch(W, len(cols), len(rows))
    if planes is None:
        _planes_filter_rows(im, rows, b, frt)  # the planes of the needed rows only, never stored whole
    else:
        _filter_rows(planes, rows, b, frt)
    _filter_cols(frt, cols, b, binned)
    wbin = _bin_weights(b, float(window_size))
    norms = np.empty(n, np.float32)
    if out is None:
        out = np.empty((n, DESCRIPTOR_SIZE), dtype)
    elif out.shape != (n, DESCRIPTOR_SIZE) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous ({n}, {DESCRIPTOR_SIZE}) {np.dtype(dtype).name} array")
    frame_size = b * (NUM_BIN_X - 1) + 1
    desc_f = out if float_descriptors else np.empty((0, DESCRIPTOR_SIZE), np.float32)
    desc_u8 = np.empty((0, DESCRIPTOR_SIZE), np.uint8) if float_descriptors else out
    # outer axis = image x (frame column fxi, bin bx), inner = image y
    if not float_descriptors and step == g:
        _assemble_uint8(
            binned,
            np.ascontiguousarray(wbin.T),
            _bin_means(b, float(window_size)),
            b // g,
            nfy,
            nfx,
            1,
            nfx,
            _BLKPOS_T,
            np.float32(frame_size * frame_size),
            np.float32(contrast_threshold),
            desc_u8,
            norms,
        )
    else:
        _assemble(
            binned,
            np.ascontiguousarray(wbin.T),
            step // g,
            b // g,
            nfy,
            nfx,
            1,
            nfx,
            _BLKPOS_T,
            np.float32(frame_size * frame_size),
            np.float32(contrast_threshold),
            bool(float_descriptors),
            desc_f,
            desc_u8,
            norms,
        )
    if frames_out is None:
        frames_out = np.empty((n, 3))
    elif frames_out.ndim != 2 or frames_out.shape[0] != n or frames_out.shape[1] < 3 or frames_out.dtype != np.float64:
        raise ValueError(f"frames_out must be a float64 ({n}, >= 3) array")
    _write_frames(
        frames_out, x0 + 0.5 * b * (NUM_BIN_X - 1), y0 + 0.5 * b * (NUM_BIN_Y - 1), float(step), nfx, nfy, norms
    )
    return frames_out, out


def mirror_permutation() -> np.ndarray:
    """The permutation of the 128 entries that a left-right mirror of the image induces.

    Mirroring maps ``x -> W - 1 - x``: the gradient ``(gx, gy)`` becomes
    ``(-gx, gy)``, so the angle ``theta`` becomes ``pi - theta`` and the
    orientation bin ``t`` (of ``8 theta / 2 pi``) becomes ``(4 - t) mod 8``
    (VLFeat's ``vl_fast_atan2_f`` is exactly antisymmetric in this sense);
    spatial column ``x`` becomes ``3 - x``, rows stay.  With ``index = t +
    8 x + 32 y``, the mirrored image's descriptor at the mirrored frame is
    ``d[mirror_permutation()]``.

    Returns
    -------
    (128,) int64
        ``perm`` such that the mirrored descriptor is ``d[perm]`` (an involution).
    """
    perm = np.empty(DESCRIPTOR_SIZE, np.int64)
    for y in range(NUM_BIN_Y):
        for x in range(NUM_BIN_X):
            for t in range(NUM_BIN_T):
                perm[t + 8 * x + 32 * y] = (4 - t) % 8 + 8 * (3 - x) + 32 * y
    return perm
