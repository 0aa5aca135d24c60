"""Dense SIFT as VLFeat computes it in its fast (flat-window) mode, in Numba.

This follows ``vl/dsift.c`` of VLFeat 0.9.21 (``vl_dsift_process`` with
``useFlatWindow``) and the MATLAB/Python wrappers' conventions:

1. Gradients by central differences (one-sided at the border), modulus
   ``sqrt(gx^2 + gy^2)`` (0 below ``1e-8``) and angle by VLFeat's
   ``vl_fast_atan2_f`` polynomial; the angle, taken modulo 2 pi, is split
   linearly between the two nearest of 8 orientation bins.  The 8
   orientation planes are computed once per image.
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
   normalisation; the descriptor is L2-normalised (+ float epsilon),
   clamped at 0.2 and normalised again.
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
"""

from __future__ import annotations

import functools
import math

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
#: Clamp of the normalised descriptor entries (Lowe's 0.2).
CLAMP = 0.2
_EPS_F = np.float32(1.19209290e-07)  # VL_EPSILON_F


# --------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fast_atan2(y, x):
    """VLFeat's ``vl_fast_atan2_f``: a cubic in r, error below 0.005 rad."""
    c3 = np.float32(0.1821)
    c1 = np.float32(0.9675)
    abs_y = abs(y) + _EPS_F
    if x >= 0:
        r = (x - abs_y) / (x + abs_y)
        angle = np.float32(math.pi / 4)
    else:
        r = (x + abs_y) / (abs_y - x)
        angle = np.float32(3 * math.pi / 4)
    angle += (c3 * r * r - c1) * r
    return -angle if y < 0 else angle


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=True)
def _put(out, y, x, gx, gy):
    two_pi = np.float32(2 * math.pi)
    angle = _fast_atan2(gy, gx)
    m2 = gx * gx + gy * gy
    mod = np.float32(0.0) if m2 < 1e-8 else np.float32(math.sqrt(m2))
    if angle < 0:
        angle += two_pi
    nt = angle * np.float32(NUM_BIN_T / (2 * math.pi))
    b = int(nt)
    r = nt - np.float32(b)
    for t in range(NUM_BIN_T):
        out[y, x, t] = 0.0
    out[y, x, b % NUM_BIN_T] = (np.float32(1.0) - r) * mod
    out[y, x, (b + 1) % NUM_BIN_T] += r * mod


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def orientation_planes(im, out):
    """Split gradient moduli into 8 orientation planes: ``out[y, x, t]``.

    ``im``: (H, W) float32; ``out``: (H, W, 8) float32, overwritten.  The
    orientation is innermost so that the filters and the descriptor
    assembly read the 8 bins of a position from one cache line.  Central
    differences inside, one-sided on the border rows and columns.
    """
    H, W = im.shape
    half = np.float32(0.5)
    for y in range(H):
        ya = min(y + 1, H - 1)
        yb = max(y - 1, 0)
        fy = half if (y > 0 and y < H - 1) else np.float32(1.0)
        if H == 1:
            fy = np.float32(0.0)
        for x in range(W):
            xa = min(x + 1, W - 1)
            xb = max(x - 1, 0)
            fx = half if (x > 0 and x < W - 1) else np.float32(1.0)
            if W == 1:
                fx = np.float32(0.0)
            gx = fx * (im[y, xa] - im[y, xb])
            gy = fy * (im[ya, x] - im[yb, x])
            _put(out, y, x, gx, gy)


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _filter_rows(planes, rows, b, out):
    """Triangular filter (unit height, half-width b, replicate padding) along y,
    at the given rows: ``planes[y, x, t]`` -> ``out[i, x, t]``."""
    H, W, T = planes.shape
    WT = W * T
    P = planes.reshape(H, WT)
    O = out.reshape(rows.shape[0], WT)
    for i in range(rows.shape[0]):
        y = rows[i]
        for q in range(WT):
            O[i, q] = P[y, q]
        for d in range(1, b):
            w = np.float32(b - d) / np.float32(b)
            ya = min(y + d, H - 1)
            yb = max(y - d, 0)
            for q in range(WT):
                O[i, q] += w * (P[ya, q] + P[yb, q])


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _filter_cols(fr, cols, b, out):
    """The same filter along x at the given columns: ``fr[i, x, t]`` -> ``out[j, i, t]``."""
    R, W, T = fr.shape
    for j in range(cols.shape[0]):
        x = cols[j]
        for i in range(R):
            for t in range(T):
                out[j, i, t] = fr[i, x, t]
        for d in range(1, b):
            w = np.float32(b - d) / np.float32(b)
            xa = min(x + d, W - 1)
            xb = max(x - d, 0)
            for i in range(R):
                for t in range(T):
                    out[j, i, t] += w * (fr[i, xa, t] + fr[i, xb, t])


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _assemble(binned, wbin, sb, bb, nfx, nfy, frame_area, threshold, float_out, desc_f, desc_u8, norms, raw):
    """Gather 4x4x8 bins per frame, contrast, normalise-clamp-normalise, convert.

    ``binned[j, i, t]``: filtered planes at the grid columns j and rows i
    (in steps of ``g``); frame (fxi, fyi)'s bin (bx, by) is at
    ``i = fyi sb + by bb``, ``j = fxi sb + bx bb``.  ``raw``: (nfx, 128)
    scratch.  Descriptors of contrast below ``threshold`` are written as
    zeros (PHOW's contrast threshold; pass -1 to keep all).
    """
    k = 0
    for fyi in range(nfy):
        # gather one row of frames: 8 contiguous floats per (frame, bin)
        for by in range(NUM_BIN_Y):
            i = fyi * sb + by * bb
            for bx in range(NUM_BIN_X):
                w = wbin[by, bx]
                base = NUM_BIN_T * (bx + by * NUM_BIN_X)
                for fxi in range(nfx):
                    j = fxi * sb + bx * bb
                    for t in range(NUM_BIN_T):
                        raw[fxi, base + t] = w * binned[j, i, t]
        for fxi in range(nfx):
            mass = np.float32(0.0)
            s = np.float32(0.0)
            for q in range(DESCRIPTOR_SIZE):
                v = raw[fxi, q]
                mass += v
                s += v * v
            norms[k] = mass / frame_area
            if norms[k] < threshold:
                for q in range(DESCRIPTOR_SIZE):
                    if float_out:
                        desc_f[k, q] = 0.0
                    else:
                        desc_u8[k, q] = 0
                k += 1
                continue
            # L2 normalise, clamp at 0.2, normalise again (VLFeat adds FLT_EPSILON)
            inv = np.float32(1.0) / (np.float32(math.sqrt(s)) + _EPS_F)
            s = np.float32(0.0)
            for q in range(DESCRIPTOR_SIZE):
                v = min(raw[fxi, q] * inv, np.float32(CLAMP))
                raw[fxi, q] = v
                s += v * v
            inv = np.float32(1.0) / (np.float32(math.sqrt(s)) + _EPS_F)
            if float_out:
                for q in range(DESCRIPTOR_SIZE):
                    desc_f[k, q] = raw[fxi, q] * inv
            else:
                inv512 = np.float32(512.0) * inv
                for q in range(DESCRIPTOR_SIZE):
                    desc_u8[k, q] = np.uint8(min(raw[fxi, q] * inv512, np.float32(255.0)))
            k += 1


# --------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------

def bin_window_mean(bin_size: int, num_bins: int, bin_index: int, window_size: float) -> np.float32:
    """Mean of the Gaussian window over one spatial bin's support (VLFeat's
    ``_vl_dsift_get_bin_window_mean``), float32 arithmetic as in C."""
    delta = np.float32(bin_size) * np.float32(bin_index - 0.5 * (num_bins - 1))
    sigma = np.float32(bin_size) * np.float32(window_size)
    x = np.arange(-bin_size + 1, bin_size, dtype=np.float32)
    z = (x - delta) / sigma
    acc = np.float32(0.0)
    for v in np.exp(np.float32(-0.5) * z * z).astype(np.float32):
        acc = np.float32(acc + v)
    return np.float32(acc / np.float32(2 * bin_size - 1))


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

    Returns ``(x0, y0, nfx, nfy)``: the top-left bin centre of the first
    frame (0-based) and the number of frames along x and y (0 when none fits).
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


def _check_image(image) -> np.ndarray:
    im = np.asarray(image)
    if im.ndim != 2:
        raise ValueError(f"dsift expects a 2-D greyscale image, got shape {im.shape}")
    if im.dtype == np.uint8:
        return im.astype(np.float32) * np.float32(1 / 255.0)
    if not np.issubdtype(im.dtype, np.floating):
        raise ValueError(f"dsift expects uint8 or floating-point pixels, got {im.dtype}")
    im = np.ascontiguousarray(im, dtype=np.float32)
    if not np.isfinite(im).all():
        raise ValueError("image contains NaN or infinite values")
    return im


def dsift(image, step: int = 1, bin_size: int = 3, window_size: float = DEFAULT_WINDOW_SIZE, bounds=None,
          float_descriptors: bool = False, planes: np.ndarray | None = None, contrast_threshold: float = -1.0,
          out: np.ndarray | None = None):
    """Dense SIFT descriptors of a greyscale image, VLFeat's fast mode.

    Parameters
    ----------
    image : (H, W) array
        ``uint8`` (scaled to [0, 1] like MATLAB's ``im2single``) or float.
        Not smoothed here (see :func:`phow_baseline.phow.phow`).
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
        Precomputed :func:`orientation_planes` of ``image`` (internal reuse).
    contrast_threshold : float
        Descriptors of lower contrast are returned as zeros (default: none).
    out : (n, 128) array, optional
        Where to write the descriptors (of the output dtype).

    Returns
    -------
    frames : (n, 3) float64
        ``x, y`` of each descriptor centre (0-based pixels) and its contrast
        ("norm": mean gradient mass over the frame, before normalisation).
    descriptors : (n, 128) uint8 or float32
        Row-major over frames: x fastest, then y.

    An image too small for one descriptor (fewer than ``3 bin_size + 1``
    pixels along a side inside the bounds) gives ``n = 0``.
    """
    step, b = int(step), int(bin_size)
    if step < 1 or b < 1:
        raise ValueError(f"step and bin_size must be >= 1, got {step}, {b}")
    if not window_size > 0:
        raise ValueError(f"window_size must be positive, got {window_size}")
    im = _check_image(image)
    H, W = im.shape
    x0, y0, nfx, nfy = dsift_grid(im.shape, step, b, bounds)
    n = nfx * nfy
    dtype = np.float32 if float_descriptors else np.uint8
    if n == 0:
        return np.zeros((0, 3)), np.zeros((0, DESCRIPTOR_SIZE), dtype)
    if planes is None:
        planes = np.empty((H, W, NUM_BIN_T), np.float32)
        orientation_planes(im, planes)
    g = math.gcd(step, b)
    span = 3 * b
    rows = np.arange(y0, y0 + (nfy - 1) * step + span + 1, g, dtype=np.int64)
    cols = np.arange(x0, x0 + (nfx - 1) * step + span + 1, g, dtype=np.int64)
    fr = np.empty((len(rows), W, NUM_BIN_T), np.float32)
    _filter_rows(planes, rows, b, fr)
    binned = np.empty((len(cols), len(rows), NUM_BIN_T), np.float32)
    _filter_cols(fr, cols, b, binned)
    wbin = _bin_weights(b, float(window_size))
    norms = np.empty(n, np.float32)
    if out is None:
        out = np.empty((n, DESCRIPTOR_SIZE), dtype)
    elif out.shape != (n, DESCRIPTOR_SIZE) or out.dtype != dtype:
        raise ValueError(f"out must be a ({n}, {DESCRIPTOR_SIZE}) {np.dtype(dtype).name} array")
    desc_f = out if float_descriptors else np.empty((0, DESCRIPTOR_SIZE), np.float32)
    desc_u8 = np.empty((0, DESCRIPTOR_SIZE), np.uint8) if float_descriptors else out
    frame_size = b * (NUM_BIN_X - 1) + 1
    _assemble(binned, wbin, step // g, b // g, nfx, nfy, np.float32(frame_size * frame_size),
              np.float32(contrast_threshold), bool(float_descriptors), desc_f, desc_u8, norms, np.empty((nfx, DESCRIPTOR_SIZE), np.float32))
    fx = x0 + step * np.arange(nfx) + 0.5 * b * (NUM_BIN_X - 1)
    fy = y0 + step * np.arange(nfy) + 0.5 * b * (NUM_BIN_Y - 1)
    frames = np.empty((n, 3))
    frames[:, 0] = np.tile(fx, nfy)
    frames[:, 1] = np.repeat(fy, nfx)
    frames[:, 2] = norms
    return frames, out


def mirror_permutation() -> np.ndarray:
    """The permutation of the 128 entries that a left-right mirror of the image induces.

    Mirroring maps ``x -> W - 1 - x``: the gradient ``(gx, gy)`` becomes
    ``(-gx, gy)``, so the angle ``theta`` becomes ``pi - theta`` and the
    orientation bin ``t`` (of ``8 theta / 2 pi``) becomes ``(4 - t) mod 8``
    (VLFeat's ``vl_fast_atan2_f`` is exactly antisymmetric in this sense);
    spatial column ``x`` becomes ``3 - x``, rows stay.  With ``index = t +
    8 x + 32 y``, the mirrored image's descriptor at the mirrored frame is
    ``d[mirror_permutation()]``.
    """
    perm = np.empty(DESCRIPTOR_SIZE, np.int64)
    for y in range(NUM_BIN_Y):
        for x in range(NUM_BIN_X):
            for t in range(NUM_BIN_T):
                perm[t + 8 * x + 32 * y] = (4 - t) % 8 + 8 * (3 - x) + 32 * y
    return perm
