"""VLAD (Jegou et al. 2010) with VLFeat's ``vl_vlad`` semantics, per spatial region.

For descriptors ``x_i`` assigned to visual words ``mu_k`` with weights
``q_ik`` (here hard: ``q_ik = 1`` for the nearest word, found by the exact
quantizer :func:`phow_baseline.encoding.quantize.quantize`), ``vl/vlad.c`` computes
for every word

    v_k = sum_i q_ik x_i - (sum_i q_ik) mu_k            (unnormalized)
    v_k = (sum_i q_ik x_i) / (sum_i q_ik) - mu_k         (normalize_mass)

(``v_k = 0`` for a word without mass), then optionally, in this order and
per word, the signed square root of every entry (``square_root``) and the
L2 normalization of ``v_k`` (``normalize_components``, "intra-normalization"
of Arandjelovic and Zisserman 2013), and finally the L2 normalization of the
whole ``K d`` vector unless ``unnormalized``; norms are floored at ``1e-12``.

The sums per (region, word) are one pass of a Numba kernel over the
descriptors, whatever the number of regions.
"""

from __future__ import annotations

import numba
import numpy as np

from .fisher import REGIONS_1X1_2X2, _RegionEncoderBase, check_regions, region_index, region_weights

#: Visual words of the VLAD vocabulary by default (Jegou et al. 2010 use 16-256; 64 is their common choice).
DEFAULT_VLAD_WORDS = 64


@numba.njit(cache=True, nogil=True)
def _vlad_sums(X, words, cells, sums, mass, k):
    """sums[cells[i, l] * k + words[i]] += X[i]; mass[...] += 1, for every level l (float64 sums)."""
    n, d = X.shape
    L = cells.shape[1]
    for i in range(n):
        w = words[i]
        for l in range(L):
            r = cells[i, l] * k + w
            mass[r] += 1.0
            row = sums[r]
            for t in range(d):
                row[t] += X[i, t]


def _finish(sums, mass, centers, *, unnormalized, square_root, normalize_components, normalize_mass):
    """``vl_vlad``'s steps on per-word sums ``(..., K, d)`` and masses ``(..., K)``: float64 ``(..., K d)``."""
    C = np.asarray(centers, np.float64)
    m = mass[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalize_mass:
            v = np.where(m > 0, sums / np.where(m > 0, m, 1.0) - C, 0.0)
        else:
            v = np.where(m > 0, sums - m * C, 0.0)
    if square_root:
        v = np.sign(v) * np.sqrt(np.abs(v))
    if normalize_components:
        v = v / np.maximum(np.sqrt((v * v).sum(-1, keepdims=True)), 1e-12)
    v = v.reshape(v.shape[:-2] + (-1,))
    if not unnormalized:
        v = v / np.maximum(np.sqrt((v * v).sum(-1, keepdims=True)), 1e-12)
    return v


def _check(descriptors, centers, words, n_threads=None):
    X = np.ascontiguousarray(descriptors, dtype=np.float32)
    C = np.ascontiguousarray(centers, dtype=np.float32)
    if X.ndim != 2 or C.ndim != 2 or X.shape[1] != C.shape[1]:
        raise ValueError(f"descriptors {X.shape} and centers {C.shape} must be (n, d) and (k, d)")
    if words is None:
        from .quantize import quantize, single_blas_thread

        if not len(X):
            words = np.zeros(0, np.int32)
        elif n_threads == 1:
            # one thread means one BLAS thread too: OpenBLAS's own threads on many small GEMMs are up to
            # 16x slower on a loaded machine (measured: 2.3 s vs 0.14 s for 50,000 x 64 words)
            with single_blas_thread():
                words = quantize(X, C, n_threads=1)
        else:
            words = quantize(X, C, n_threads=n_threads)
    words = np.ascontiguousarray(words, dtype=np.int64)
    if words.shape != (len(X),) or (len(words) and (words.min() < 0 or words.max() >= len(C))):
        raise ValueError(f"words must be {len(X)} indices in [0, {len(C)})")
    return X, C, words


def vlad(
    descriptors,
    centers,
    words=None,
    *,
    unnormalized=False,
    square_root=False,
    normalize_components=False,
    normalize_mass=False,
) -> np.ndarray:
    """VLAD of a set of descriptors, as VLFeat's ``vl_vlad`` computes it with hard assignments.

    Parameters
    ----------
    descriptors : (n, d) array
        The descriptors (converted to float32).
    centers : (K, d) array
        The k-means words.
    words : (n,) int array, optional
        The word of each descriptor (default: the nearest, exactly).
    unnormalized, square_root, normalize_components, normalize_mass : bool
        ``vl_vlad``'s options (see the module docstring); all ``False``
        gives the L2-normalized sum of residuals, VLFeat's default.

    Returns
    -------
    (K d,) float32
        ``[v_1 .. v_K]``, word by word, in descriptor units (unit L2 norm unless
        ``unnormalized``, or all zero).

    Raises
    ------
    ValueError
        If the shapes disagree or a word index is out of range.
    """
    X, C, words = _check(descriptors, centers, words)
    K, d = C.shape
    sums = np.zeros((K, d))
    mass = np.zeros(K)
    _vlad_sums(X, words, np.zeros((len(X), 1), np.int32), sums, mass, K)
    return _finish(
        sums,
        mass,
        C,
        unnormalized=unnormalized,
        square_root=square_root,
        normalize_components=normalize_components,
        normalize_mass=normalize_mass,
    ).astype(np.float32)


def vlad_regions(
    descriptors,
    frames_xy,
    width,
    height,
    centers,
    words=None,
    *,
    regions=REGIONS_1X1_2X2,
    level_weights=None,
    square_root=True,
    normalize_components=True,
    normalize_mass=False,
    normalize=True,
    n_threads=None,
) -> np.ndarray:
    """VLADs of an image's spatial regions, each L2-normalized, weighted, concatenated.

    Each region's VLAD is :func:`vlad` of the region's descriptors with the
    given options (and its global L2), multiplied by its weight
    (:func:`phow_baseline.encoding.fisher.region_weights`); ``normalize`` then
    L2-normalizes the concatenation.  Defaults: signed square root and
    intra-normalization (Arandjelovic and Zisserman 2013).

    Parameters
    ----------
    descriptors : (n, d) array
        The image's (post-processed) descriptors, converted to float32.
    frames_xy : (n, 2) array
        ``x, y`` of each descriptor, 0-based pixels.
    width, height : int
        Image size in pixels.
    centers : (K, d) array
        The k-means words.
    words : (n,) int array, optional
        The word of each descriptor (default: the nearest, exactly).
    regions : str or sequence of (columns, rows)
        The layout (:func:`~phow_baseline.encoding.fisher.check_regions`; default
        the whole image and its 2 x 2 quarters).
    level_weights : sequence of float, optional
        Weight of each level (default ``1 / sqrt(cells)``).
    square_root : bool
        Signed square root of every entry (default True).
    normalize_components : bool
        L2-normalize each word's residual (intra-normalization; default True).
    normalize_mass : bool
        Divide each word's residual sum by its mass (default False).
    normalize : bool
        L2-normalize the concatenation (default True).
    n_threads : int, optional
        Threads of the nearest-word search (default: all cores).

    Returns
    -------
    (n_regions * K d,) float32
        The regions' VLADs, concatenated in
        :func:`~phow_baseline.encoding.fisher.region_index`'s order.

    Raises
    ------
    ValueError
        If the shapes disagree or frames and descriptors differ in number.
    """
    X, C, words = _check(descriptors, centers, words, n_threads)
    cells, n_regions = region_index(frames_xy, width, height, regions)
    if len(cells) != len(X):
        raise ValueError(f"{len(cells)} frames but {len(X)} descriptors")
    K, d = C.shape
    sums = np.zeros((n_regions * K, d))
    mass = np.zeros(n_regions * K)
    _vlad_sums(X, words, cells, sums, mass, K)
    enc = _finish(
        sums.reshape(n_regions, K, d),
        mass.reshape(n_regions, K),
        C,
        unnormalized=False,
        square_root=square_root,
        normalize_components=normalize_components,
        normalize_mass=normalize_mass,
    )
    enc *= region_weights(regions, level_weights)[:, None]
    enc = enc.ravel()
    if normalize:
        enc /= max(float(np.sqrt(enc @ enc)), 1e-12)
    return enc.astype(np.float32)


class VladEncoder(_RegionEncoderBase):
    """VLAD of PHOW descriptors per spatial region: PHOW output -> fixed-length vector.

    ``fit`` samples descriptors, applies RootSIFT (and an optional PCA) and
    fits a k-means vocabulary (:class:`phow_baseline.encoding.vocabulary.Vocabulary`);
    ``transform`` assigns each descriptor to its nearest word exactly and
    returns :func:`vlad_regions`.  Defaults: RootSIFT, no PCA, 64 words,
    signed square root and intra-normalization, regions 1x1 + 2x2:
    ``5 * 64 * 128 = 40,960`` dims.

    Parameters
    ----------
    n_words : int
        Visual words ``K`` (default 64, :data:`DEFAULT_VLAD_WORDS`).
    pca_dims : int or None
        PCA dimensions (default None: no PCA).
    whiten : bool
        Whitened PCA.
    root_sift : bool
        RootSIFT before the PCA and the words (default True).
    regions : str or sequence of (columns, rows)
        ``"1x1+2x2"`` (default), ``"1x1+3x1"`` or explicit grids.
    level_weights : sequence of float, optional
        Weight of each level's regions (default ``1/sqrt(cells)``).
    square_root : bool
        Signed square root per region (``vl_vlad``'s ``SquareRoot``; default True).
    normalize_components : bool
        Intra-normalization per word (``NormalizeComponents``; default True).
    normalize_mass : bool
        Mean instead of sum of residuals (``NormalizeMass``; default False).
    normalize : bool
        L2-normalize the concatenation.
    skip_zero : bool
        Leave out all-zero descriptors (below PHOW's contrast threshold).
    max_descriptors : int
        Descriptors sampled for the PCA and the words (default 100,000).
    max_iter : int
        k-means iterations at most (default 100).
    image_size : int
        Side of the images the frames come from (pixels).
    random_state : int
        Seeds the descriptor sample and k-means.
    n_threads : int or None
        Threads per image (None: all cores).
    vocabulary : Vocabulary, optional
        Fitted k-means words to use instead of fitting them.
    pca : PCA, optional
        The fitted PCA that goes with ``vocabulary``.

    Attributes
    ----------
    vocabulary_ : Vocabulary
        The fitted words.
    pca_ : PCA or None
        The fitted PCA (None without PCA).
    n_regions_ : int
        Regions over all levels.
    n_features_out_ : int
        Length of the encoding, ``n_regions_ * K d``.
    n_samples_ : int or None
        Descriptors the PCA and the words were fitted on (None when given words or rebuilt from arrays).
    """

    def __init__(
        self,
        n_words=DEFAULT_VLAD_WORDS,
        pca_dims=None,
        whiten=False,
        root_sift=True,
        regions="1x1+2x2",
        level_weights=None,
        square_root=True,
        normalize_components=True,
        normalize_mass=False,
        normalize=True,
        skip_zero=True,
        max_descriptors=100_000,
        max_iter=100,
        image_size=256,
        random_state=0,
        n_threads=1,
        vocabulary=None,
        pca=None,
    ):
        self.n_words = n_words
        self.pca_dims = pca_dims
        self.whiten = whiten
        self.root_sift = root_sift
        self.regions = regions
        self.level_weights = level_weights
        self.square_root = square_root
        self.normalize_components = normalize_components
        self.normalize_mass = normalize_mass
        self.normalize = normalize
        self.skip_zero = skip_zero
        self.max_descriptors = max_descriptors
        self.max_iter = max_iter
        self.image_size = image_size
        self.random_state = random_state
        self.n_threads = n_threads
        self.vocabulary = vocabulary
        self.pca = pca

    def _finish_fit(self):
        regions = check_regions(self.regions)
        region_weights(regions, self.level_weights)
        K, d = self.vocabulary_.cluster_centers_.shape
        self.n_regions_ = sum(gx * gy for gx, gy in regions)
        self.n_features_out_ = self.n_regions_ * K * d

    def fit(self, X, y=None):
        """Fit the PCA (if any) and the k-means words on descriptors sampled from ``X``.

        Parameters
        ----------
        X : sequence of (frames, descriptors), or of descriptor arrays, or one (m, 128) array
            The training images' descriptors (ignored when ``vocabulary`` is given).
        y : None
            Ignored.

        Returns
        -------
        VladEncoder
            ``self``, fitted.

        Raises
        ------
        ValueError
            If the regions are malformed, the ``vocabulary`` given is not fitted,
            or there is no non-zero descriptor.
        """
        from .vocabulary import Vocabulary

        check_regions(self.regions)
        region_weights(self.regions, self.level_weights)
        if self.vocabulary is not None:
            if not hasattr(self.vocabulary, "cluster_centers_"):
                raise ValueError("the vocabulary given is not fitted")
            if self.pca is None and self.pca_dims:
                raise ValueError("give the PCA the vocabulary was fitted with (pca=...) or pca_dims=None")
            self.pca_ = self.pca
            self.vocabulary_ = self.vocabulary
            self.n_samples_ = None
        else:
            S = self._fit_pca(self._sample(X))
            self.n_samples_ = len(S)
            self.vocabulary_ = Vocabulary(
                int(self.n_words), max_descriptors=len(S), max_iter=self.max_iter, random_state=self.random_state
            ).fit(S)
        self._finish_fit()
        return self

    def encode_one(self, frames, descriptors) -> np.ndarray:
        """VLAD of one image (:func:`~.fisher.postprocess_descriptors`, then :func:`vlad_regions`).

        Parameters
        ----------
        frames : (n, >= 2) array
            ``x, y`` of each descriptor in 0-based pixels of the ``image_size`` image.
        descriptors : (n, 128) array
            The image's SIFT descriptors (uint8 or float).

        Returns
        -------
        (n_features_out_,) float32
            The image's encoding.
        """
        self._check()
        xy, X = self._prepare(frames, descriptors)
        return vlad_regions(
            X,
            xy,
            self.image_size,
            self.image_size,
            self.vocabulary_.cluster_centers_,
            regions=self.regions,
            level_weights=self.level_weights,
            square_root=self.square_root,
            normalize_components=self.normalize_components,
            normalize_mass=self.normalize_mass,
            normalize=self.normalize,
            n_threads=self._threads(),
        )

    # -- storage as data -------------------------------------------------------
    def to_arrays(self) -> dict:
        """Fitted state as numpy arrays: ``cluster_centers`` and (with PCA) ``pca_*`` keys.

        Returns
        -------
        dict of str to ndarray
            ``cluster_centers`` ``(K, d)`` float32, and the PCA's
            :meth:`~phow_baseline.features.descriptors.PCA.to_arrays` under ``pca_``.
        """
        self._check()
        out = {"cluster_centers": self.vocabulary_.cluster_centers_}
        if self.pca_ is not None:
            out.update({f"pca_{k}": v for k, v in self.pca_.to_arrays().items()})
        return out

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict) -> VladEncoder:
        """Rebuild a fitted encoder from its parameters and :meth:`to_arrays`.

        Parameters
        ----------
        params : dict
            Constructor parameters (``vocabulary`` and ``pca`` are ignored).
        arrays : mapping of str to array
            :meth:`to_arrays`'s output.

        Returns
        -------
        VladEncoder
            Fitted (``n_samples_`` None).

        Raises
        ------
        ValueError
            If ``cluster_centers`` is missing.
        """
        from ..features.descriptors import PCA
        from .vocabulary import Vocabulary

        params = {k: v for k, v in params.items() if k not in ("vocabulary", "pca")}
        enc = cls(**params)
        if "cluster_centers" not in arrays:
            raise ValueError("VLAD arrays lack 'cluster_centers'")
        enc.vocabulary_ = Vocabulary.from_arrays({"n_words": len(arrays["cluster_centers"])}, arrays)
        pca = {k[4:]: v for k, v in arrays.items() if k.startswith("pca_")}
        enc.pca_ = PCA.from_arrays(pca) if pca else None
        enc.n_samples_ = None  # not recorded in the arrays
        enc._finish_fit()
        return enc
