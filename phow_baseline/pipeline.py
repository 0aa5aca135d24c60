"""The PHOW baseline end to end: image cache -> vocabulary -> features -> 14 SVMs -> evaluation.

Two ways in:

* :func:`make_pipeline` gives a scikit-learn ``Pipeline`` (PHOW ->
  SpatialPyramidEncoder -> kernel map -> OneVsRestSVM) for images in memory.
* :func:`run_baseline` and the step functions (:func:`build_image_cache`,
  :func:`fit_vocabulary`, :func:`encode_split`, :func:`train_model`,
  :func:`evaluate_model`) work on a ChestX-ray14 folder at full scale with
  on-disk caches that resume, and write the model directory and run
  directory (see ``DESIGN.md``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import LABELS
from .encode import (KERNEL_MAPS, FeatureStore, HomogeneousKernelMap, SpatialPyramidEncoder, encode_to_store,
                     make_kernel_map, pyramid_cells, quantize_histogram)

#: Memory the in-memory solver may use for the (kernel-mapped, float64)
#: training matrix before ``solver="auto"`` switches to out-of-core SGD.
IN_MEMORY_BUDGET_BYTES = 4 * 2 ** 30


@dataclass
class BaselineConfig:
    """Every setting of the PHOW baseline, with the defaults of its sources.

    Image: ``size`` 256 and global equalisation (the Uniandes study).
    PHOW: VLFeat's ``vl_phow`` defaults (sizes 4, 6, 8, 10; step 2; magnif 6;
    window size 1.5; contrast threshold 0.005).  Vocabulary: 600 words from
    about 100,000 descriptors; pyramid 2x2 + 4x4; chi2 kernel map order 1,
    gamma 0.5; C = 10 (VLFeat's ``phow_caltech101.m``).
    """

    size: int = 256
    equalization: str = "global"
    sizes: tuple = (4, 6, 8, 10)
    step: int = 2
    magnif: float = 6.0
    window_size: float = 1.5
    contrast_threshold: float = 0.005
    n_words: int = 600
    max_descriptors: int = 100_000
    vocab_images: int = 2000
    grids: tuple = (2, 4)
    weighting: str = "vlfeat"
    kernel_map: str = "homkermap"
    C: float = 10.0
    class_weight: str | None = None
    solver: str = "auto"
    n_epochs: int = 10
    train_split: str = "train_val"
    test_split: str = "test"
    val_fraction: float = 0.1
    seed: int = 0
    n_jobs: int = -1
    backend: str | None = None
    shard_size: int = 256

    def __post_init__(self):
        self.sizes = tuple(int(s) for s in self.sizes)
        self.grids = tuple(int(g) for g in self.grids)
        if self.kernel_map not in KERNEL_MAPS:
            raise ValueError(f"kernel_map must be one of {KERNEL_MAPS}, got {self.kernel_map!r}")
        if self.solver not in ("auto", "liblinear", "sgd"):
            raise ValueError(f"solver must be auto, liblinear or sgd, got {self.solver!r}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {self.class_weight!r}")

    @classmethod
    def from_file(cls, path, **overrides) -> "BaselineConfig":
        """Read a JSON config file; unknown keys are an error naming the file."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read config ({exc})") from exc
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{path}: unknown config key(s) {unknown}; known: {sorted(known)}")
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**d)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def phow_params(self, equalization="none") -> dict:
        return {"sizes": self.sizes, "step": self.step, "magnif": self.magnif, "window_size": self.window_size,
                "contrast_threshold": self.contrast_threshold, "equalization": equalization}


def make_phow(config: BaselineConfig, equalization="none", n_jobs=1):
    from .phow import PHOW

    return PHOW(**config.phow_params(equalization), n_jobs=n_jobs)


def make_pipeline(config: BaselineConfig | None = None, **overrides):
    """The whole baseline as a scikit-learn ``Pipeline`` over raw or preprocessed images.

    ``fit(images, Y)`` (``Y``: ``(n, 14)`` 0/1) equalises, extracts PHOW,
    fits the vocabulary, encodes, maps and trains the 14 SVMs;
    ``decision_function(images)`` gives ``(n, 14)`` scores.  Images should
    already be ``config.size`` pixels square (see
    :func:`phow_baseline.preprocess.preprocess`).
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from .classify import OneVsRestSVM

    config = config or BaselineConfig(**overrides)
    kmap = make_kernel_map(config.kernel_map)
    steps = [
        ("phow", make_phow(config, equalization=config.equalization, n_jobs=config.n_jobs)),
        ("encode", SpatialPyramidEncoder(config.n_words, config.max_descriptors, config.grids, config.weighting,
                                         config.size, config.seed)),
        ("kernel_map", kmap if kmap is not None else FunctionTransformer()),
        ("svm", OneVsRestSVM(C=config.C, class_weight=config.class_weight,
                             solver="sgd" if config.solver == "sgd" else "liblinear", seed=config.seed)),
    ]
    return Pipeline(steps)


# --------------------------------------------------------------------------
# Steps on a dataset folder
# --------------------------------------------------------------------------

def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_image_cache(ds, names: Sequence[str], work_dir, config: BaselineConfig, progress=True, tag="images"):
    """Decode ``names`` of dataset ``ds`` once into ``work_dir/images-<tag>-<size>-<eq>`` (resumes)."""
    from .preprocess import ImageCache

    cache_dir = Path(work_dir) / f"images-{tag}-{config.size}-{config.equalization}"
    paths = [ds.image_path(n) for n in names]
    cache = ImageCache.build(cache_dir, paths, names, size=config.size, equalization=config.equalization,
                             n_jobs=config.n_jobs, progress=progress, backend=config.backend)
    if cache.failures:
        _log(f"warning: {len(cache.failures)} unreadable image(s) skipped (listed in {cache_dir / 'index.json'}):")
        for f in cache.failures[:20]:
            _log(f"  {f.path}: {f.reason}")
    return cache


def _vocab_fingerprint(config: BaselineConfig) -> dict:
    return {k: getattr(config, k) for k in ("size", "equalization", "sizes", "step", "magnif", "window_size",
                                           "contrast_threshold", "n_words", "max_descriptors",
                                           "vocab_images", "seed")}


def fit_vocabulary(cache, rows: Sequence[int], work_dir, config: BaselineConfig, progress=True):
    """Fit (or reload) the visual vocabulary on a seeded subset of the training images.

    At most ``config.vocab_images`` images contribute, each at most
    ``max_descriptors / n_images`` descriptors.  The result is kept in
    ``work_dir/vocabulary.npz`` + ``vocabulary.json`` and reused when the
    parameters match.
    """
    from tqdm.auto import tqdm

    from .vocabulary import Vocabulary, sample_descriptors

    work_dir = Path(work_dir)
    npz, js = work_dir / "vocabulary.npz", work_dir / "vocabulary.json"
    fp = json.loads(json.dumps(_vocab_fingerprint(config)))
    if npz.exists() and js.exists() and json.loads(js.read_text()).get("params") == fp:
        with np.load(npz, allow_pickle=False) as z:
            v = Vocabulary.from_arrays({"n_words": config.n_words, "max_descriptors": config.max_descriptors,
                                        "seed": config.seed}, dict(z))
        _log(f"vocabulary: reusing {npz}")
        return v
    rows = [r for r in rows if cache.ok[r]]
    if not rows:
        raise ValueError("no readable training image to fit the vocabulary on")
    rng = np.random.default_rng(config.seed)
    if len(rows) > config.vocab_images:
        rows = sorted(rng.choice(rows, config.vocab_images, replace=False).tolist())
    per_image = max(1, math.ceil(config.max_descriptors / len(rows)))
    phow = make_phow(config)
    samples = []
    for r in tqdm(rows, desc="vocabulary: PHOW", unit="img", disable=not progress):
        _, d = phow.transform([cache[r]])[0]
        samples.append(sample_descriptors([d], max_descriptors=per_image, seed=int(rng.integers(2 ** 31))))
    _log(f"vocabulary: k-means, {config.n_words} words on {sum(len(s) for s in samples)} descriptors "
         f"from {len(rows)} images")
    v = Vocabulary(config.n_words, config.max_descriptors, seed=config.seed).fit(np.concatenate(samples))
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = work_dir / "vocabulary.tmp.npz"
    np.savez(tmp, **v.to_arrays())
    tmp.replace(npz)
    js.write_text(json.dumps({"params": fp, "n_samples": v.n_samples_, "inertia": v.inertia_}))
    return v


def make_encoder(vocab, config: BaselineConfig) -> SpatialPyramidEncoder:
    return SpatialPyramidEncoder(config.n_words, config.max_descriptors, config.grids, config.weighting,
                                 config.size, config.seed, vocabulary=vocab).fit(None)


def encode_split(cache, rows, names, work_dir, vocab, config: BaselineConfig, tag: str, progress=True):
    """Pyramid features of the given cache rows into ``work_dir/features-<tag>`` (resumes)."""
    from .encode import _sha256_array

    enc = make_encoder(vocab, config)
    store_dir = Path(work_dir) / f"features-{tag}-{_sha256_array(vocab.cluster_centers_)[:12]}"
    return encode_to_store(cache, rows, store_dir, make_phow(config), enc, n_jobs=config.n_jobs,
                           backend=config.backend, shard_size=config.shard_size, progress=progress, names=names)


def train_svms(store: FeatureStore, rows, Y, config: BaselineConfig, progress=True):
    """Train the 14 SVMs on store ``rows`` (positions) with labels ``Y`` (len(rows), 14).

    ``solver="auto"`` trains in memory with liblinear when the mapped
    float64 matrix fits :data:`IN_MEMORY_BUDGET_BYTES`, else out of core with
    SGD, one shard at a time (peak memory independent of the number of images).
    """
    from tqdm.auto import tqdm

    from .classify import OneVsRestSVM

    kmap = make_kernel_map(config.kernel_map)
    factor = 1 if kmap is None else (3 if config.kernel_map == "homkermap" else 3)
    dim = store.dim * factor
    solver = config.solver
    if solver == "auto":
        solver = "liblinear" if len(rows) * dim * 8 <= IN_MEMORY_BUDGET_BYTES else "sgd"
    svm = OneVsRestSVM(C=config.C, class_weight=config.class_weight, solver=solver, n_epochs=config.n_epochs,
                       seed=config.seed, n_jobs=config.n_jobs)
    transform = (lambda X: kmap.transform(X)) if kmap is not None else None
    if solver == "liblinear":
        X = store.load(rows)
        if transform:
            X = transform(X)
        _log(f"train: 14 linear SVMs (liblinear, C={config.C}) on {X.shape[0]} x {X.shape[1]} features")
        svm.fit(X, Y)
        if not svm.converged_.all():
            _log(f"warning: liblinear did not converge for {int((~svm.converged_).sum())} class(es)")
        return svm
    _log(f"train: 14 linear SVMs (SGD, out of core, {config.n_epochs} epochs) on {len(rows)} x {dim} features")
    bar = tqdm(total=len(rows) * config.n_epochs, desc="train (SGD)", unit="img", disable=not progress)
    svm.fit_batches(lambda epoch: store.batches(rows, seed=config.seed, epoch=epoch, transform=transform),
                    np.asarray(Y), dim, progress=bar.update)
    bar.close()
    return svm


# --------------------------------------------------------------------------
# The trained model
# --------------------------------------------------------------------------

class PhowModel:
    """A trained PHOW baseline: preprocessing, PHOW, vocabulary, pyramid, kernel map, 14 SVMs.

    Scores are the SVMs' decision values (``w.psi(h) + b``), one per label.
    """

    kind = "phow"

    def __init__(self, config: BaselineConfig, vocabulary, svm, labels=LABELS, info=None):
        self.config = config
        self.vocabulary = vocabulary
        self.svm = svm
        self.labels = tuple(labels)
        self.info = info or {}
        self.encoder = make_encoder(vocabulary, config)
        self.kernel_map = make_kernel_map(config.kernel_map)
        self.phow = make_phow(config)

    @property
    def image_size(self) -> int:
        return self.config.size

    def preprocess(self, image):
        from .preprocess import preprocess

        return preprocess(image, size=self.config.size, equalization=self.config.equalization)

    def _map(self, X):
        return X if self.kernel_map is None else self.kernel_map.transform(X)

    def features(self, image) -> np.ndarray:
        """Pyramid feature of one preprocessed image."""
        frames, desc = self.phow.transform([image])[0]
        return self.encoder.encode_one(frames, desc)

    def scores(self, image) -> np.ndarray:
        """14 decision scores of one preprocessed (``size`` x ``size``, equalised) image."""
        return self.decision_function(self.features(image)[None])[0]

    def decision_function(self, features) -> np.ndarray:
        return self.svm.decision_function(self._map(np.asarray(features, np.float32)))

    def heatmaps(self, image) -> np.ndarray:
        """Per-class heatmaps of one preprocessed image, ``(14, size, size)`` float32.

        See :func:`phow_heatmaps`.
        """
        return phow_heatmaps(self, image)

    # -- persistence --------------------------------------------------------
    def save(self, directory, extra: dict | None = None) -> Path:
        from .model_io import write_model_dir

        svm_params = {k: getattr(self.svm, k) for k in ("C", "class_weight", "solver", "n_epochs", "seed")}
        arrays = {"vocabulary": self.vocabulary.to_arrays(), "svm": self.svm.to_arrays()}
        if isinstance(self.kernel_map, HomogeneousKernelMap):
            arrays["kernel_map"] = {"kappa": self.kernel_map.kappa_, "L": np.array(self.kernel_map.L_),
                                    "period": np.array(self.kernel_map.period_)}
        return write_model_dir(directory, "phow", {"config": self.config.to_dict(), "svm": svm_params},
                               arrays, extra={**self.info, **(extra or {})})

    @classmethod
    def load(cls, directory) -> "PhowModel":
        from .classify import OneVsRestSVM
        from .model_io import ModelFileError, read_model_dir
        from .vocabulary import Vocabulary

        meta, arrays = read_model_dir(directory)
        try:
            cfg = BaselineConfig(**meta["params"]["config"])
            vocab = Vocabulary.from_arrays({"n_words": cfg.n_words, "max_descriptors": cfg.max_descriptors,
                                            "seed": cfg.seed}, arrays["vocabulary"])
            svm = OneVsRestSVM.from_arrays(meta["params"]["svm"], arrays["svm"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{Path(directory) / 'model.json'}: incomplete or inconsistent model ({exc})") \
                from exc
        m = cls(cfg, vocab, svm, meta.get("labels", LABELS),
                info={k: meta[k] for k in ("trained_on", "n_train") if k in meta})
        expected = m.encoder.n_features_out_ * (1 if m.kernel_map is None else 3)
        if svm.coef_.shape != (len(LABELS), expected):
            raise ModelFileError(f"{Path(directory) / 'svm.npz'}: SVM weights of shape {svm.coef_.shape}, "
                                 f"expected {(len(LABELS), expected)}")
        return m


def per_bin_contributions(model: PhowModel, feature: np.ndarray) -> np.ndarray:
    """Each pyramid bin's additive share of each class score, ``(14, dim)``.

    The score is ``s_c = sum_j w_c[block j] . psi(h_j) + b_c``: every kernel
    map used here is applied per input dimension (VLFeat's map puts input
    ``j``'s 3 outputs side by side; scikit-learn's ``AdditiveChi2Sampler``
    stacks them in 3 blocks of ``dim``), so the score splits exactly into one
    term ``f_cj`` per pyramid bin, and ``sum_j f_cj = s_c - b_c`` (``psi(0) = 0``).
    """
    W = model.svm.coef_
    h = np.asarray(feature, np.float32)
    dim = h.shape[0]
    if model.kernel_map is None:
        return W * h[None]
    psi = model.kernel_map.transform(h[None])[0]
    if isinstance(model.kernel_map, HomogeneousKernelMap):
        D = model.kernel_map.dim_per_input
        return (W.reshape(len(W), dim, D) * psi.reshape(1, dim, D)).sum(-1)
    nb = psi.shape[0] // dim  # AdditiveChi2Sampler: blocks of dim
    return (W.reshape(len(W), nb, dim) * psi.reshape(1, nb, dim)).sum(1)


def phow_heatmaps(model: PhowModel, image) -> np.ndarray:
    """Where each class's score comes from: a signed heatmap per class.

    Each dense descriptor ``i`` falls in one pyramid bin per level
    ``j = (cell, word)``; bin ``j`` contributes ``f_cj`` to class ``c``'s
    score (:func:`per_bin_contributions`), shared equally by the ``n_j``
    descriptors in it.  Descriptor ``i`` thus carries
    ``sum_levels f_cj / n_j``, and the descriptors' contributions sum
    exactly to ``s_c - b_c``.  Each contribution is spread uniformly over the
    descriptor's support (the square of side ``4 x bin size + 1`` pixels
    around its centre that its 4 x 4 bins cover), so the heatmap integrates
    to the score minus bias.  Under the
    chi2 kernel map ``f_cj`` is not linear in ``n_j``; splitting it equally
    among the descriptors of the bin is the one attribution that is both
    exact (sums to the score) and symmetric (identical descriptors get
    identical shares).  Where a support square crosses the image border,
    the share is spread over its part inside the image.

    Returns
    -------
    (14, size, size) float32, score per pixel.
    """
    import cv2

    S = model.config.size
    frames, desc = model.phow.transform([image])[0]
    enc = model.encoder
    k = len(enc.vocabulary_.cluster_centers_)
    cells, n_cells = pyramid_cells(frames[:, :2], S, S, enc.grids)
    words, counts = quantize_histogram(desc, enc.vocabulary_.cluster_centers_, cells, n_cells)
    from .encode import normalise_pyramid

    feat = normalise_pyramid(counts, enc.grids, k, enc.weighting)
    f = per_bin_contributions(model, feat)  # (14, dim)
    bins = cells.astype(np.int64) * k + words[:, None]  # (n, L)
    share = np.zeros((f.shape[0], len(words)), np.float32)
    for l in range(bins.shape[1]):
        b = bins[:, l]
        share += f[:, b] / counts[b].astype(np.float32)
    heat = np.zeros((f.shape[0], S, S), np.float32)
    xs = np.clip(np.rint(frames[:, 0]).astype(np.int64), 0, S - 1)
    ys = np.clip(np.rint(frames[:, 1]).astype(np.int64), 0, S - 1)
    bin_sizes = frames[:, 3]
    for bs in np.unique(bin_sizes):
        sel = bin_sizes == bs
        h = int(round(2 * bs))  # the descriptor's 4 x 4 bins cover centre +- 2 bin sizes
        x, y = xs[sel], ys[sel]
        # area of the support square inside the image, so that every
        # descriptor's share is spread in full over the pixels it covers
        area = ((np.minimum(x + h, S - 1) - np.maximum(x - h, 0) + 1) *
                (np.minimum(y + h, S - 1) - np.maximum(y - h, 0) + 1)).astype(np.float64)
        flat = y * S + x
        for c in range(f.shape[0]):
            pts = np.bincount(flat, weights=share[c, sel] / area, minlength=S * S).astype(np.float32)
            heat[c] += cv2.boxFilter(pts.reshape(S, S), -1, (2 * h + 1, 2 * h + 1), normalize=False,
                                     borderType=cv2.BORDER_CONSTANT)
    return heat


# --------------------------------------------------------------------------
# Whole runs
# --------------------------------------------------------------------------

def open_dataset(data_dir, config: BaselineConfig, strict=False):
    from .data import ChestXray14

    return ChestXray14(data_dir, strict=strict, val_fraction=config.val_fraction, seed=config.seed)


def prepare_training(ds, work_dir, config: BaselineConfig, progress=True):
    """The training split's image cache, its readable rows and the vocabulary (all cached in ``work_dir``)."""
    names = ds.split_names(config.train_split)
    if not names:
        raise ValueError(f"{ds.root}: no image of split {config.train_split!r} is present")
    cache = build_image_cache(ds, names, work_dir, config, progress, tag=config.train_split)
    rows = [i for i in range(len(cache)) if cache.ok[i]]
    return cache, rows, fit_vocabulary(cache, rows, work_dir, config, progress)


def train_model(data_dir, work_dir, config: BaselineConfig, progress=True, ds=None) -> PhowModel:
    """Cache, vocabulary, features and SVMs on ``config.train_split``; returns the model."""
    ds = ds or open_dataset(data_dir, config)
    cache, rows, vocab = prepare_training(ds, work_dir, config, progress)
    store = encode_split(cache, range(len(cache)), cache.names, work_dir, vocab, config, config.train_split,
                         progress)
    Y = ds.labels([cache.names[r] for r in rows])
    svm = train_svms(store, rows, Y, config, progress)
    return PhowModel(config, vocab, svm, info={"trained_on": config.train_split, "n_train": len(rows)})


def score_split(model: PhowModel, ds, split: str, work_dir, progress=True):
    """Decision scores of every readable image of ``split``: ``(names, scores, failures)``."""
    names = ds.split_names(split)
    if not names:
        raise ValueError(f"{ds.root}: no image of split {split!r} is present")
    cache = build_image_cache(ds, names, work_dir, model.config, progress, tag=split)
    store = encode_split(cache, range(len(cache)), cache.names, work_dir, model.vocabulary, model.config,
                         split, progress)
    rows = [i for i in range(len(cache)) if cache.ok[i]]
    scores = np.concatenate([model.decision_function(Xb) for Xb, _ in store.batches(rows)]) if rows else \
        np.zeros((0, len(LABELS)))
    failures = [(f.path, f.reason) for f in cache.failures]
    return [cache.names[r] for r in rows], scores, failures


def evaluate_model(model: PhowModel, data_dir, run_dir, work_dir, split=None, model_name="PHOW baseline",
                   n_bootstrap=1000, progress=True, ds=None) -> dict:
    """Score ``split`` (default the config's test split) and write the run directory."""
    from .metrics import write_run_dir

    ds = ds or open_dataset(data_dir, model.config)
    split = split or model.config.test_split
    names, scores, failures = score_split(model, ds, split, work_dir, progress)
    if failures:
        _write_failures(Path(run_dir) / "failures.csv", failures)
    return write_run_dir(run_dir, model_name=model_name, kind="phow", split=split, names=names,
                         y_true=ds.labels(names), scores=scores, n_bootstrap=n_bootstrap, seed=model.config.seed,
                         extra={"config": model.config.to_dict(), "n_failures": len(failures)})


def _write_failures(path, failures):
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "reason"])
        w.writerows(failures)


def predict_paths(model, paths: Sequence, progress=True):
    """Scores of image files by any model with ``preprocess`` and ``scores`` (PHOW or CNN):
    ``(names, scores (n, 14), failures [(file, reason)])``.

    Unreadable files are skipped and listed; the others are still scored.
    """
    from tqdm.auto import tqdm

    from .preprocess import ImageReadError

    names, rows, failures = [], [], []
    for p in tqdm(list(paths), desc="predict", unit="img", disable=not progress):
        try:
            img = model.preprocess(p)
        except ImageReadError as exc:
            failures.append((str(p), exc.reason))
            continue
        rows.append(model.scores(img))
        names.append(Path(p).name)
    scores = np.stack(rows) if rows else np.zeros((0, len(LABELS)), np.float32)
    return names, scores, failures


def run_baseline(data_dir, out_dir, config: BaselineConfig | None = None, progress=True, n_bootstrap=1000,
                 model_name="PHOW baseline") -> dict:
    """All of it: train on ``config.train_split``, evaluate on ``config.test_split``.

    Writes ``out_dir/work`` (caches; reruns resume), ``out_dir/model``
    (model directory) and ``out_dir/run`` (metrics.json, predictions.csv,
    roc.png, comparison.md/.csv).  Returns the metrics.
    """
    config = config or BaselineConfig()
    out = Path(out_dir)
    work = out / "work"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    ds = open_dataset(data_dir, config)
    model = train_model(data_dir, work, config, progress, ds=ds)
    model.save(out / "model")
    return evaluate_model(model, data_dir, out / "run", work, model_name=model_name, n_bootstrap=n_bootstrap,
                          progress=progress, ds=ds)
