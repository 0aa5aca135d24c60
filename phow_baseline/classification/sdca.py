"""Stochastic dual coordinate ascent (SDCA) for all the one-vs-rest hinge-loss SVMs at once, out of core.

The solver of VLFeat's ``vl_svmtrain`` (Shalev-Shwartz and Zhang 2013,
"Stochastic dual coordinate ascent methods for regularized loss
minimization", JMLR 14), for the objective the package trains, per class
``k``::

    P(w) = lambda/2 (||w||^2 + w_b^2) + 1/n sum_i s_ik max(0, 1 - y_ik (w.x_i + B w_b))

with ``lambda = 1 / (C n)``, ``y_ik`` in {-1, +1}, the class weights
``s_ik`` (:func:`~phow_baseline.classification.svm.class_sample_weights`)
and VLFeat's bias multiplier ``B`` (a constant feature ``B`` appended to every
row; the intercept is ``b = B w_b``, regularised like the weights, as
liblinear's ``intercept_scaling``).  Its dual, as VLFeat writes it
(``vl/svm.c``, weighted hinge loss: ``alpha_ik`` in ``y_ik [0, s_ik]``)::

    D(alpha) = -lambda/2 ||w(alpha)||^2 + 1/n sum_i y_ik alpha_ik,   w(alpha) = X' alpha / (lambda n)

Each visit of a row ``i`` maximises ``D`` over ``alpha_ik`` in closed form
(VLFeat's ``vl_svm_hinge_dca_update`` with the weight ``s``)::

    q = (||x_i||^2 + B^2) / (lambda n)
    alpha_ik <- y s clip(y ((y - w.x_i - B w_b) / (s q) + alpha_ik / s), 0, 1)
    [w, w_b] += (alpha_new - alpha_old) / (lambda n) [x_i, B]

One read of a row serves the dual updates of every class: the weights are
one ``(d + 1, K)`` float64 array (row ``d``: the bias weights) and the duals
one ``(n, K)`` array.  The steps are VLFeat's, one row after the other, for
each class (the classes are independent problems on the same rows, so a
chunk of rows is stepped class by class, the classes split between Numba's
threads with the same bits for any number of them): each step one dot
product and, when the dual moves, one update of the class's weights, read
straight from the float32 rows (:func:`_sdca_pairs`).  The batched form
this replaced (three GEMMs per batch of rows for every class) cost every
class a step's worth of flops for every row read; the steps one by one cost
only the (row, class) pairs not shrunk (below).  Rows are
visited in a seeded uniform random order per epoch, out of core too (a window
of rows gathered from the memory-mapped shards at a time, :class:`StoreRows`:
shard by shard orders stalled SDCA); the kernel map, when given, is applied to
each chunk of rows as it is read.

Stopping: on VLFeat's duality gap ``P(w) - D(alpha)`` of each class (both
objectives means over the ``n`` rows, as ``vl/svm.c`` computes them), relative
to the primal: a class stops when ``(P - D) / P < tol``.  VLFeat stops on the
absolute gap ``P - D < epsilon``, which is relative to ``P(0) = 1/n sum_i s_ik
= 1`` (unit and "balanced" weights alike): the same where ``P`` is near 1,
but far too loose where the rows are (nearly) separable and ``P* << 1``: on
the sample's bag of words (422 images) ``P*`` is 0.001 to 0.014 per class and
the absolute ``1e-3`` left the primal 5% to 60% above liblinear's.  By weak
duality ``D <= P* <= P``, so ``(P - D) / P < tol`` bounds the primal's
relative excess ``(P - P*) / P*`` by ``tol / (1 - tol)``.  The default
``tol = 1e-3`` is ``vl_svmtrain``'s documented ``Epsilon`` default (the C
library's ``vl_svm_new`` sets 1e-2).  The maximum number of epochs defaults
to :data:`DEFAULT_MAX_EPOCHS` (VLFeat's ``MaxNumIterations = 10 / lambda``
row updates are 100 epochs at ``C = 10``, fewer than needed at ``C = 10``:
to the relative gap 1e-3 the sample's 64-word bag of words took 100 to 190
epochs, its 600-word one 40 to 55, a 1,345-image phantom's 215 to 774).
The primal objective needs the scores of all rows at one ``w``.  Every pass
records the score each step saw (before its update); after the pass, the gap
*estimated* from those scores (the primal's hinge sum over them, with the
exact ``||w||^2`` and ``D``) is cheap, ``O(n K)``, and only where it falls
below ``tol`` for some class does the next pass *certify*: it scores every
row with the weights frozen at the end of the previous epoch (one float64
GEMM per chunk) before updating them, so the exact gap is known one pass
late; a class whose exact gap is below ``tol`` gets back the weights and
duals of the epoch that the gap certifies (``P`` and ``D`` recorded are of
exactly the weights returned).  The gap history holds the estimates, and the
exact gap at the epochs certified.  After the last epoch one scoring pass (no
updates) certifies the rest.

Shrinking (liblinear's, Hsieh et al. 2008, section 3.2: liblinear's dual
coordinate descent is this very SDCA for the hinge loss), per (row, class)
pair: a pair whose dual sits at a bound with its gradient beyond the
previous pass's projected-gradient extremes of its class on the right side
is skipped in the next passes until that class's pairs left have converged
(their projected-gradient range below the class's epsilon, which starts at
liblinear's 0.1 and shrinks tenfold each time) or the class's certification
fails; then the class visits every row again.  A row is read (out of core)
only while some class still visits it.  The steps of the pairs visited are
unchanged, so the optimum and its certificate are too.  At ChestX-ray14's
positive rates most negatives of a class leave its passes after a few
epochs while they stay support vectors of another: on
``benchmarks/bench_solver.py --n 20000 --dim 2000`` the passes between
certifications visited 8% to 40% of the 280,000 pairs where shrinking whole
rows (a row at a bound for every class) kept 68% of the rows, each for all
14 classes: the same epochs per class (49 to 118) to the same certified
gaps, in 0.34 to 0.36 of the CPU time (one thread, interleaved, load 5).

The Gram path: where the rows are no more than :data:`GRAM_MAX_ROWS` and have
at least as many features as there are rows (the sample's bag of words and
Fisher vectors, a few thousand images: ``n <= d``), the same steps in the
same order are taken in the dual's own terms (:func:`_sdca_gram_epoch`): with
``Q = X X'`` computed once (``n^2 d`` flops, float64) every row's score is
kept exact by each step at ``O(n)`` instead of ``O(d)``, the gap of every
epoch is exact (one ``(n, n) x (n, K)`` GEMM) and the weights are formed from
the duals at the end.  On a 1,500-row problem of 12,600 features it took
1.3 to 1.5 CPU s where the rows' path took 5.0 to 6.0 (one core, the same
epochs to the same certified gap).  The choice is a rule on the shape alone
(:func:`gram_applies`), so in memory and out of core take the same path.

Checkpoints: after every epoch the whole state is a dict of arrays
(:meth:`SDCASolver.checkpoint`, saved as ``.npz``); a solver rebuilt from it
(:meth:`SDCASolver.from_checkpoint`) goes on bit for bit as an uninterrupted
run (the row order of epoch ``e`` depends only on the seed and ``e``).
"""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numba
import numpy as np

#: VLFeat's bias multiplier default (``vl_svm_new``: ``biasMultiplier = 1``; ``vl_svmtrain``'s
#: ``BiasMultiplier:: 1``), the same as liblinear's ``intercept_scaling = 1`` of the liblinear solver.
BIAS_MULTIPLIER = 1.0
#: Duality-gap tolerance, ``(P - D) / P``: the value of ``vl_svmtrain``'s documented ``Epsilon:: 1e-3``.
DEFAULT_GAP_TOL = 1e-3
#: Epochs at most.  VLFeat's ``MaxNumIterations = 10 / lambda`` row updates (``ceil(10 C)`` epochs, 100 at
#: ``C = 10``) stop many classes short of the gap (see above); each class stops on its gap anyway.
DEFAULT_MAX_EPOCHS = 1000
#: Rows per chunk (the unit of the kernel map and of the primal's scoring GEMM), in memory and out of core.
ARRAY_CHUNK_ROWS = 256
#: Bytes of rows stepped as one tile (:func:`_sdca_pairs`): each thread takes all its classes' steps over a tile
#: before the next, so the tile is read from memory once for all of them rather than once per class (2 MiB:
#: 14 rows of 36,000 float32, well inside a core's share of the last-level cache).  Measured on 2,048 rows of
#: 36,000 features and 14 classes (one core, load 2.3): 0.40 s a pass tiled by 16 rows, 0.43 s by 64, 0.52 s
#: untiled (the chunk, 256 rows = 37 MB, streamed from memory for every class).
STEP_TILE_BYTES = 2 * 2**20
#: Bytes of (mapped) float32 rows handed on at a time by :func:`_checked_chunks`: a chunk's rows are mapped,
#: stepped and scored (the certifying GEMM's float64 copy: twice this) in pieces that stay in the last-level
#: cache, rather than 37 MB chunks (256 rows of 36,000) written to memory and read back by each step.
PIECE_BYTES = 4 * 2**20
#: Features gathered from the shards at a time, out of core (256 MiB: 5,376 rows of 12,000 float32).
WINDOW_BYTES = 256 * 2**20
#: Kernel-mapped features kept in memory when they fit (float32), rather than mapped again every epoch
#: (:meth:`StoreRows.in_memory`): the map took 40% of an epoch on the sample's bag of words.
IN_MEMORY_BYTES = 2**30
#: Shrinking's projected-gradient range below which every row is visited again, at first: liblinear's
#: default ``epsilon`` of its dual solvers (``-e 0.1``), the range at which it unshrinks (Hsieh et al.
#: 2008) and stops; the gap still being above ``tol`` there, each such unshrinking divides it by 10.
UNSHRINK_PG_RANGE = 0.1

#: The Gram path (:meth:`SDCASolver._run_gram`) for at most this many rows (its ``(n, n)`` float64 Gram
#: matrix: 128 MiB), when the rows have at least as many features as there are rows and fit
#: :data:`IN_MEMORY_BYTES`; 0 turns it off.
GRAM_MAX_ROWS = 4096

#: Format of :meth:`SDCASolver.checkpoint`'s arrays.
CHECKPOINT_FORMAT = 4


# -- the rows, in memory or in a feature store ------------------------------------------------------------


class ArrayRows:
    """In-memory rows as SDCA reads them: one seeded permutation per epoch, in chunks.

    Parameters
    ----------
    X : (n, d) array
        Features (converted to C-contiguous float32).
    chunk_rows : int
        Rows per chunk (the unit of the primal scoring GEMM).
    """

    def __init__(self, X, chunk_rows: int = ARRAY_CHUNK_ROWS):
        self.X = np.ascontiguousarray(X, dtype=np.float32)
        if self.X.ndim != 2:
            raise ValueError(f"features must be a 2-D array (n, d), got shape {self.X.shape}")
        bad = ~np.isfinite(self.X)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} non-finite feature value(s) (NaN or infinity) in {len(rows)} row(s), "
                f"rows {rows[:10].tolist()}; re-encode those images"
            )
        self.chunk_rows = int(chunk_rows)

    @property
    def n_rows(self) -> int:
        """Number of rows ``n``."""
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        """Number of features ``d`` of each row."""
        return self.X.shape[1]

    #: The rows were checked to be finite once, when given.
    checks_finite = True

    def epoch(self, seed: int, epoch: int, keep=None, order=None) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
        """Yield ``(X_chunk (m, d) float32, positions (m,) int64, where)`` in epoch ``epoch``'s order.

        Parameters
        ----------
        seed, epoch : int
            The order is ``default_rng([seed, epoch]).permutation(n)``.
        keep : (n,) bool, optional
            Only these rows (in that order): the rows not shrunk.
        order : (m,) int array, optional
            The positions to visit, in order, instead of the permutation (``keep`` still applies).
        """
        if order is None:
            order = np.random.default_rng([int(seed), int(epoch)]).permutation(self.n_rows)
        if keep is not None:
            order = order[np.asarray(keep, bool)[order]]
        for lo in range(0, len(order), self.chunk_rows):
            pos = order[lo : lo + self.chunk_rows]
            yield self.X[pos], pos.astype(np.int64), f"rows {lo}..{lo + len(pos) - 1} of epoch {epoch}'s order"


class StoreRows:
    """Rows of a feature store as SDCA reads them: one uniform random permutation of the rows per epoch
    (the in-memory path's, :class:`ArrayRows`), read a window of rows at a time from the shards.

    Not shard by shard: with the shards in a random order and the rows shuffled inside each, SDCA on the
    sample's bag of words (422 rows, 2 shards; and with 7 shards of 64 rows) had not reached the relative
    gap 1e-3 after 300 epochs, where a uniform order takes 40 to 55.  Each window (at most
    :data:`WINDOW_BYTES` of features) is gathered from the memory-mapped shards it touches, which are
    released after it, so memory stays flat; then it is yielded in chunks of :data:`ARRAY_CHUNK_ROWS`
    rows, the in-memory path's chunks, so that both paths give the same bits.

    Parameters
    ----------
    store : FeatureStore
        Anything with ``n_shards``, ``dim``, ``shard_rows(s)``, ``read_shard(s)`` (checking the shard's
        shape, naming its file) and ``shard_path(s)`` (:class:`phow_baseline.encoding.store.FeatureStore`).
    rows : sequence of int, optional
        The store rows to train on (default all); positions (and the labels) follow this order.
    window_bytes : int
        Features gathered at a time (rounded down to whole chunks, at least one).
    """

    def __init__(self, store, rows=None, window_bytes=None):
        self.store = store
        n = sum(len(store.shard_rows(s)) for s in range(store.n_shards))
        sel = np.arange(n) if rows is None else np.asarray(rows, np.int64)
        if sel.ndim != 1 or (len(sel) and (sel.min() < 0 or sel.max() >= n)):
            raise ValueError(f"rows must be store rows in 0..{n - 1}")
        if len(np.unique(sel)) != len(sel):
            raise ValueError("rows must not repeat a store row")
        self.rows = sel
        # the shard of every store row, and its row inside the shard
        self.shard_of = np.empty(n, np.int64)
        self.local_of = np.empty(n, np.int64)
        for s in range(store.n_shards):
            r = store.shard_rows(s)
            self.shard_of[r.start : r.stop] = s
            self.local_of[r.start : r.stop] = np.arange(len(r))
        row_bytes = 4 * max(1, int(store.dim))
        budget = WINDOW_BYTES if window_bytes is None else int(window_bytes)
        self.window_rows = ARRAY_CHUNK_ROWS * max(1, budget // (row_bytes * ARRAY_CHUNK_ROWS))

    @property
    def n_rows(self) -> int:
        """Number of rows trained on."""
        return len(self.rows)

    @property
    def n_features(self) -> int:
        """The store's feature dimension (before any transform)."""
        return int(self.store.dim)

    #: Every window read is checked to be finite (naming its shard).
    checks_finite = True

    def epoch(self, seed: int, epoch: int, keep=None, order=None) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
        """Yield ``(X_chunk (m, d) float32, positions (m,) int64, where)`` in epoch ``epoch``'s order.

        The order is ``default_rng([seed, epoch]).permutation(n)``, as :meth:`ArrayRows.epoch`.

        Parameters
        ----------
        seed : int
            The training's seed.
        epoch : int
            The epoch (0-based): with ``seed``, it fixes the row order.
        keep : (n,) bool, optional
            Only these rows (in that order; the others are not read): the rows not shrunk.
        order : (m,) int array, optional
            The positions to visit, in order, instead of the permutation (``keep`` still applies).

        Yields
        ------
        tuple
            ``(X_chunk, positions, where)``: features ``(m, d)`` float32, their row numbers ``(m,)`` int64,
            and a description of where they come from (for error messages).
        """
        if order is None:
            order = np.random.default_rng([int(seed), int(epoch)]).permutation(self.n_rows)
        if keep is not None:
            order = order[np.asarray(keep, bool)[order]]
        yield from self._gather(order, f"epoch {epoch}'s order")

    def in_memory(self, transform=None, budget_bytes=None) -> ArrayRows | None:
        """The rows (transformed) in memory as :class:`ArrayRows`, when they fit ``budget_bytes``; else None.

        The same rows in the same chunks: training on either gives the same bits, but the transform (the
        kernel map) is applied once instead of once an epoch.

        Parameters
        ----------
        transform : callable or fitted kernel map, optional
        budget_bytes : int, optional
            Default :data:`IN_MEMORY_BYTES`.

        Returns
        -------
        ArrayRows or None
        """
        fn = _as_transform(transform)
        budget = IN_MEMORY_BYTES if budget_bytes is None else int(budget_bytes)
        if not self.n_rows:
            return None
        first = np.asarray(self.store.read_shard(int(self.shard_of[self.rows[0]]))[self.local_of[self.rows[:1]]])
        dim = self.n_features if fn is None else np.asarray(fn(np.ascontiguousarray(first, np.float32))).shape[1]
        if 4 * self.n_rows * dim > budget:
            return None
        X = np.empty((self.n_rows, dim), np.float32)
        for chunk, pos, _ in self._gather(np.arange(self.n_rows), "the store's order"):
            X[pos] = chunk if fn is None else fn(chunk)
        return ArrayRows(X)

    def _gather(self, order, what):
        """Yield the rows at positions ``order`` in chunks, a window of shards' rows at a time."""
        d = self.n_features
        for lo in range(0, len(order), self.window_rows):
            pos = order[lo : lo + self.window_rows]
            rows = self.rows[pos]
            shards = self.shard_of[rows]
            X = np.empty((len(pos), d), np.float32)
            for s in np.unique(shards):
                at = np.flatnonzero(shards == s)
                block = np.asarray(self.store.read_shard(int(s))[self.local_of[rows[at]]], np.float32)
                bad = ~np.isfinite(block)
                if bad.any():  # named here, where the shard is known
                    hit = np.unique(np.nonzero(bad)[0])
                    raise ValueError(
                        f"{self.store.shard_path(int(s))}: {int(bad.sum())} non-finite feature "
                        f"value(s) (NaN or infinity) in {len(hit)} row(s), training rows "
                        f"{pos[at[hit]][:10].tolist()}; re-encode those images"
                    )
                X[at] = block
            for c in range(0, len(pos), ARRAY_CHUNK_ROWS):
                yield (
                    X[c : c + ARRAY_CHUNK_ROWS],
                    pos[c : c + ARRAY_CHUNK_ROWS].astype(np.int64),
                    f"rows {lo + c}..{lo + c + len(pos[c : c + ARRAY_CHUNK_ROWS]) - 1} of {what} in "
                    f"{self.store.directory if hasattr(self.store, 'directory') else 'the store'}",
                )


# -- the kernel ---------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot(x, w):  # pragma: no cover
    """``x . w`` in float64 (``x`` float32 or float64), vectorised (the sum's order is the compiler's)."""
    acc = 0.0
    for j in range(x.shape[0]):
        acc += np.float64(x[j]) * w[j]
    return acc


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _axpy(c, x, w):  # pragma: no cover
    """``w += c x`` (``x`` float32 or float64, ``w`` float64), in place."""
    for j in range(x.shape[0]):
        w[j] += c * np.float64(x[j])


@numba.njit(cache=True, nogil=True, fastmath=False, inline="always")
def _dual_step(y, s, q, a, score):  # pragma: no cover
    """VLFeat's closed-form dual step of one (row, class) pair: the new ``alpha``, ``y s clip(y ((y - score) /
    (s q) + a / s), 0, 1)`` (``q = (||x||^2 + B^2) / (lambda n)``, ``score`` the row's ``w.x + B w_b``).
    Shared by the rows' kernel and the Gram path, so that both take the same steps to the bit.
    """
    z = y * ((y - score) / (s * q) + a / s)
    if z < 0.0:
        z = 0.0
    elif z > 1.0:
        z = 1.0
    return y * s * z


@numba.njit(cache=True, nogil=True, fastmath=False)
def _sdca_class_steps(  # pragma: no cover
    X, take, pos, Y, class_w, alpha, w, wb, lam_n, bias_mult, marg, pg, shrunk, qs, k, r0, r1
):
    """Class ``k``'s steps over the chunk's rows ``take[r0 .. r1 - 1]``, in order (:func:`_sdca_pairs`)."""
    for r in range(r0, r1):
        i = pos[r]
        if shrunk[i, k]:
            continue
        s = class_w[k, Y[i, k]]
        if s <= 0.0:
            continue
        x = X[take[r]]
        y = 2.0 * Y[i, k] - 1.0
        inner = _dot(x, w) + bias_mult * wb[k]
        marg[i, k] = inner
        q = qs[r]
        if q == 0.0:
            # B = 0 and an empty row: its hinge is the constant 1, its dual optimum y s (w unchanged)
            alpha[i, k] = y * s
            continue
        a = alpha[i, k]
        grad = y * inner - 1.0
        ya = y * a
        if ya <= 0.0:
            shrunk[i, k] = grad > pg[0, k]
            proj = min(grad, 0.0)
        elif ya >= s:
            shrunk[i, k] = grad < pg[1, k]
            proj = max(grad, 0.0)
        else:
            proj = grad
        if proj > pg[2, k]:
            pg[2, k] = proj
        if proj < pg[3, k]:
            pg[3, k] = proj
        new = _dual_step(y, s, q, a, inner)
        delta = new - a
        if delta != 0.0:
            alpha[i, k] = new
            c = delta / lam_n
            _axpy(c, x, w)
            wb[k] += c * bias_mult


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=False)
def _sdca_pairs(  # pragma: no cover
    X, take, pos, Y, class_w, alpha, Wt, wb, lam_n, bias_mult, marg, pg, shrunk, sq, tile, n_groups
):
    """VLFeat's dual coordinate step for each row of a chunk, in order, for each (row, class) pair not shrunk.

    X (M, d) float32 or float64: the chunk's rows; take (m,) int64: the rows to step, in visiting order (a
    subset of the chunk's, read through the index rather than copied); pos (m,) int64: their rows of ``alpha``,
    ``Y``, ``marg`` and ``shrunk``; Y (n, K) int8 0/1; class_w (K, 2) float64: negative and positive
    weight; alpha (n, K) float64, updated; Wt (K, d) float64 and wb (K,) float64: each class's weights
    and bias weight ``w_b``, updated; lam_n: ``lambda n``; bias_mult: ``B``; sq (n,) float64: each row's
    ``||x||^2``, NaN until computed here (then kept: a row's norm is computed once).  The classes are independent
    problems on the same rows: each class takes its steps over the chunk's rows in order (threads split
    the classes, so the result does not depend on their number).  The rows are visited in tiles of
    ``tile`` rows (:data:`STEP_TILE_BYTES`): each thread steps all its classes over one tile before
    the next, so a tile read from memory serves every class of the thread from the cache; each class's
    steps stay in the same order, so the result is the same to the bit as untiled.  ``n_groups``: the
    groups of classes (class ``k`` in group ``k % n_groups``), one per thread (:func:`_class_groups`; read
    in Python: ``numba.get_num_threads()`` inside a kernel keeps Numba from caching it).

    Shrinking (liblinear's, Hsieh et al. 2008, section 3.2, per (row, class) pair as liblinear shrinks
    per row of its one problem): a pair with ``shrunk[i, k]`` set is skipped; a pair visited records its
    score (before the step) in ``marg[i, k]``, gathers this pass's projected-gradient extremes in
    ``pg[2, k]``, ``pg[3, k]``, and is shrunk for the next passes when its dual sits at a bound with the
    gradient ``G = y score - 1`` beyond the last pass's bound (``pg[0, k]`` = ``PGmax``, ``pg[1, k]`` =
    ``PGmin``) on the right side (``alpha = 0, G > PGmax`` or ``alpha = y s, G < PGmin``): its step does
    not move then.
    """
    m = take.shape[0]
    K = Wt.shape[0]
    bb = bias_mult * bias_mult
    qs = np.empty(m)
    for r in range(m):
        i = pos[r]
        if np.isnan(sq[i]):
            sq[i] = _dot(X[take[r]], X[take[r]])
        qs[r] = (sq[i] + bb) / lam_n
    for g in numba.prange(n_groups):
        for r0 in range(0, m, tile):
            for k in range(g, K, n_groups):
                r1 = min(m, r0 + tile)
                _sdca_class_steps(
                    X, take, pos, Y, class_w, alpha, Wt[k], wb, lam_n, bias_mult, marg, pg, shrunk, qs, k, r0, r1
                )


def _step_tile(X) -> int:
    """Rows per tile of :func:`_sdca_pairs` for rows like ``X``: :data:`STEP_TILE_BYTES` of them, at least one."""
    return max(1, STEP_TILE_BYTES // max(1, X.shape[1] * X.dtype.itemsize))


def _class_groups(n_classes: int) -> int:
    """Groups of classes stepped by :func:`_sdca_pairs`: one per Numba thread, at most one per class."""
    return max(1, min(numba.get_num_threads(), n_classes))


def _sdca_chunk(X, pos, Y, class_w, alpha, W, active, lam_n, bias_mult, marg=None, pg=None, shrunk=None):
    """SDCA steps for the rows of ``X`` in order, for every active class (:func:`_sdca_pairs`).

    Sequential SDCA, VLFeat's ``_vl_svm_sdca_train`` loop, one row at a time, for each class.

    Parameters
    ----------
    X : (m, d) float32 or float64, C-contiguous
        The rows, in visiting order.
    pos : (m,) int64
        Their rows in ``alpha`` and ``Y``.
    Y : (n, K) int8
        Labels, 0/1.
    class_w : (K, 2) float64
        Negative and positive weight of each class.
    alpha : (n, K) float64
        Duals, updated in place.
    W : (d + 1, K) float64
        Weights (row ``d``: the bias weight ``w_b``), updated in place.
    active : (K,) bool
        The classes to step (the others are left alone).
    lam_n : float
        ``lambda n = 1 / C``.
    bias_mult : float
        VLFeat's ``B``.
    marg : (n, K) float64, optional
        Receives each step's score (default: a scratch array).
    pg : (4, K) float64, optional
        Shrinking bounds (see :func:`_sdca_pairs`; default: none shrinks).
    shrunk : (n, K) bool, optional
        Which pairs are skipped, updated (default: none).
    """
    n, K = alpha.shape
    act = np.flatnonzero(np.asarray(active, bool))
    if marg is None:
        marg = np.empty((n, K))
    if pg is None:
        pg = np.array([[np.inf] * K, [-np.inf] * K, [-np.inf] * K, [np.inf] * K])
    if shrunk is None:
        shrunk = np.zeros((n, K), np.bool_)
    d = X.shape[1]
    Wt = np.ascontiguousarray(W[:d, act].T)
    wb = np.ascontiguousarray(W[d, act])
    a, mg, sh = (
        np.ascontiguousarray(alpha[:, act]),
        np.ascontiguousarray(marg[:, act]),
        np.ascontiguousarray(shrunk[:, act]),
    )
    pga = np.ascontiguousarray(pg[:, act])
    X = np.ascontiguousarray(X)
    _sdca_pairs(
        X,
        np.arange(len(X), dtype=np.int64),
        np.asarray(pos, np.int64),
        np.ascontiguousarray(Y[:, act]),
        np.ascontiguousarray(class_w[act]),
        a,
        Wt,
        wb,
        float(lam_n),
        float(bias_mult),
        mg,
        pga,
        sh,
        np.full(n, np.nan),
        _step_tile(X),
        _class_groups(len(act)),
    )
    W[:d, act], W[d, act] = Wt.T, wb
    alpha[:, act], marg[:, act], shrunk[:, act], pg[:, act] = a, mg, sh, pga


@numba.njit(cache=True, nogil=True, fastmath=False)
def _sdca_gram_epoch(Q, order, Y, class_w, alpha, S, lam_n, bb):  # pragma: no cover
    """One epoch of VLFeat's dual coordinate steps in the dual's own terms (the Gram path).

    Q (n, n) float64: ``x_i.x_j``; order (n,) int64: the rows' visiting order; Y (n, K) int8; class_w (K, 2)
    float64; alpha (n, K) float64, updated; S (K, n) float64: every row's score ``w.x + B w_b`` under the
    current duals, kept exact by each step (``S_k += delta / (lambda n) (Q_i + B^2)``); lam_n: ``lambda n``;
    bb: ``B^2``.  The steps of :func:`_sdca_pairs`, each costing ``n`` instead of ``d``.
    """
    n = Q.shape[0]
    K = S.shape[0]
    for t in range(order.shape[0]):
        i = order[t]
        q = (Q[i, i] + bb) / lam_n
        for k in range(K):
            s = class_w[k, Y[i, k]]
            if s <= 0.0:
                continue
            y = 2.0 * Y[i, k] - 1.0
            if q == 0.0:
                alpha[i, k] = y * s
                continue
            a = alpha[i, k]
            new = _dual_step(y, s, q, a, S[k, i])
            delta = new - a
            if delta != 0.0:
                alpha[i, k] = new
                c = delta / lam_n
                for j in range(n):
                    S[k, j] += c * (Q[i, j] + bb)


def gram_applies(n_rows: int, n_features: int) -> bool:
    """Whether SDCA takes the Gram path for ``n_rows`` rows of ``n_features`` (mapped) features.

    Parameters
    ----------
    n_rows, n_features : int

    Returns
    -------
    bool
        ``n_rows <= GRAM_MAX_ROWS``, ``n_features >= n_rows`` and the rows fit :data:`IN_MEMORY_BYTES` as float32.
    """
    return 0 < n_rows <= GRAM_MAX_ROWS and n_features >= n_rows and 4 * n_rows * n_features <= IN_MEMORY_BYTES


def _gram(X, block=1024):
    """``X X'`` in float64, ``(n, n)``, a block of rows at a time (X float32 is converted per block)."""
    n = len(X)
    Q = np.empty((n, n))
    for a in range(0, n, block):
        Xa = np.asarray(X[a : a + block], np.float64)
        for b in range(0, a + 1, block):
            Xb = Xa if b == a else np.asarray(X[b : b + block], np.float64)
            Q[a : a + block, b : b + block] = Xa @ Xb.T
            if b != a:
                Q[b : b + block, a : a + block] = Q[a : a + block, b : b + block].T
    return Q


# -- the solver ----------------------------------------------------------------------------------------------


class _BufferedMap:
    """A fitted :class:`~phow_baseline.classification.kernel_map.HomogeneousKernelMap` applied chunk after
    chunk into one reused buffer: each result is valid until the next call (every reader of the chunks
    uses or copies a chunk before asking for the next).  Its outputs are finite by construction (a finite
    table, finite inputs checked before), so they are not checked again.
    """

    finite_output = True

    def __init__(self, kernel_map):
        self.kernel_map = kernel_map
        self._out: np.ndarray | None = None

    def output_width(self, width: int) -> int:
        """Mapped features of ``width`` inputs."""
        return int(width) * self.kernel_map.dim_per_input

    def __call__(self, X):
        X = np.ascontiguousarray(X, np.float32)
        km = self.kernel_map
        if X.ndim != 2 or X.shape[1] != getattr(km, "n_features_in_", None):
            return km.transform(X)  # its own error
        shape = (X.shape[0], X.shape[1] * km.dim_per_input)
        if self._out is None or self._out.shape[0] < shape[0] or self._out.shape[1] != shape[1]:
            self._out = np.empty(shape, np.float32)
        return km._transform_into(X, self._out[: shape[0]])


def _as_transform(transform) -> Callable | None:
    if transform is None:
        return None
    if hasattr(transform, "_transform_into"):  # VLFeat's map: every chunk mapped into one buffer (no page faults)
        return _BufferedMap(transform)
    if hasattr(transform, "transform"):  # a fitted kernel map (HomogeneousKernelMap, AdditiveChi2Map)
        return transform.transform
    if callable(transform):
        return transform
    raise TypeError(f"transform must be None, a callable or a fitted kernel map, got {type(transform).__name__}")


def _piece_rows(width: int) -> int:
    """Rows of ``width`` float32 features in a piece of :data:`PIECE_BYTES` (at least one)."""
    return max(1, PIECE_BYTES // max(1, 4 * int(width)))


def _checked_chunks(source, fn, chunks):
    """``(X, pos, where)`` of ``chunks`` (a source's epoch), checked (finite, one dimension) and mapped by ``fn``,
    in pieces of at most :data:`PIECE_BYTES` of mapped rows (the rows in order, as the chunks hold them).
    """
    checked = getattr(source, "checks_finite", False)
    for X, pos, where in chunks:
        if X.ndim != 2 or X.shape[1] != source.n_features:
            raise ValueError(
                f"{where}: {X.shape[1] if X.ndim == 2 else X.shape} feature columns, expected "
                f"{source.n_features} (the store's shards disagree in dimension)"
            )
        bad = None if checked else ~np.isfinite(X)
        if bad is not None and bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise ValueError(
                f"{where}: {int(bad.sum())} non-finite feature value(s) (NaN or infinity) in "
                f"{len(rows)} row(s), training rows {pos[rows][:10].tolist()}; re-encode those images"
            )
        if fn is None:
            step = _piece_rows(X.shape[1])
            for lo in range(0, len(pos), step):
                yield X[lo : lo + step], pos[lo : lo + step], where
            continue
        width = getattr(fn, "output_width", None)
        # a map of known width maps piece by piece (its output stays in the cache); another maps the chunk
        step = _piece_rows(width(X.shape[1])) if width is not None else len(pos)
        for lo in range(0, len(pos), step):
            part = pos[lo : lo + step]
            Z = np.ascontiguousarray(fn(X[lo : lo + step]), dtype=np.float32)
            finite = getattr(fn, "finite_output", False) or np.isfinite(Z).all()
            if Z.ndim != 2 or Z.shape[0] != len(part) or not finite:
                raise ValueError(
                    f"{where}: the transform gave {Z.shape} values with non-finite entries, "
                    f"or not one row per input row"
                )
            sub = _piece_rows(Z.shape[1]) if width is None else len(part)
            for lo2 in range(0, len(part), sub):
                yield Z[lo2 : lo2 + sub], part[lo2 : lo2 + sub], where


class _Pass(SimpleNamespace):
    """The working state of one pass of a solver (:meth:`SDCASolver._begin_pass`)."""


class SDCAStopped(Exception):
    """Raised by an ``on_epoch`` callback to stop training after a checkpoint (tests stand it in for a kill)."""


class SDCASolver:
    """The state and loop of SDCA for ``K`` hinge-loss SVMs on the same rows (see the module's text).

    Parameters
    ----------
    Y : (n, K) array of 0/1
        Labels of the ``n`` training rows, one column per SVM.
    C : float
        Inverse regularisation, ``lambda = 1 / (C n)``.
    class_weights : (K, 2) array of float, optional
        Weight of the negatives and the positives of each class (default 1 and 1).
    tol : float
        Relative duality-gap tolerance, ``(P - D) / P`` (default :data:`DEFAULT_GAP_TOL`).
    max_epochs : int, optional
        Passes over the rows at most (default :data:`DEFAULT_MAX_EPOCHS`).
    seed : int
        Seeds the row order of every epoch.
    bias_multiplier : float
        VLFeat's ``B`` (default 1).
    n_threads : int
        BLAS threads of the GEMMs (``threadpoolctl``; OpenBLAS splits a GEMM's output between threads, so
        the result does not depend on it) and Numba threads of the steps (they split the classes, so
        neither does the result).
    class_names : sequence of str, optional
        Names of the classes for messages (default ``"class k"``).
    within : tuple (int, array of int), optional
        ``(N, members)``: these ``n`` rows are the rows ``members`` (increasing, ``n`` of them) of ``N``
        rows, and each epoch visits them in the order of ``N`` rows' permutation
        (``default_rng([seed, epoch]).permutation(N)`` restricted to ``members``).  A cross-fitting fold's
        model draws its order from all the rows this way, so that one pass over all the rows serves every
        fold's model and the final one (:func:`run_together`).  Default: a permutation of the ``n`` rows.

    Attributes
    ----------
    epochs_done : int
        Update passes done.
    finished : bool
        Every class is certified (converged or scored after the last epoch).
    duality_gap, primal, dual : (K,) float64
        Of each class's returned weights (NaN until certified).
    n_epochs : (K,) int64
        Epochs behind each class's returned weights.
    time_s : (K,) float64
        Seconds of training (across resumes) until each class's weights were certified.
    converged : (K,) bool
        ``duality_gap / primal < tol``.
    gap_history, primal_history, dual_history : (E, K) float64
        Per epoch ``e = 1..E``, the objectives of the weights after epoch ``e`` (NaN after a class stopped).
    """

    def __init__(
        self,
        Y,
        C,
        class_weights=None,
        tol=DEFAULT_GAP_TOL,
        max_epochs=None,
        seed=0,
        bias_multiplier=BIAS_MULTIPLIER,
        n_threads=1,
        class_names=None,
        within=None,
    ):
        Y = np.asarray(Y)
        if Y.ndim != 2 or not np.isin(Y, (0, 1)).all():
            raise ValueError(f"Y must be a 0/1 label matrix (n, n_classes), got shape {Y.shape}")
        if Y.shape[0] < 1 or Y.shape[1] < 1:
            raise ValueError(f"SDCA needs at least one row and one class, got Y of shape {Y.shape}")
        if not (isinstance(C, numbers.Real) and float(C) > 0):
            raise ValueError(f"C must be positive, got {C!r}")
        if not (isinstance(tol, numbers.Real) and float(tol) >= 0):
            raise ValueError(f"tol must be >= 0, got {tol!r}")
        if not (isinstance(bias_multiplier, numbers.Real) and float(bias_multiplier) >= 0):
            raise ValueError(f"bias_multiplier must be >= 0, got {bias_multiplier!r}")
        max_epochs = DEFAULT_MAX_EPOCHS if max_epochs is None else max_epochs
        if not isinstance(max_epochs, numbers.Integral) or int(max_epochs) < 1:
            raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}")
        self.Y = np.ascontiguousarray(Y, dtype=np.int8)
        n, K = self.Y.shape
        cw = np.ones((K, 2)) if class_weights is None else np.asarray(class_weights, np.float64)
        if cw.shape != (K, 2) or not np.isfinite(cw).all() or (cw < 0).any():
            raise ValueError(f"class_weights must be (n_classes, 2) = {(K, 2)} non-negative numbers, got {cw.shape}")
        self.class_weights = np.ascontiguousarray(cw)
        self.C, self.tol, self.max_epochs, self.seed = float(C), float(tol), int(max_epochs), int(seed)
        self.bias_multiplier = float(bias_multiplier)
        self.lam = 1.0 / (self.C * n)
        self.n_threads = max(1, int(n_threads))
        self.class_names = [f"class {k}" for k in range(K)] if class_names is None else [str(c) for c in class_names]
        self.n_features: int | None = None  # known from the first chunk (after the transform)
        self.W = np.zeros((1, K))  # (d + 1, K) float64: row d the bias weights; d = 0 until the first chunk
        self.alpha = np.zeros((n, K))
        self.active = np.ones(K, bool)
        self.epochs_done = 0
        self.finished = False
        self.pending_dual = np.full(K, np.nan)  # D and lambda/2 ||w||^2 after epochs_done passes
        self.pending_reg = np.full(K, np.nan)
        nan = np.full(K, np.nan)
        self.duality_gap, self.primal, self.dual = nan.copy(), nan.copy(), nan.copy()
        self.n_epochs = np.zeros(K, np.int64)
        self.time_s = np.zeros(K)
        self.converged = np.zeros(K, bool)
        self.gap_history = np.zeros((0, K))
        self.primal_history = np.zeros((0, K))
        self.dual_history = np.zeros((0, K))
        self.elapsed_s = 0.0
        # shrinking (liblinear's): each row's last scores, whether it is skipped, the bounds of the last pass
        self.marg = np.zeros((n, K))
        self.shrunk = np.zeros((n, K), bool)
        self.pg_bounds = np.array([[np.inf] * K, [-np.inf] * K])
        self.certify_next = False
        self.unshrink_eps = np.full(K, UNSHRINK_PG_RANGE)
        self._row_sq = np.full(n, np.nan)  # each row's ||x||^2 once computed (not saved: recomputed alike)
        self.within_n, self.within_rows, self._local_of = n, None, None
        self.fold: int | None = None  # the cross-fitting model this is (OneVsRestSVM.fit_store_folds), if any
        if within is not None:
            self._set_within(*within)
        self._warn_degenerate()

    def _set_within(self, n_all, members):
        """Draw each epoch's order from ``n_all`` rows, of which these are ``members`` (see ``within``)."""
        members = np.asarray(members, np.int64).reshape(-1)
        n_all = int(n_all)
        if (
            len(members) != self.n_rows
            or (len(members) and (members[0] < 0 or members[-1] >= n_all))
            or (np.diff(members) <= 0).any()
        ):
            raise ValueError(
                f"within: {len(members)} increasing positions in 0..{n_all - 1} expected for {self.n_rows} rows"
            )
        self.within_n, self.within_rows = n_all, members
        self._local_of = np.full(n_all, -1, np.int64)
        self._local_of[members] = np.arange(len(members))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """The rows' visiting order in ``epoch``: a seeded permutation (of the parent rows, see ``within``)."""
        perm = np.random.default_rng([self.seed, int(epoch)]).permutation(self.within_n)
        if self._local_of is None:
            return perm
        local = self._local_of[perm]
        return local[local >= 0]

    @property
    def n_rows(self) -> int:
        """Number of training rows ``n``."""
        return self.Y.shape[0]

    @property
    def n_classes(self) -> int:
        """Number of SVMs ``K``."""
        return self.Y.shape[1]

    def _warn_degenerate(self):
        npos = self.Y.sum(0, dtype=np.int64)
        for k in np.flatnonzero((npos == 0) | (npos == self.n_rows)):
            which = "positive" if npos[k] == 0 else "negative"
            warnings.warn(
                f"{self.class_names[k]} has no {which} example among the {self.n_rows} training rows: "
                f"its SVM is trained as the others, and learns only a bias (every score "
                f"{'negative' if npos[k] == 0 else 'positive'})",
                UserWarning,
                stacklevel=3,
            )

    # -- public results ------------------------------------------------------------------------------------
    @property
    def coef(self) -> np.ndarray:
        """``(K, d)`` float64 weights (zeros before any row was seen)."""
        return self.W[:-1].T.copy()

    @property
    def intercept(self) -> np.ndarray:
        """``(K,)`` float64 intercepts ``B w_b``."""
        return self.bias_multiplier * self.W[-1]

    # -- training ------------------------------------------------------------------------------------------
    def run(self, source, transform=None, checkpoint=None, on_epoch=None, gram=None) -> SDCASolver:
        """Train until every class is certified (converged, or scored after ``max_epochs``).

        Parameters
        ----------
        source : ArrayRows or StoreRows
            The ``n`` rows (``source.n_rows`` must equal ``len(Y)``).
        transform : callable or fitted kernel map, optional
            Applied to each chunk as read (e.g. the homogeneous kernel map).
        checkpoint : path, optional
            Where the state is saved (``.npz``, atomically) after every epoch.
        on_epoch : callable, optional
            Called with the solver after each epoch's checkpoint; it may raise (e.g. :class:`SDCAStopped`)
            to stop.
        gram : tuple, optional
            ``(Q, X)``: the Gram matrix ``X X'`` (float64) of the rows ``X`` (float32, mapped; ``source``'s),
            computed once for several trainings on rows of the same features (the folds of a
            cross-fitting): the Gram path without computing it; the rule of :func:`gram_applies` must hold.

        Returns
        -------
        SDCASolver
            ``self``.
        """
        if source.n_rows != self.n_rows:
            raise ValueError(f"{source.n_rows} feature rows for {self.n_rows} label rows")
        from threadpoolctl import threadpool_limits

        fn = _as_transform(transform)
        numba_threads = numba.get_num_threads()
        numba.set_num_threads(max(1, min(self.n_threads, int(numba.config.NUMBA_NUM_THREADS))))  # type: ignore[attr-defined]
        try:
            with threadpool_limits(limits=self.n_threads, user_api="blas"):
                self._run_any(source, fn, checkpoint, on_epoch, gram)
        finally:
            numba.set_num_threads(numba_threads)
        return self

    def _run_any(self, source, fn, checkpoint, on_epoch, gram):
        """The Gram path or the rows' path, under the solver's thread limits."""
        Q = None
        if gram is not None:
            Q, X = gram
            if Q.shape != (self.n_rows, self.n_rows) or len(X) != self.n_rows:
                raise ValueError(f"a Gram matrix {Q.shape} and {len(X)} rows for {self.n_rows} label rows")
        else:
            X = self._gram_rows(source, fn) if not self.finished else None
        if X is not None and not self.finished:
            if self.n_features is None:
                self.n_features = X.shape[1]
                self.W = np.zeros((X.shape[1] + 1, self.n_classes))
            self._run_gram(X, checkpoint, on_epoch, Q)
        else:
            self._run(source, fn, checkpoint, on_epoch)

    # -- the Gram path -------------------------------------------------------------------------------------
    def _gram_rows(self, source, fn):
        """All ``n`` rows (mapped) as one float32 array when the Gram path applies to them, else None.

        The Gram path applies where ``n <= GRAM_MAX_ROWS``, the rows (after the transform) have ``d >= n``
        features and fit :data:`IN_MEMORY_BYTES`: a rule on the shape alone, so the in-memory and the
        out-of-core paths take the same one (same bits).
        """
        n = self.n_rows
        if not gram_applies(n, n):
            return None
        X: np.ndarray | None = None
        if isinstance(source, ArrayRows) and fn is None:
            X = source.X
        else:
            for chunk, pos in self._read(source, fn, 0):
                if X is None:
                    if not gram_applies(n, chunk.shape[1]):
                        return None
                    X = np.empty((n, chunk.shape[1]), np.float32)
                X[pos] = chunk
        if X is None:
            raise ValueError("no feature row to train on")
        d = X.shape[1]
        if not gram_applies(n, d):
            return None
        if self.n_features is None:
            self.n_features = d
            self.W = np.zeros((d + 1, self.n_classes))
        elif d != self.n_features:
            raise ValueError(f"{d} features, the checkpoint has {self.n_features}")
        return X

    def _run_gram(self, X, checkpoint, on_epoch, Q=None):
        """SDCA's epochs in the dual's own terms: the same steps in the same order as the rows' path, each
        costing ``O(n)`` with the Gram matrix ``Q = X X'`` (computed once, ``n^2 d``) instead of ``O(d)``.

        Every row's score is kept exact by each step, so the gap of every epoch is exact and costs one
        ``(n, n) x (n, K)`` GEMM (the scores recomputed from the duals, which also removes the steps' rounding
        drift): a class stops at the epoch its gap is below ``tol``, with those duals.  The weights
        ``[w, w_b] = [X, B]' alpha / (lambda n)`` are computed at the end (and for each checkpoint).  The
        state is the duals: a resumed run recomputes ``Q`` and goes on bit for bit.
        """
        t0 = time.perf_counter()
        Q = _gram(X) if Q is None else Q
        lam_n = self.lam * self.n_rows
        bb = self.bias_multiplier**2
        self.elapsed_s += time.perf_counter() - t0
        while not self.finished:
            t0 = time.perf_counter()
            act = np.flatnonzero(self.active)
            final = self.epochs_done >= self.max_epochs
            if not final:
                alpha = np.ascontiguousarray(self.alpha[:, act])
                S = self._gram_scores(Q, alpha, lam_n, bb)
                order = self._epoch_order(self.epochs_done)
                _sdca_gram_epoch(
                    Q,
                    order.astype(np.int64),
                    np.ascontiguousarray(self.Y[:, act]),
                    np.ascontiguousarray(self.class_weights[act]),
                    alpha,
                    S,
                    lam_n,
                    bb,
                )
                self.alpha[:, act] = alpha
                self.epochs_done += 1
            # the exact objectives of the duals now
            alpha = np.ascontiguousarray(self.alpha[:, act])
            S = self._gram_scores(Q, alpha, lam_n, bb)
            reg = np.full(self.n_classes, np.nan)
            reg[act] = 0.5 * self.lam * (alpha * S.T).sum(0) / lam_n
            loss = np.zeros(self.n_classes)
            Ya = self.Y[:, act]
            sw = np.where(Ya == 1, self.class_weights[act, 1], self.class_weights[act, 0])
            loss[act] = (sw * np.maximum(0.0, 1.0 - (2.0 * Ya - 1.0) * S.T)).sum(0)
            self.pending_reg = reg
            dual = np.full(self.n_classes, np.nan)
            dual[act] = ((2.0 * Ya - 1.0) * alpha).sum(0) / self.n_rows - reg[act]
            self.pending_dual = dual
            if not final:
                self._append_history()
            self.elapsed_s += time.perf_counter() - t0
            self._certify(loss, self.W, self.alpha, final=final)  # W is set from the duals below
            if self.finished or checkpoint is not None:
                self._gram_weights(X, lam_n)
            if checkpoint is not None:
                from ..io import atomic_save_npz

                atomic_save_npz(checkpoint, self.checkpoint())
            if on_epoch is not None:
                on_epoch(self)

    @staticmethod
    def _gram_scores(Q, alpha, lam_n, bb):
        """``S (K, n)``: every row's score under the duals, ``((Q + B^2) alpha / (lambda n))'``."""
        S = (Q @ alpha).T / lam_n
        S += bb * alpha.sum(0)[:, None] / lam_n
        return np.ascontiguousarray(S)

    def _gram_weights(self, X, lam_n, block=1024):
        """``W = [X, B]' alpha / (lambda n)`` from the duals (float64, a block of rows at a time)."""
        d = X.shape[1]
        W = np.zeros((d + 1, self.n_classes))
        for a in range(0, len(X), block):
            W[:d] += np.asarray(X[a : a + block], np.float64).T @ self.alpha[a : a + block]
        W[:d] /= lam_n
        W[d] = self.bias_multiplier * self.alpha.sum(0) / lam_n
        self.W = W

    def _run(self, source, fn, checkpoint, on_epoch):
        while not self.finished:
            t0 = time.perf_counter()
            plan = self._begin_pass()
            for X, pos in self._read(source, fn, self.epochs_done, plan.read):
                self._pass_chunk(plan, X, pos)
            self._end_pass(plan, t0)
            if checkpoint is not None:
                from ..io import atomic_save_npz

                atomic_save_npz(checkpoint, self.checkpoint())
            if on_epoch is not None:
                on_epoch(self)

    def _read(self, source, fn, epoch, keep=None):
        """The chunks of ``epoch`` (only the rows where ``keep``), checked (finite, one dimension) and mapped."""
        kwargs = {} if keep is None else {"keep": keep}
        if self._local_of is not None:
            kwargs["order"] = self._epoch_order(epoch)
        for X, pos, where in _checked_chunks(source, fn, source.epoch(self.seed, epoch, **kwargs)):
            self._take_dimension(X.shape[1], where)
            yield X, pos

    def _take_dimension(self, d: int, where: str):
        """Size the weights at the first chunk; refuse a chunk of another dimension, naming ``where``."""
        if self.n_features is None:
            self.n_features = d
            self.W = np.zeros((d + 1, self.n_classes))
        elif d != self.n_features:
            raise ValueError(
                f"{where}: {d} features (after the transform), expected {self.n_features} "
                "(the store's shards disagree in dimension, or the checkpoint is of other features)"
            )

    # one pass, in three parts, so that one reading of the rows can serve several solvers (run_together)
    def _begin_pass(self) -> _Pass:
        """The state of the next pass: an update pass (SDCA's steps) or, after ``max_epochs``, the scoring pass.

        ``plan.read`` is the rows the pass reads (None: all of them).
        """
        plan = _Pass()
        plan.act = act = np.flatnonzero(self.active)
        plan.read = None
        plan.update = self.epochs_done < self.max_epochs
        # a scoring pass's hinge values, per row (summed in row order at the end of the pass)
        plan.loss_rows = None if plan.update else np.zeros((self.n_rows, len(act)))
        if not plan.update:
            return plan
        e = self.epochs_done
        # a certifying pass scores every row with the weights after epoch e before its updates (exact gap);
        # the others read only the rows not shrunk.  Both update the same rows, in the same order.
        plan.certify = certify = self.certify_next and e > 0
        if certify:
            plan.loss_rows = np.zeros((self.n_rows, len(act)))
        plan.snap_W, plan.snap_alpha = (self.W.copy(), self.alpha.copy()) if certify else (self.W, self.alpha)
        # the classes still training, in contiguous arrays of their own
        plan.Y, plan.cw = np.ascontiguousarray(self.Y[:, act]), np.ascontiguousarray(self.class_weights[act])
        plan.alpha = np.ascontiguousarray(self.alpha[:, act])
        plan.marg = np.ascontiguousarray(self.marg[:, act])
        plan.pg = pg = np.empty((4, len(act)))
        pg[:2] = self.pg_bounds[:, act]
        pg[2], pg[3] = -np.inf, np.inf
        plan.shrunk = np.ascontiguousarray(self.shrunk[:, act])
        plan.keep = keep = np.logical_not(plan.shrunk.all(axis=1))  # the rows some class still visits
        plan.read = None if (certify or keep.all()) else keep
        plan.Wt = plan.wb = None
        return plan

    def _pass_chunk(self, plan: _Pass, X, pos, take=None):
        """The pass's work on one chunk of rows: rows ``take`` of ``X`` (default all), at positions ``pos``
        (in the pass's order); the rows are read through ``take``, not copied.
        """
        act = plan.act
        X = np.ascontiguousarray(X)
        take = np.arange(len(X), dtype=np.int64) if take is None else np.asarray(take, np.int64)
        if not plan.update:
            plan.loss_rows[pos] = self._hinge_rows(X, take, pos, self.W[:, act], act)
            return
        if plan.Wt is None:  # the first chunk sized W
            plan.Wt, plan.wb = np.ascontiguousarray(self.W[:-1, act].T), np.ascontiguousarray(self.W[-1, act])
        if plan.certify:
            plan.loss_rows[pos] = self._hinge_rows(X, take, pos, plan.snap_W[:, act], act)
        sel = plan.keep[pos]
        if not sel.all():
            take, pos = take[sel], pos[sel]
        if len(pos):
            _sdca_pairs(
                X,
                take,
                pos,
                plan.Y,
                plan.cw,
                plan.alpha,
                plan.Wt,
                plan.wb,
                self.lam * self.n_rows,
                self.bias_multiplier,
                plan.marg,
                plan.pg,
                plan.shrunk,
                self._row_sq,
                _step_tile(X),
                _class_groups(len(plan.act)),
            )

    def _end_pass(self, plan: _Pass, t0: float):
        """After the pass's chunks: the state, the shrinking, the gap (``t0``: when the pass began)."""
        if not plan.update:  # after the last epoch: certify every class still active with the final weights
            self.elapsed_s += time.perf_counter() - t0
            self._certify(self._pass_loss(plan, self.n_classes), self.W, self.alpha, final=True)
            return
        act, pg, certify = plan.act, plan.pg, plan.certify
        if plan.Wt is None and self.n_features is None:
            raise ValueError("no feature row to train on")
        if plan.Wt is not None:  # else every row was shrunk: nothing moved
            self.W[:-1, act], self.W[-1, act] = plan.Wt.T, plan.wb
        self.alpha[:, act] = plan.alpha
        self.marg[:, act] = plan.marg
        self.shrunk[:, act] = plan.shrunk
        # liblinear's bounds for the next pass: the projected gradient's extremes, or none where they crossed 0
        self.pg_bounds[0, act] = np.where(pg[2] > 0, pg[2], np.inf)
        self.pg_bounds[1, act] = np.where(pg[3] < 0, pg[3], -np.inf)
        self.elapsed_s += time.perf_counter() - t0
        # liblinear's unshrinking, per class: the pairs left have (nearly) converged (the projected gradient's
        # range below the class's epsilon, liblinear's default at first, a tenth of it after each such
        # unshrinking; or no pair left), or its certification failed: every row again for that class
        stalled = np.zeros(self.n_classes, bool)
        pg_range = pg[2] - pg[3]
        stalled[act] = ~(pg_range > self.unshrink_eps[act])
        self.unshrink_eps[act] = np.where(np.isfinite(pg_range) & stalled[act], 0.1, 1.0) * self.unshrink_eps[act]
        if certify:
            tested = self.active.copy()
            self._certify(self._pass_loss(plan, self.n_classes), plan.snap_W, plan.snap_alpha)
            stalled |= tested & self.active
        self.shrunk[:, stalled] = False
        self.pg_bounds[0, stalled], self.pg_bounds[1, stalled] = np.inf, -np.inf
        self.epochs_done += 1
        self._dual_after_pass()
        self._append_history()
        self._estimate_gap()

    def _estimate_gap(self):
        """The gap after this pass estimated from the scores the pass's steps saw (the shrunk rows' from
        their last visit), recorded in the history until certified; below ``tol``, the next pass certifies.
        """
        if self.finished:
            self.certify_next = False
            return
        act = np.flatnonzero(self.active)
        Ya = self.Y[:, act]
        s = np.where(Ya == 1, self.class_weights[act, 1], self.class_weights[act, 0])
        hinge = (s * np.maximum(0.0, 1.0 - (2.0 * Ya - 1.0) * self.marg[:, act])).sum(0) / self.n_rows
        primal = self.pending_reg[act] + hinge
        gap = primal - self.pending_dual[act]
        self.gap_history[-1, act] = gap
        self.primal_history[-1, act] = primal
        self.certify_next = bool((gap < self.tol * primal).any())

    def _hinge_rows(self, X, take, pos, W, classes):
        """Per row ``take`` of ``X`` and class of ``classes``, ``s_i max(0, 1 - y_i (w.x_i + B w_b))``: one
        float64 GEMM of all of ``X`` (a piece of rows, in the cache), its rows ``take`` kept.
        """
        S = (np.asarray(X, np.float64) @ W[:-1])[take] + self.bias_multiplier * W[-1]
        Yc = self.Y[pos][:, classes]
        cw = self.class_weights[classes]
        s = np.where(Yc == 1, cw[:, 1], cw[:, 0])
        return s * np.maximum(0.0, 1.0 - (2.0 * Yc - 1.0) * S)

    @staticmethod
    def _pass_loss(plan: _Pass, n_classes: int) -> np.ndarray:
        """The hinge sums of a scoring pass, added up in row order: the same sums for any chunking of the rows
        (up to BLAS's rounding of each row's score, which may depend on the rows scored with it).
        """
        loss = np.zeros(n_classes)
        if plan.loss_rows is not None:
            loss[plan.act] = plan.loss_rows.sum(0)
        return loss

    def _dual_after_pass(self):
        """``lambda/2 ||[w, w_b]||^2`` and ``D(alpha)`` of the active classes after this pass."""
        reg = 0.5 * self.lam * (self.W**2).sum(0)
        dual_loss = ((2.0 * self.Y - 1.0) * self.alpha).sum(0) / self.n_rows
        self.pending_reg = np.where(self.active, reg, np.nan)
        self.pending_dual = np.where(self.active, dual_loss - reg, np.nan)

    def _certify(self, loss, W_then, alpha_then, final=False):
        """The gap of the weights of ``epochs_done`` passes; stop the classes below ``tol``."""
        primal = self.pending_reg + loss / self.n_rows
        gap = primal - self.pending_dual
        e = self.epochs_done
        if len(self.gap_history) >= e:  # fill the history row of epoch e
            row = e - 1
            self.gap_history[row] = np.where(self.active, gap, self.gap_history[row])
            self.primal_history[row] = np.where(self.active, primal, self.primal_history[row])
        rel = gap / np.maximum(primal, np.finfo(float).tiny)
        stop = self.active & ((rel < self.tol) if not final else True)
        for k in np.flatnonzero(stop):
            self.W[:, k] = W_then[:, k]
            self.alpha[:, k] = alpha_then[:, k]
            self.duality_gap[k], self.primal[k], self.dual[k] = gap[k], primal[k], self.pending_dual[k]
            self.n_epochs[k] = e
            self.time_s[k] = self.elapsed_s
            self.converged[k] = rel[k] < self.tol
        self.active &= ~stop
        if final or not self.active.any():
            self.finished = True

    def _append_history(self):
        K = self.n_classes
        self.gap_history = np.vstack([self.gap_history, np.full((1, K), np.nan)])
        self.primal_history = np.vstack([self.primal_history, np.full((1, K), np.nan)])
        self.dual_history = np.vstack([self.dual_history, self.pending_dual[None]])

    # -- checkpoints ---------------------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """The whole state after an epoch, as arrays (no pickles), keyed like the SGD checkpoint where the
        meaning is the same (``coef``, ``intercept``, ``objective``, ``n_iter``, ``converged``, ``weights``,
        ``alpha`` = lambda, ``epoch_rows``).

        Returns
        -------
        dict of str to ndarray
        """
        d = -1 if self.n_features is None else self.n_features
        W = self.W
        return {
            k: np.array(v)
            for k, v in {
                "format": np.array(CHECKPOINT_FORMAT),
                "solver": np.array("sdca"),
                "coef": W[:-1].T,
                "intercept": self.bias_multiplier * W[-1],
                "bias_weight": W[-1].copy(),
                "dual": self.alpha,
                "labels": self.Y,
                "weights": self.class_weights,
                "alpha": np.array(self.lam),
                "epoch_rows": np.array(self.n_rows),
                "n_features_in": np.array(d),
                "C": np.array(self.C),
                "tol": np.array(self.tol),
                "max_epochs": np.array(self.max_epochs),
                "seed": np.array(self.seed),
                "bias_multiplier": np.array(self.bias_multiplier),
                "epochs_done": np.array(self.epochs_done),
                "finished": np.array(self.finished),
                "active": self.active,
                "pending_dual": self.pending_dual,
                "pending_reg": self.pending_reg,
                "duality_gap": self.duality_gap,
                "primal": self.primal,
                "dual_objective": self.dual,
                "n_iter": self.n_epochs,
                "time_s": self.time_s,
                "converged": self.converged,
                "gap_history": self.gap_history,
                "objective": self.primal_history,
                "dual_history": self.dual_history,
                "elapsed_s": np.array(self.elapsed_s),
                "margins": self.marg,
                "shrunk": self.shrunk,
                "pg_bounds": self.pg_bounds,
                "certify_next": np.array(self.certify_next),
                "unshrink_eps": self.unshrink_eps,
                "within_n": np.array(self.within_n),
                "within_rows": np.zeros(0, np.int64) if self.within_rows is None else self.within_rows,
            }.items()
        }

    @classmethod
    def from_checkpoint(cls, arrays: dict, *, n_threads=1, class_names=None, where="SDCA checkpoint") -> SDCASolver:
        """A solver that goes on from :meth:`checkpoint`'s arrays exactly as if never stopped.

        Parameters
        ----------
        arrays : dict of str to ndarray
        n_threads : int
        class_names : sequence of str, optional
        where : str
            Names the checkpoint in errors (its file).

        Returns
        -------
        SDCASolver
        """
        try:
            fmt = int(arrays["format"])
            if fmt not in (2, 3, CHECKPOINT_FORMAT) or str(arrays["solver"]) != "sdca":
                raise ValueError(f"{where}: not an SDCA checkpoint of format 2 to {CHECKPOINT_FORMAT}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # warned about when the training began
                s = cls(
                    arrays["labels"],
                    float(arrays["C"]),
                    arrays["weights"],
                    float(arrays["tol"]),
                    int(arrays["max_epochs"]),
                    int(arrays["seed"]),
                    float(arrays["bias_multiplier"]),
                    n_threads,
                    class_names,
                )
            n, K = s.Y.shape
            if fmt >= 4 and (int(arrays["within_n"]) != n or len(arrays["within_rows"])):
                s._set_within(int(arrays["within_n"]), arrays["within_rows"])
            d = int(arrays["n_features_in"])
            if d >= 0:
                coef = np.asarray(arrays["coef"], np.float64)
                if coef.shape != (K, d):
                    raise ValueError(f"{where}: weights of shape {coef.shape}, expected {(K, d)}")
                s.n_features = d
                s.W = np.empty((d + 1, K))
                s.W[:-1] = coef.T
                s.W[-1] = np.asarray(arrays["bias_weight"], np.float64)
            s.alpha = np.array(arrays["dual"], np.float64).reshape(n, K)
            s.active = np.array(arrays["active"], bool).reshape(K)
            s.epochs_done, s.finished = int(arrays["epochs_done"]), bool(arrays["finished"])
            s.pending_dual = np.array(arrays["pending_dual"], np.float64).reshape(K)
            s.pending_reg = np.array(arrays["pending_reg"], np.float64).reshape(K)
            s.duality_gap = np.array(arrays["duality_gap"], np.float64).reshape(K)
            s.primal = np.array(arrays["primal"], np.float64).reshape(K)
            s.dual = np.array(arrays["dual_objective"], np.float64).reshape(K)
            s.n_epochs = np.array(arrays["n_iter"], np.int64).reshape(K)
            s.time_s = np.array(arrays["time_s"], np.float64).reshape(K)
            s.converged = np.array(arrays["converged"], bool).reshape(K)
            s.gap_history = np.array(arrays["gap_history"], np.float64).reshape(-1, K)
            s.primal_history = np.array(arrays["objective"], np.float64).reshape(-1, K)
            s.dual_history = np.array(arrays["dual_history"], np.float64).reshape(-1, K)
            s.elapsed_s = float(arrays["elapsed_s"])
            s.marg = np.array(arrays["margins"], np.float64).reshape(n, K)
            # format 2 shrank whole rows and had one epsilon: every class of a shrunk row, the epsilon each
            s.shrunk = np.array(np.broadcast_to(np.array(arrays["shrunk"], bool).reshape(n, -1), (n, K)))
            s.pg_bounds = np.array(arrays["pg_bounds"], np.float64).reshape(2, K)
            s.certify_next = bool(arrays["certify_next"])
            s.unshrink_eps = np.array(np.broadcast_to(np.array(arrays["unshrink_eps"], np.float64), (K,)))
        except KeyError as exc:
            raise ValueError(f"{where}: incomplete SDCA checkpoint (no array {exc})") from None
        return s

    def matches(self, other: SDCASolver) -> bool:
        """Whether ``other`` (e.g. from a checkpoint) is the same training: labels, weights and settings.

        Parameters
        ----------
        other : SDCASolver
            The solver to compare with.

        Returns
        -------
        bool
            True when the labels, sample weights and settings agree, so ``other``'s state can be resumed here.
        """
        return (
            self.Y.shape == other.Y.shape
            and np.array_equal(self.Y, other.Y)
            and np.array_equal(self.class_weights, other.class_weights)
            and (self.C, self.tol, self.max_epochs, self.seed, self.bias_multiplier, self.within_n)
            == (other.C, other.tol, other.max_epochs, other.seed, other.bias_multiplier, other.within_n)
            and (
                (self.within_rows is None and other.within_rows is None)
                or (
                    self.within_rows is not None
                    and other.within_rows is not None
                    and np.array_equal(self.within_rows, other.within_rows)
                )
            )
        )


def load_or_start(checkpoint, fresh: SDCASolver, n_features: int) -> SDCASolver:
    """``fresh``, or the state in ``checkpoint`` when that file holds the same training (same labels,
    weights, settings and feature dimension); an unreadable or different checkpoint is reported with a
    warning naming the file, and training starts from the first epoch.

    Parameters
    ----------
    checkpoint : path
    fresh : SDCASolver
        The solver of this training, not started.
    n_features : int
        The feature dimension the training will see (after the transform), or -1 if not known.

    Returns
    -------
    SDCASolver
    """
    from ..io import DataFileError, load_npz

    path = Path(checkpoint)
    if not path.exists():
        return fresh
    try:
        old = SDCASolver.from_checkpoint(
            load_npz(path), n_threads=fresh.n_threads, class_names=fresh.class_names, where=str(path)
        )
        if not fresh.matches(old):
            raise ValueError(f"{path}: the checkpoint is of another training (labels or settings differ)")
        if old.n_features is not None and n_features >= 0 and old.n_features != n_features:
            raise ValueError(f"{path}: the checkpoint has {old.n_features} features, the data {n_features}")
        return old
    except (DataFileError, ValueError, OSError) as exc:
        warnings.warn(f"{exc}; training from the first epoch", UserWarning, stacklevel=2)
        return fresh


# -- several solvers on one reading of the rows -------------------------------------------------------------


def run_together(solvers, source, transform=None, checkpoint=None, on_epoch=None) -> list[SDCASolver]:
    """Train several solvers on subsets of the same rows, each epoch reading (and mapping) every row once.

    The cross-fitted calibration trains the final SVMs on all ``N`` rows and, for each of ``K`` folds, SVMs
    on the rows outside it: ``K + 1`` trainings over the same rows.  Out of core, each epoch of each
    training read the rows from the shards and applied the kernel map to them (most of an epoch's time);
    here every epoch reads the rows once, in the order of ``default_rng([seed, epoch]).permutation(N)``,
    maps each chunk once and hands each solver its own rows of the chunk (a solver of a subset is made
    with ``within=(N, members)``, so that this order restricted to its rows is its own order).  Each
    solver takes exactly the steps it would take alone (:meth:`SDCASolver.run` on its rows, in its
    order), and its gap's hinge values are added per row in row order as a lone run adds them (each row's
    score comes from a GEMM of the chunk's rows, which BLAS may round otherwise in the last bit).  A row is
    read while some solver still needs it (shrinking); a finished solver reads nothing.

    Parameters
    ----------
    solvers : sequence of SDCASolver
        Not finished ones at the same epoch (as started, or as :func:`load_or_start_together` gives
        them), of the same seed, each over ``source``'s ``N`` rows (``within=None`` and ``n = N``) or a
        subset of them (``within=(N, members)``).
    source : ArrayRows or StoreRows
        The ``N`` rows.
    transform : callable or fitted kernel map, optional
        Applied to each chunk as read, once for all the solvers.
    checkpoint : path, optional
        After every epoch the state of all the solvers in one ``.npz`` (:func:`together_checkpoint`),
        atomically, so that a kill leaves them at the same epoch.
    on_epoch : callable, optional
        Called with each solver that took part in the epoch, after the checkpoint.

    Returns
    -------
    list of SDCASolver
        ``solvers``, trained (each certified: converged, or scored after its ``max_epochs``).
    """
    from threadpoolctl import threadpool_limits

    solvers = list(solvers)
    if not solvers:
        return solvers
    N = source.n_rows
    seeds = {s.seed for s in solvers}
    if len(seeds) != 1:
        raise ValueError(f"solvers trained together share one seed (the row order), got {sorted(seeds)}")
    for s in solvers:
        if s.within_n != N:
            raise ValueError(f"a solver of {s.n_rows} rows drawn from {s.within_n} rows, but the source has {N}")
    fn = _as_transform(transform)
    seed = solvers[0].seed
    threads = max(s.n_threads for s in solvers)
    numba_threads = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, int(numba.config.NUMBA_NUM_THREADS))))  # type: ignore[attr-defined]
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            while True:
                live = [s for s in solvers if not s.finished]
                if not live:
                    break
                t0 = time.perf_counter()
                epochs = sorted({s.epochs_done for s in live})
                if len(epochs) != 1:
                    raise ValueError(f"solvers trained together must be at the same epoch, got epochs {epochs}")
                e = epochs[0]
                plans = [s._begin_pass() for s in live]
                need = np.zeros(N, bool)
                for s, plan in zip(live, plans):
                    local = slice(None) if plan.read is None else plan.read
                    need[np.arange(N)[local] if s.within_rows is None else s.within_rows[local]] = True
                order = np.random.default_rng([seed, e]).permutation(N)
                if not need.all():
                    order = order[need[order]]
                for X, pos, where in _checked_chunks(source, fn, source.epoch(seed, e, order=order)):
                    for s, plan in zip(live, plans):
                        s._take_dimension(X.shape[1], where)
                        if s._local_of is None:
                            s._pass_chunk(plan, X, pos)
                            continue
                        local = s._local_of[pos]
                        mine = local >= 0
                        if mine.all():
                            s._pass_chunk(plan, X, local)
                        elif mine.any():
                            s._pass_chunk(plan, X, local[mine], take=np.flatnonzero(mine))
                for s, plan in zip(live, plans):
                    s._end_pass(plan, t0)
                if checkpoint is not None:
                    from ..io import atomic_save_npz

                    atomic_save_npz(checkpoint, together_checkpoint(solvers))
                if on_epoch is not None:
                    for s in live:
                        on_epoch(s)
    finally:
        numba.set_num_threads(numba_threads)
    return solvers


def together_checkpoint(solvers) -> dict:
    """The state of solvers trained together (:func:`run_together`): each one's :meth:`SDCASolver.checkpoint`
    arrays under ``model<i>.<name>``, and ``n_models``.

    Parameters
    ----------
    solvers : sequence of SDCASolver

    Returns
    -------
    dict of str to ndarray
    """
    out = {
        "format": np.array(CHECKPOINT_FORMAT),
        "solver": np.array("sdca-together"),
        "n_models": np.array(len(solvers)),
    }
    for i, s in enumerate(solvers):
        out.update({f"model{i}.{k}": v for k, v in s.checkpoint().items()})
    return out


def together_epochs(checkpoint) -> int:
    """Epochs done in a checkpoint of trainings together (:func:`together_checkpoint`): 0 where there is none
    or it cannot be read (:func:`load_or_start_together` then says why and starts over).

    Parameters
    ----------
    checkpoint : path or None
        The ``.together.npz`` file.

    Returns
    -------
    int
        The epochs its solvers have done.
    """
    if checkpoint is None or not Path(checkpoint).exists():
        return 0
    try:
        with np.load(checkpoint, allow_pickle=False) as z:
            return int(z["model0.epochs_done"])
    except (OSError, ValueError, KeyError, EOFError):
        return 0


def load_or_start_together(checkpoint, fresh, n_features: int) -> list[SDCASolver]:
    """``fresh`` (solvers to train together), or their state in ``checkpoint`` when that file holds the same
    trainings (as :func:`load_or_start`, for each of them); otherwise a warning names the file and the
    training starts from the first epoch.

    Parameters
    ----------
    checkpoint : path
    fresh : sequence of SDCASolver
        The solvers, not started.
    n_features : int
        The feature dimension the training will see (after the transform), or -1 if not known.

    Returns
    -------
    list of SDCASolver
    """
    from ..io import DataFileError, load_npz

    fresh = list(fresh)
    path = Path(checkpoint)
    if not path.exists():
        return fresh
    try:
        arrays = load_npz(path)
        if str(arrays.get("solver", "")) != "sdca-together" or int(arrays.get("n_models", -1)) != len(fresh):
            raise ValueError(f"{path}: not a checkpoint of {len(fresh)} SDCA trainings together")
        out = []
        for i, f in enumerate(fresh):
            pre = f"model{i}."
            old = SDCASolver.from_checkpoint(
                {k[len(pre) :]: v for k, v in arrays.items() if k.startswith(pre)},
                n_threads=f.n_threads,
                class_names=f.class_names,
                where=f"{path} (model {i})",
            )
            if not f.matches(old):
                raise ValueError(f"{path}: model {i} of the checkpoint is of another training (labels or settings)")
            if old.n_features is not None and n_features >= 0 and old.n_features != n_features:
                raise ValueError(f"{path}: the checkpoint has {old.n_features} features, the data {n_features}")
            out.append(old)
        return out
    except (DataFileError, ValueError, OSError) as exc:
        warnings.warn(f"{exc}; training from the first epoch", UserWarning, stacklevel=2)
        return fresh


def svm_objective(X, Y, coef, intercept, C, class_weights=None, bias_multiplier=BIAS_MULTIPLIER) -> np.ndarray:
    """The primal objective every solver of the package minimises, per class (float64).

    ``lambda/2 (||w||^2 + (b / B)^2) + 1/n sum_i s_i max(0, 1 - y_i (w.x_i + b))`` with
    ``lambda = 1 / (C n)``: the bias is regularised through VLFeat's bias multiplier ``B`` (liblinear's
    ``intercept_scaling``); ``B = 0`` leaves it out.

    Parameters
    ----------
    X : (n, d) array
    Y : (n, K) array of 0/1
    coef : (K, d) array
    intercept : (K,) array
    C : float
    class_weights : (K, 2) array, optional
        Negative and positive weight per class (default 1, 1).
    bias_multiplier : float

    Returns
    -------
    (K,) float64
    """
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y).reshape(len(X), -1)
    coef = np.asarray(coef, np.float64).reshape(Y.shape[1], -1)
    intercept = np.asarray(intercept, np.float64).reshape(-1)
    cw = np.ones((Y.shape[1], 2)) if class_weights is None else np.asarray(class_weights, np.float64)
    lam = 1.0 / (C * len(X))
    reg = (coef**2).sum(1) + ((intercept / bias_multiplier) ** 2 if bias_multiplier > 0 else 0.0)
    s = np.where(Y == 1, cw[:, 1], cw[:, 0])
    hinge = np.maximum(0.0, 1.0 - (2.0 * Y - 1.0) * (X @ coef.T + intercept))
    return 0.5 * lam * reg + (s * hinge).mean(0)
