"""The PHOW baseline at dataset scale: image cache -> vocabulary -> feature shards -> SVMs -> evaluation.

Each step works on a dataset folder of any registered kind (ChestX-ray14,
CheXpert, MIMIC-CXR-JPG, PadChest, a plain CSV: :func:`open_dataset`, through
the dataset protocol of :mod:`phow_baseline.data.protocol`) with on-disk
caches in a work folder that resume (:func:`build_image_cache`,
:func:`fit_vocabulary`, :func:`encode_split`, :func:`train_svms`);
:func:`train_model`, :func:`evaluate_model` and :func:`run_baseline` chain
them and write the model directory and the run directory (see
``DESIGN.md``).  One SVM is trained per label of the dataset (14 for
ChestX-ray14).  :func:`evaluate_model` scores a model on its own dataset or
on another one (cross-dataset: the labels the two share,
:func:`phow_baseline.data.shared_labels`).  :func:`predict_paths` scores
image files with any model.

The caches of a dataset other than ChestX-ray14 are named after its kind
(``images-chexpert-test-...``, :func:`dataset_tag`), so that two datasets
can share a work folder while ChestX-ray14's keep their 0.1 names.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..classification.kernel_map import make_kernel_map
from ..config import BaselineConfig
from ..encoding.registry import encoding_for
from ..encoding.store import STORE_DTYPE_SUFFIX, FeatureStore, encode_to_store
from ..features.phow import make_phow
from ..io import (
    DataFileError,
    atomic_save_npz,
    atomic_write_json,
    folder_lock,
    jsonable,
    load_npz,
    read_json,
    sha256_strings,
    write_failures_csv,
)
from ..model.phow_model import PhowModel

#: Bytes the in-memory liblinear training may take (its estimated peak,
#: :func:`liblinear_peak_bytes`) before SGD's disk estimate counts it out of core
#: (``workflow/disk.py``); ``solver="auto"`` trains with SDCA at every size.
IN_MEMORY_BUDGET_BYTES = 4 * 2**30


def liblinear_peak_bytes(n_rows: int, dim_in: int, dim: int, density: float, n_threads: int) -> int:
    """Estimated peak memory of training the SVMs in memory with liblinear, in bytes.

    The stored features of the ``n`` rows read and row-selected (two float32
    copies of ``dim_in`` columns: ``8 n dim_in``), the kernel-mapped matrix in
    float32 and its one float64 copy that ``LinearSVC`` needs, shared by the
    threads (``12 n dim``), and per thread (one class each) liblinear's own
    sparse copy of it, 16 bytes (index and double) per non-zero entry and one
    terminator per row (``16 t (rho n dim + n)``, ``rho`` the fraction of
    non-zero features).  Example: the calibration's held-out SVMs of the
    20,000-image rehearsal, 13,823 rows x 36,000 mapped features (12,000
    stored), density 0.27, 2 threads: 11.6 GB estimated; the process measured
    14.3 GB (the rest: the process itself, the features being read).  The old
    rule (one float64 matrix, 3.7 GiB) had let it through a 4 GiB budget.

    Parameters
    ----------
    n_rows : int
        Training images ``n``.
    dim_in : int
        Stored features per image (before the kernel map).
    dim : int
        Features per image after the kernel map (``3 dim_in`` with one, else ``dim_in``).
    density : float
        Fraction ``rho`` of non-zero features, in [0, 1] (:func:`feature_density`).
    n_threads : int
        Classes trained at once ``t`` (at least 1).

    Returns
    -------
    int
        ``8 n dim_in + 12 n dim + 16 t (rho n dim + n)`` bytes.
    """
    n, d_in, d, t = int(n_rows), int(dim_in), int(dim), max(1, int(n_threads))
    return 8 * n * d_in + 12 * n * d + 16 * t * int(float(density) * n * d + n)


def feature_density(store: FeatureStore) -> float:
    """Fraction of non-zero entries in the store's first shard (1.0 when it is empty).

    Parameters
    ----------
    store : FeatureStore
        Encoded vectors in shards (only shard 0 is read).

    Returns
    -------
    float
        Non-zero entries / entries, in [0, 1].
    """
    if not store.n_shards:
        return 1.0
    X = np.asarray(store.read_shard(0))
    return float(np.count_nonzero(X)) / X.size if X.size else 1.0


def choose_solver(store: FeatureStore, n_rows: int, dim: int, n_jobs) -> tuple[str, str]:
    """What ``solver="auto"`` trains with: ``"sdca"`` at every size; and why (liblinear's estimated peak, for the log).

    SDCA (VLFeat's ``vl_svmtrain`` solver, out of core, stopped on the
    duality gap) reaches liblinear's optimum (``tests/test_sdca.py``: per
    class within the certified ``tol / (1 - tol)``, and below liblinear's own
    objective on some classes) and was measured faster than liblinear at
    every size tried (``benchmarks/bench_solver.py``: 3.5x at 2,000 rows of
    12,000 features, 1.7x at 20,000 rows of 2,000; the cross-validation of
    the ``strongest`` preset, 385 rows of 204,800 features with the
    cross-fitted calibration, in the README), so ``"auto"`` no longer
    chooses between them by memory (0.2 chose liblinear whenever its
    estimated peak fitted :data:`IN_MEMORY_BUDGET_BYTES`).  liblinear and
    SGD stay selectable (``solver="liblinear"``, ``"sgd"``).

    Parameters
    ----------
    store : FeatureStore
        The training features (their stored dimension and density).
    n_rows : int
        Training images.
    dim : int
        Features per image after the kernel map.
    n_jobs : int or None
        joblib's ``n_jobs`` (-1: all cores); at most 14 threads (one per class) are counted.

    Returns
    -------
    solver : str
        ``"sdca"``.
    why : str
        The reason, with liblinear's estimated peak in GiB, for the log.
    """
    from joblib import effective_n_jobs

    threads = min(effective_n_jobs(n_jobs), 14)
    peak = liblinear_peak_bytes(n_rows, store.dim, dim, feature_density(store), threads)
    return "sdca", (
        f"SDCA at every size (liblinear's optimum, certified by the duality gap, faster as measured; "
        f"liblinear's estimated peak here {peak / 2**30:.1f} GiB)"
    )


def _log(msg: str) -> None:
    import logging

    logger = logging.getLogger(__name__)
    (logger.warning if msg.startswith("warning") else logger.info)(msg)


def dataset_tag(ds, tag: str) -> str:
    """The cache tag of ``tag`` (a split) of dataset ``ds``: ``tag`` for ChestX-ray14, ``<kind>-<tag>`` otherwise.

    ChestX-ray14's caches keep the names they had before other datasets were
    read (``images-test-256-global``), so existing work folders resume; the
    others carry their kind, so that two datasets in one work folder do not
    claim the same cache.

    Parameters
    ----------
    ds : ChestDataset
        The dataset (its ``kind``; an object without one is ChestX-ray14).
    tag : str
        The split's name, or another tag (``"cnn-train"``).

    Returns
    -------
    str
    """
    kind = getattr(ds, "kind", "chestxray14")
    return tag if kind == "chestxray14" else f"{kind}-{tag}"


def label_policy(config: BaselineConfig):
    """The :class:`~phow_baseline.data.LabelPolicy` of the config's ``uncertain`` and ``not_mentioned``.

    Parameters
    ----------
    config : BaselineConfig

    Returns
    -------
    LabelPolicy
    """
    from ..data import LabelPolicy

    return LabelPolicy(uncertain=config.uncertain, not_mentioned=config.not_mentioned)


def as_protocol(ds):
    """``ds`` as a dataset of the protocol: itself, or a 0.1 :class:`~phow_baseline.data.ChestXray14` wrapped.

    Parameters
    ----------
    ds : ChestDataset or ChestXray14
        A dataset of the protocol, or ChestX-ray14 read by the 0.1 class (whose ``labels(names)`` is a method).

    Returns
    -------
    ChestDataset
        ``ds``, or :meth:`~phow_baseline.data.ChestXray14Dataset.from_source` of it (nothing read again).
    """
    from ..data import ChestXray14, ChestXray14Dataset

    return ChestXray14Dataset.from_source(ds) if isinstance(ds, ChestXray14) else ds


def training_targets(ds, names: Sequence[str], config) -> np.ndarray:
    """The 0/1 training targets of ``names`` under the config's label policy.

    The SVMs cannot leave single labels out of a class yet, so a policy that
    masks labels out (``uncertain="ignore"``, ``not_mentioned="ignore"``) is
    refused when it would mask any label of these images (for ChestX-ray14,
    whose labels are never uncertain nor blank, it masks none).

    Parameters
    ----------
    ds : ChestDataset
    names : sequence of str
        Training image names.
    config : BaselineConfig or CnnConfig
        Its ``uncertain`` and ``not_mentioned``.

    Returns
    -------
    ndarray of uint8, shape (len(names), len(ds.labels))

    Raises
    ------
    ValueError
        The policy masks labels out (the message counts them and says what to use instead).
    """
    from ..data import LabelPolicy

    ds = as_protocol(ds)
    policy = LabelPolicy(uncertain=config.uncertain, not_mentioned=config.not_mentioned)
    y, mask = ds.targets(names, policy)
    if not mask.all():
        raise ValueError(
            f"{ds.root}: the label policy (uncertain={policy.uncertain!r}, not_mentioned={policy.not_mentioned!r}) "
            f"leaves {int((~mask).sum())} label(s) of the {len(names)} training images out of their class, "
            "which the training cannot do yet; use uncertain 'zeros' or 'ones' and not_mentioned 'negative' "
            "(--uncertain, --not-mentioned)"
        )
    return y


def dataset_record(ds, config) -> dict:
    """What a model records of the dataset it was trained on (``model.json``'s ``dataset``).

    Parameters
    ----------
    ds : ChestDataset
    config : BaselineConfig or CnnConfig
        Its label policy and ``frontal_only``.

    Returns
    -------
    dict
        ``kind``, ``title``, ``labels`` (the dataset's, the model's labels), ``label_policy``
        (``uncertain``, ``not_mentioned``), ``frontal_only`` and ``split_note`` (where the splits come
        from), JSON-ready.
    """
    return {
        "kind": ds.kind,
        "title": ds.title,
        "labels": list(ds.labels),
        "label_policy": {"uncertain": config.uncertain, "not_mentioned": config.not_mentioned},
        "frontal_only": bool(config.frontal_only),
        "split_note": ds.split_note,
    }


def build_image_cache(ds, names: Sequence[str], work_dir, config: BaselineConfig, progress=True, tag="images"):
    """Decode ``names`` of dataset ``ds`` once into ``work_dir/images-<tag>-<size>-<eq>`` (resumes).

    The tag is the dataset's (:func:`dataset_tag`: ``tag``, prefixed by the
    dataset kind for datasets other than ChestX-ray14).  Unreadable images are
    skipped and logged (WARNING, the first 20 with their reasons).

    Parameters
    ----------
    ds : ChestDataset
        The dataset (``image_path(name)`` and ``kind``).
    names : sequence of str
        The image names to cache, in the cache's row order.
    work_dir : str or Path
        The work folder.
    config : BaselineConfig
        ``size`` (side of the cached images, pixels), ``equalization``, ``n_jobs`` and ``backend``.
    progress : bool, default=True
        Show a progress bar.
    tag : str, default="images"
        The split's name (or another tag, ``"cnn-train"``) in the cache folder's name.

    Returns
    -------
    ImageCache
        One ``(size, size)`` uint8 image per name (``cache.ok[i]`` False for an unreadable one, listed in
        ``cache.failures``).
    """
    from ..data import ImageCache

    cache_dir = Path(work_dir) / f"images-{dataset_tag(ds, tag)}-{config.size}-{config.equalization}"
    paths = [ds.image_path(n) for n in names]
    cache = ImageCache.build(
        cache_dir,
        paths,
        names,
        size=config.size,
        equalization=config.equalization,
        n_jobs=config.n_jobs,
        progress=progress,
        backend=config.backend,
    )
    if cache.failures:
        _log(f"warning: {len(cache.failures)} unreadable image(s) skipped (listed in {cache_dir / 'index.json'}):")
        for f in cache.failures[:20]:
            _log(f"  {f.path}: {f.reason}")
    return cache


def _vocab_fingerprint(config: BaselineConfig, names: Sequence[str]) -> dict:
    """What the vocabulary depends on: the PHOW, sampling and encoding settings, the split and the images."""
    fp = encoding_for(config).vocabulary_fingerprint(config)
    fp["n_images"] = len(names)
    fp["names_sha256"] = sha256_strings(names)
    return jsonable(fp)


#: Training images per vocabulary-sampling task.
VOCAB_CHUNK = 16


def _vocabulary_samples_job(cache_dir, rows, seeds, phow_params, per_image):
    """A task of :func:`fit_vocabulary`: PHOW of cache ``rows``, ``per_image`` descriptors sampled from each."""
    from ..data import ImageCache
    from ..encoding.vocabulary import sample_descriptors
    from ..features.phow import PHOW

    cache, phow = ImageCache.open(cache_dir), PHOW(**phow_params)
    return [
        sample_descriptors([phow.transform([cache[r]])[0][1]], max_descriptors=per_image, seed=seed)
        for r, seed in zip(rows, seeds)
    ]


def fit_vocabulary(cache, rows: Sequence[int], work_dir, config: BaselineConfig, progress=True):
    """Fit (or reload) the visual vocabulary on a seeded subset of the training images.

    At most ``config.vocab_images`` images contribute, each at most
    ``max_descriptors / n_images`` descriptors (sampled in parallel on
    ``config.backend``, the same samples on any backend).  The result is kept in
    ``work_dir/vocabulary.npz`` + ``vocabulary.json`` and reused when the
    parameters match.

    Parameters
    ----------
    cache : ImageCache
        The training split's image cache.
    rows : sequence of int
        Cache rows to draw from (unreadable ones are dropped).
    work_dir : str or Path
        The work folder.
    config : BaselineConfig
        The encoding and its settings (``n_words``, ``max_descriptors``, ``vocab_images``, ``seed``...).
    progress : bool, default=True
        Show progress bars.

    Returns
    -------
    object
        The fitted vocabulary of ``config.encoding`` (k-means words for the bag of words and VLAD, a GMM
        for Fisher vectors; see :mod:`phow_baseline.encoding.registry`).

    Raises
    ------
    ValueError
        No readable training image.
    """
    from ..parallel import imap
    from ..progress import progress_bar

    encoding = encoding_for(config)
    work_dir = Path(work_dir)
    npz, js = work_dir / "vocabulary.npz", work_dir / "vocabulary.json"
    rows = [r for r in rows if cache.ok[r]]
    fp = _vocab_fingerprint(config, [cache.names[r] for r in rows])
    if npz.exists() and js.exists() and read_json(js, what="vocabulary record").get("params") == fp:
        _log(f"vocabulary: reusing {npz}")
        return encoding.from_arrays(config, load_npz(npz))
    if not rows:
        raise ValueError("no readable training image to fit the vocabulary on")
    rng = np.random.default_rng(config.seed)
    if len(rows) > config.vocab_images:
        rows = sorted(rng.choice(rows, config.vocab_images, replace=False).tolist())
    per_image = max(1, math.ceil(config.max_descriptors / len(rows)))
    seeds = [int(rng.integers(2**31)) for _ in rows]  # drawn here, in row order: any backend, same samples
    phow_params = make_phow(config).get_params()
    cache_dir = str(Path(cache.directory).resolve())
    tasks = [
        (cache_dir, rows[i : i + VOCAB_CHUNK], seeds[i : i + VOCAB_CHUNK], phow_params, per_image)
        for i in range(0, len(rows), VOCAB_CHUNK)
    ]
    samples = []
    with progress_bar(total=len(rows), desc="vocabulary: PHOW", unit="img", disable=not progress) as bar:
        for chunk in imap(_vocabulary_samples_job, tasks, n_jobs=config.n_jobs, backend=config.backend, ordered=True):
            samples += chunk
            bar.update(len(chunk))
    _log(
        f"vocabulary: fitting the {encoding.label} on {sum(len(s) for s in samples)} descriptors "
        f"from {len(rows)} images"
    )
    v = encoding.fit(config, np.concatenate(samples), progress=progress)
    atomic_save_npz(npz, encoding.to_arrays(v))
    atomic_write_json(js, {"params": fp, "encoding": encoding.name, "summary": encoding.summary(v)})
    _log(f"vocabulary: {encoding.summary(v)}")
    return v


def encode_split(cache, rows, names, work_dir, vocab, config: BaselineConfig, tag: str, progress=True):
    """The encoding's vectors of the given cache rows into ``work_dir/features-<tag>-<vocabulary hash>`` (resumes).

    Parameters
    ----------
    cache : ImageCache
        The split's image cache.
    rows : sequence of int
        Cache rows to encode, in store order (an image unreadable when the cache was built is a zero vector).
    names : sequence of str
        The images' names, recorded in the store.
    work_dir : str or Path
        The work folder.
    vocab : object
        The fitted vocabulary (:func:`fit_vocabulary`); its hash names the store.
    config : BaselineConfig
        PHOW and encoding settings, ``n_jobs``, ``backend`` and ``shard_size`` (images per shard).
    tag : str
        The split's cache tag (:func:`dataset_tag`).
    progress : bool, default=True
        Show a progress bar.

    Returns
    -------
    FeatureStore
        ``(n, dim)`` vectors in shards on disk (before the kernel map), stored as ``config.feature_dtype``
        (a float16 store in ``...-f16``) and read back as float32.
    """
    encoding = encoding_for(config)
    suffix = STORE_DTYPE_SUFFIX[config.feature_dtype]  # float16 shards: another folder ("-f16")
    store_dir = Path(work_dir) / f"features-{tag}-{encoding.vocabulary_sha256(vocab)[:12]}{suffix}"
    return encode_to_store(
        cache,
        rows,
        store_dir,
        make_phow(config),
        encoding.make_encoder(vocab, config),
        n_jobs=config.n_jobs,
        backend=config.backend,
        shard_size=config.shard_size,
        progress=progress,
        names=names,
        encoding=encoding,
        dtype=config.feature_dtype,
    )


def _make_svm(config: BaselineConfig, solver: str, max_epochs: int | None = None):
    """The unfitted :class:`~phow_baseline.classification.svm.OneVsRestSVM` of ``config`` and ``solver``
    (``max_epochs``: SDCA's cap, :func:`sdca_max_epochs`).
    """
    from ..classification.svm import OneVsRestSVM

    return OneVsRestSVM(
        C=config.C,
        class_weight=config.class_weight,
        solver=solver,
        n_epochs=config.n_epochs,
        max_epochs=max_epochs,
        random_state=config.seed,
        n_jobs=config.n_jobs,
    )


def sdca_max_epochs(n_rows: int, dim: int, config: BaselineConfig) -> int | None:
    """SDCA's most epochs here: its own cap (None: it stops on the duality gap) when the training rows, kernel-mapped,
    fit in memory (:data:`~phow_baseline.classification.sdca.IN_MEMORY_BYTES`, 1 GiB of float32); out of core,
    ``config.n_epochs`` (SGD's 10 by default).

    Out of core every epoch reads and maps every row again, and SDCA's gap closes slowly on large, nearly
    separable problems: on the 112,120-image rehearsal (128 px bag of words, 69,219 rows of 36,000 mapped
    features, C = 10) one fold's SVMs still had a relative gap of 0.77-0.94 after 36 epochs (656 s), where the
    issue's tolerance is 1e-3.  Stopped after 10 epochs on 20,000 of those rows, SDCA scored a held-out 5,000
    at mean AUROC 0.968 in 47 s, SGD's 10 epochs 0.966 in 243 s, SDCA's 40 epochs 0.967 in 166 s (README,
    "The full dataset").  A capped training says so: ``converged_`` false, its gaps in ``metrics.json`` and
    the warning; ``--epochs`` raises the cap.

    Parameters
    ----------
    n_rows : int
        Training rows.
    dim : int
        Features per row as SDCA sees them (after the kernel map: :func:`mapped_dimension`).
    config : BaselineConfig
        ``n_epochs``.

    Returns
    -------
    int or None
    """
    from ..classification import sdca

    return None if 4 * int(n_rows) * dim <= sdca.IN_MEMORY_BYTES else int(config.n_epochs)


def mapped_dimension(store: FeatureStore, kernel_map=None) -> int:
    """Features per row the SVMs see: the store's, times three through a kernel map (both give 3 outputs per
    input: homkermap of order 1, the additive chi2 map with 2 sample steps).

    Parameters
    ----------
    store : FeatureStore
        The training features (their stored dimension).
    kernel_map : fitted kernel map, optional
        The map applied as the rows are read.

    Returns
    -------
    int
    """
    return store.dim * (1 if kernel_map is None else 3)


def resolve_solver(store: FeatureStore, n_rows: int, config: BaselineConfig, solver=None) -> tuple[str, str, object]:
    """The solver that trains ``n_rows`` rows of ``store`` (``"auto"`` resolved), why, and the kernel map.

    Parameters
    ----------
    store : FeatureStore
        The training features (unmapped).
    n_rows : int
        Training rows.
    config : BaselineConfig
        The solver, the encoding's kernel map and ``n_jobs``.
    solver : str, optional
        Default ``config.solver``.

    Returns
    -------
    solver : str
        ``"liblinear"``, ``"sgd"`` or ``"sdca"``.
    why : str
        ``"; auto: ..."`` (the estimated peak against the budget) when ``"auto"`` chose, else "".
    kernel_map : fitted kernel map or None
        The map of the stored vectors (3 outputs per input) or None.
    """
    kmap = make_kernel_map(encoding_for(config).kernel_map_name(config), n_features=store.dim)
    dim = mapped_dimension(store, kmap)
    solver = solver or config.solver
    why = ""
    if solver == "auto":
        solver, why = choose_solver(store, n_rows, dim, config.n_jobs)
        why = f"; auto: {why}"
    return solver, why, kmap


def non_converged(svm, label_names=None) -> list[str]:
    """The labels whose SVM did not converge (liblinear's iterations, SGD's weight change, SDCA's gap).

    Parameters
    ----------
    svm : OneVsRestSVM
        Fitted.
    label_names : sequence of str, optional
        One name per SVM (default ``"label k"``).

    Returns
    -------
    list of str
    """
    names = list(label_names) if label_names is not None else [f"label {k}" for k in range(len(svm.converged_))]
    return [n for n, c in zip(names, svm.converged_) if not c]


def train_svms(
    store: FeatureStore,
    rows,
    Y,
    config: BaselineConfig,
    progress=True,
    solver=None,
    label="train",
    label_names=None,
    on_epoch=None,
):
    """Train the 14 SVMs on store ``rows`` (positions) with labels ``Y`` (len(rows), 14).

    ``solver`` (default ``config.solver``) ``"auto"`` trains out of core with
    SDCA (:func:`choose_solver`;
    :meth:`~phow_baseline.classification.svm.OneVsRestSVM.fit_store`: the
    kernel map applied as the rows are read, stopped on the duality gap); SGD
    (``"sgd"``) trains out of core one shard at a time.  Both keep a
    checkpoint after every epoch (:func:`sgd_checkpoint_path`,
    :func:`sdca_checkpoint_path`) and resume from it after a kill.  ``label``
    begins its log line and names its progress bar.

    Parameters
    ----------
    store : FeatureStore
        The training features, ``(n, dim)`` float32 (kernel-mapped here).
    rows : sequence of int
        Store positions of the training images.
    Y : array-like, shape (len(rows), n_labels)
        Their 0/1 targets.
    config : BaselineConfig
        ``C``, ``class_weight``, ``n_epochs``, ``seed``, ``n_jobs``, the kernel map and the solver.
    progress : bool, default=True
        Show a progress bar (SGD, SDCA).
    solver : {"auto", "liblinear", "sgd", "sdca"}, optional
        Default ``config.solver``.
    label : str, default="train"
        Names the log line and the progress bar.
    label_names : sequence of str, optional
        The labels' names, for the warnings (default ``"label k"``).
    on_epoch : callable, optional
        SDCA: called with the solver after each epoch's checkpoint (it may raise to stop, as a kill would).

    Returns
    -------
    OneVsRestSVM
        Fitted: ``coef_`` ``(n_labels, dim')`` float32, ``dim'`` the kernel-mapped dimension.
    """
    from ..progress import progress_bar

    solver, why, kmap = resolve_solver(store, len(rows), config, solver)
    dim = mapped_dimension(store, kmap)
    cap = sdca_max_epochs(len(rows), dim, config) if solver == "sdca" else None
    svm = _make_svm(config, solver, cap)
    transform = (lambda X: kmap.transform(X)) if kmap is not None else None
    if solver == "liblinear":
        X = store.load(rows)
        if transform:
            X = transform(X)
        _log(f"{label}: 14 linear SVMs (liblinear, C={config.C}) on {X.shape[0]} x {X.shape[1]} features{why}")
        svm.fit(X, Y)
        _warn_non_converged(svm, label, label_names)
        return svm
    Y = np.asarray(Y)
    if solver == "sdca":
        ckpt = sdca_checkpoint_path(store, rows, Y, config)
        resume = f"; resuming from {ckpt.name}" if ckpt.exists() else ""
        _log(
            f"{label}: 14 linear SVMs (SDCA, out of core, C={config.C}) on {len(rows)} x {dim} features{why}"
            f"{_cap_note(cap)}{resume}"
        )
        # at the cap one more pass scores the rows with the last weights (their gap), and counts on the bar
        bar = progress_bar(
            total=None if cap is None else cap + 1, desc=f"{label} (SDCA)", unit="epoch", disable=not progress
        )

        def step(solver_state):
            bar.update(1)
            bar.set_postfix(training=int(solver_state.active.sum()))
            if on_epoch is not None:
                on_epoch(solver_state)

        try:
            svm.fit_store(store, Y, rows=rows, transform=kmap, checkpoint=ckpt, on_epoch=step, label_names=label_names)
        finally:
            bar.close()
        _warn_non_converged(svm, label, label_names)
        return svm
    ckpt = sgd_checkpoint_path(store, rows, Y, config)
    start = 0
    if ckpt.exists():
        try:
            svm.restore_sgd_checkpoint(load_npz(ckpt))
            start = min(svm.sgd_epochs_done, config.n_epochs)
        except (DataFileError, KeyError, ValueError) as exc:  # unreadable: start again, say why
            _log(f"warning: {ckpt}: {exc}; training from the first epoch")
            svm = _make_svm(config, solver)
    _log(
        f"{label}: 14 linear SVMs (SGD, out of core, {config.n_epochs} epochs) on {len(rows)} x {dim} "
        f"features{why}" + (f"; resuming after epoch {start} ({ckpt.name})" if start else "")
    )
    bar = progress_bar(
        total=len(rows) * config.n_epochs,
        initial=len(rows) * start,
        desc=f"{label} (SGD)",
        unit="img",
        disable=not progress,
    )
    for epoch in range(start, config.n_epochs):
        for Xb, pos in store.batches(rows, seed=config.seed, epoch=epoch, transform=transform):
            svm.partial_fit(Xb, Y[pos], y_all=Y)  # y_all: lambda = 1/(C n), balanced weights, epoch length
            bar.update(len(pos))
        atomic_save_npz(ckpt, svm.sgd_checkpoint())  # a kill from here on resumes after this epoch
    bar.close()
    if not svm.converged_.all():
        _log(
            f"warning: {label}: SGD did not converge for {int((~svm.converged_).sum())} class(es) in {config.n_epochs} "
            f"epochs (last relative weight change {svm.weight_change_[-1].max():.2g} > tol {svm.tol:g}; "
            "objective per epoch in metrics.json)"
        )
    return svm


def _cap_note(cap: int | None) -> str:
    """The log's words for SDCA's epoch cap (:func:`sdca_max_epochs`)."""
    if cap is None:
        return ""
    return (
        f"; the mapped rows exceed the in-memory budget, so at most {cap} epochs (--epochs), each reading and "
        "mapping every row: stopped there, a class's gap is reported, not certified"
    )


def _warn_non_converged(svm, label, label_names):
    bad = non_converged(svm, label_names)
    if not bad:
        return
    solver = svm.convergence()["solver"]
    how = {
        "liblinear": f"within {svm.max_iter} iterations",
        "sdca": (
            f"(relative duality gap above {svm.tol:g} after {int(np.max(svm.n_iter_, initial=0))} epochs"
            + (", the cap out of core: --epochs raises it" if svm.max_epochs is not None else "")
            + "; gaps in metrics.json)"
        ),
    }.get(solver, "")
    _log(f"warning: {label}: {solver} did not converge for {len(bad)} class(es) {how}: {', '.join(bad)}")


def sdca_checkpoint_path(store: FeatureStore, rows, Y, config: BaselineConfig, folds=None) -> Path:
    """Where the SDCA training of these rows, labels and settings keeps its state after each epoch.

    As :func:`sgd_checkpoint_path`: beside the feature store, named by a
    hash of the store, the rows, the labels, the folds (cross-fitting) and
    the settings the weights depend on (``C``, ``class_weight``, ``seed``,
    ``kernel_map``); the solver checks the labels and settings again when it
    resumes.

    Parameters
    ----------
    store : FeatureStore
        The training features.
    rows : sequence of int
        Store positions of the training images.
    Y : array-like, shape (len(rows), n_labels)
        Their 0/1 targets.
    config : BaselineConfig
        ``C``, ``class_weight``, ``seed`` and ``kernel_map``.
    folds : array-like of int, optional
        The fold of each row, for the models of :func:`train_svms_folds`.

    Returns
    -------
    Path
        ``<store's folder>/../sdca-<16 hex digits>.npz`` (``sdca-folds-...`` with ``folds``; it may not exist).
    """
    prefix = "sdca-folds" if folds is not None else "sdca"
    return _checkpoint_path(prefix, store, rows, Y, config, ("C", "class_weight", "seed", "kernel_map"), folds)


def _checkpoint_path(prefix: str, store: FeatureStore, rows, Y, config, settings, folds=None) -> Path:
    """``<store's folder>/../<prefix>-<16 hex>.npz``: a hash of the store's name, rows, labels, folds and settings."""
    h = hashlib.sha256()
    h.update(str(Path(store.directory).name).encode())
    h.update(np.ascontiguousarray(rows, np.int64).tobytes())
    h.update(np.ascontiguousarray(Y, np.uint8).tobytes())
    if folds is not None:
        h.update(np.ascontiguousarray(folds, np.int64).tobytes())
    h.update(repr(tuple(getattr(config, k) for k in settings)).encode())
    return Path(store.directory).parent / f"{prefix}-{h.hexdigest()[:16]}.npz"


def patient_folds(patients, n_folds: int, seed: int) -> np.ndarray:
    """Seeded patient-wise folds: each patient's images all in one fold, the folds of about equal size.

    The unique patients (``numpy.unique`` order) are shuffled by
    ``default_rng(seed)``, as the validation carve shuffles them
    (:func:`~phow_baseline.data.chestxray14.patient_validation_split`), and
    cut into ``n_folds`` runs of about ``n / n_folds`` images each (a
    patient goes to the fold where the middle of its images falls).  Folds
    left empty (fewer patients than folds) are dropped and the rest
    numbered ``0..K-1``.

    Parameters
    ----------
    patients : sequence, shape (n,)
        The patient of each training image (any comparable values).
    n_folds : int
        Folds asked for (>= 2).
    seed : int
        Seed of the patient shuffle.

    Returns
    -------
    ndarray of int64, shape (n,)
        The fold of each image, ``0..K-1`` with ``K <= n_folds`` (``K`` the number of non-empty folds).
    """
    patients = np.asarray(patients)
    n = len(patients)
    if n == 0:
        return np.zeros(0, np.int64)
    uniq, inverse, counts = np.unique(patients, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    cum = np.cumsum(counts[order])
    middle = cum - counts[order] / 2.0
    fold_of_ranked = np.minimum((middle * n_folds / n).astype(np.int64), n_folds - 1)
    fold_of_patient = np.empty(len(uniq), np.int64)
    fold_of_patient[order] = fold_of_ranked
    folds = fold_of_patient[inverse.ravel()]
    _, renumbered = np.unique(folds, return_inverse=True)  # drop empty folds
    return renumbered.ravel().astype(np.int64)


def training_folds(ds, names, config: BaselineConfig) -> np.ndarray:
    """The cross-fitting folds of the training images ``names``: :func:`patient_folds` of their patients.

    Parameters
    ----------
    ds : ChestDataset
        The dataset (its ``patients``).
    names : sequence of str
        The training images, in training row order.
    config : BaselineConfig
        ``calibration_folds`` and ``seed``.

    Returns
    -------
    ndarray of int64, shape (len(names),)
    """
    return patient_folds(as_protocol(ds).patients(list(names)), config.calibration_folds, config.seed)


def train_svms_folds(
    store: FeatureStore,
    rows,
    Y,
    folds,
    config: BaselineConfig,
    progress=True,
    solver=None,
    label="train",
    label_names=None,
    on_epoch=None,
):
    """The final SVMs on all ``rows`` and, for each fold ``k``, SVMs on the rows outside it (cross-fitting).

    One solver for all (``"auto"`` chosen on all rows), so the calibration
    maps the scores of the same kind of SVM.  SDCA trains every fold's
    models and the final ones in one pass over the shards when the
    estimator has ``fit_store_folds``; liblinear reads the features once
    (``fit_folds`` when the estimator has it); otherwise, and for SGD, one
    training per fold (each with its own checkpoint).

    Parameters
    ----------
    store : FeatureStore
        The training features (unmapped).
    rows : sequence of int
        Store positions of the training images.
    Y : array-like, shape (len(rows), n_labels)
        Their 0/1 targets.
    folds : array-like of int, shape (len(rows),)
        The fold of each row, ``0..K-1`` (:func:`patient_folds`).
    config : BaselineConfig
        The SVM settings.
    progress : bool, default=True
        Show progress bars.
    solver : str, optional
        Default ``config.solver``.
    label : str, default="train"
        Names the log lines.
    label_names : sequence of str, optional
        The labels' names, for the warnings.
    on_epoch : callable, optional
        SDCA: called after each epoch (see :func:`train_svms`).

    Returns
    -------
    final : OneVsRestSVM
        Trained on all rows.
    fold_models : list of OneVsRestSVM
        ``K`` models, model ``k`` trained on the rows with fold != k.
    """
    from ..classification import sdca
    from ..classification.svm import OneVsRestSVM, _fold_checkpoint

    folds = np.asarray(folds, np.int64)
    Y = np.asarray(Y)
    rows = np.asarray(rows, np.int64)
    K = int(folds.max()) + 1 if len(folds) else 0
    solver, why, kmap = resolve_solver(store, len(rows), config, solver)
    if solver == "sdca" and hasattr(OneVsRestSVM, "fit_store_folds"):
        ckpt = sdca_checkpoint_path(store, rows, Y, config, folds=folds)
        from ..progress import progress_bar

        dim = mapped_dimension(store, kmap)
        cap = sdca_max_epochs(len(rows), dim, config)
        done = sdca.together_epochs(_fold_checkpoint(ckpt, "together", K))
        resume = f"; resuming after epoch {done} ({ckpt.stem}.together{ckpt.suffix})" if done else ""
        _log(
            f"{label}: 14 linear SVMs and the {K} folds' held-out ones for the calibration (SDCA, out of core, "
            f"C={config.C}, trained together: one reading of the rows per epoch) on {len(rows)} x {dim} "
            f"features{why}{_cap_note(cap)}{resume}"
        )
        bar = progress_bar(
            total=None if cap is None else (K + 1) * (cap + 1),  # each model: its epochs and the scoring pass
            initial=(K + 1) * done,
            desc=f"{label} + {K} folds (SDCA)",
            unit="epoch",
            disable=not progress,
        )

        def step(solver_state):
            bar.update(1)
            if on_epoch is not None:
                on_epoch(solver_state)

        try:
            models = _make_svm(config, solver, cap).fit_store_folds(
                store, Y, rows, folds, transform=kmap, checkpoint=ckpt, on_epoch=step, label_names=label_names
            )
        finally:
            bar.close()
        final, fold_models = models[-1], list(models[:-1])
        for k, m in enumerate(fold_models):
            _warn_non_converged(m, f"calibrate fold {k + 1}/{K}", label_names)
        _warn_non_converged(final, label, label_names)
        return final, fold_models
    if solver == "liblinear":
        X = store.load(rows)
        if kmap is not None:
            X = kmap.transform(X)
        _log(
            f"{label}: 14 linear SVMs (liblinear, C={config.C}) on {X.shape[0]} x {X.shape[1]} features and on "
            f"each of {K} folds' complements{why}"
        )
        svm = _make_svm(config, solver)
        if hasattr(svm, "fit_folds"):
            models = svm.fit_folds(X, Y, folds)
            final, fold_models = models[-1], list(models[:-1])
        else:
            fold_models = [_make_svm(config, solver).fit(X[folds != k], Y[folds != k]) for k in range(K)]
            final = svm.fit(X, Y)
        del X
        for k, m in enumerate(fold_models):
            _warn_non_converged(m, f"calibrate fold {k + 1}/{K}", label_names)
        _warn_non_converged(final, label, label_names)
        return final, fold_models
    final = train_svms(store, rows, Y, config, progress, solver, label, label_names, on_epoch)
    fold_models = [
        train_svms(
            store,
            rows[folds != k],
            Y[folds != k],
            config,
            progress,
            solver,
            f"calibrate fold {k + 1}/{K}",
            label_names,
            on_epoch,
        )
        for k in range(K)
    ]
    return final, fold_models


def out_of_fold_scores(store: FeatureStore, rows, folds, fold_models, kernel_map=None) -> np.ndarray:
    """Each row's SVM margins by the fold model that did not see it: ``(len(rows), n_labels)`` float64.

    Parameters
    ----------
    store : FeatureStore
        The features (unmapped).
    rows : sequence of int
        Store positions.
    folds : array-like of int, shape (len(rows),)
        The fold of each row.
    fold_models : sequence of OneVsRestSVM
        Model ``k`` trained without fold ``k``.
    kernel_map : fitted kernel map, optional
        Applied to the stored vectors before scoring.

    Returns
    -------
    ndarray of float64, shape (len(rows), n_labels)
    """
    folds = np.asarray(folds, np.int64)
    n_labels = len(fold_models[0].coef_)
    S = np.full((len(rows), n_labels), np.nan)
    for Xb, pos in store.batches(list(rows)):
        Xb = np.asarray(Xb, np.float32)
        if kernel_map is not None:
            Xb = kernel_map.transform(Xb)
        fb = folds[pos]
        for k in np.unique(fb):
            sel = fb == k
            S[pos[sel]] = np.asarray(fold_models[k].decision_function(Xb[sel]), np.float64).reshape(int(sel.sum()), -1)
    if np.isnan(S).any():
        raise ValueError(f"{store.directory}: {int(np.isnan(S).any(1).sum())} row(s) got no out-of-fold score")
    return S


def training_record(svm, labels, solver_why: str = "") -> dict:
    """The training record of ``model.json`` and ``metrics.json``: the solver's, with one entry per label.

    Parameters
    ----------
    svm : OneVsRestSVM
        Fitted.
    labels : sequence of str
        The labels' names, in the SVMs' order.
    solver_why : str, default=""
        Why ``"auto"`` chose the solver (recorded as ``solver_choice``).

    Returns
    -------
    dict
        :meth:`~phow_baseline.classification.svm.OneVsRestSVM.convergence` plus ``per_class`` (label ->
        ``converged``, ``epochs`` (SDCA, SGD) or ``iterations`` (liblinear), and SDCA's ``duality_gap``
        (relative: ``(P - D) / P``) and ``time_s``) and ``not_converged`` (the labels).
    """
    rec = svm.convergence()
    per = {}
    for j, lab in enumerate(labels):
        e = {"converged": bool(svm.converged_[j])}
        e["iterations" if rec["solver"] == "liblinear" else "epochs"] = int(svm.n_iter_[j])
        if rec["solver"] == "sdca":
            gap, primal = rec["duality_gap"][j], rec["primal_objective"][j]
            e["duality_gap"] = gap
            e["relative_gap"] = None if gap is None or not primal else gap / primal
            e["time_s"] = rec["time_s"][j]
        per[str(lab)] = e
    rec["per_class"] = per
    rec["not_converged"] = non_converged(svm, labels)
    if solver_why:
        rec["solver_choice"] = solver_why.removeprefix("; auto: ")
    return rec


def sgd_checkpoint_path(store: FeatureStore, rows, Y, config: BaselineConfig) -> Path:
    """Where the SGD training of these rows, labels and settings keeps its state after each epoch.

    Beside the feature store, named by a hash of everything the weights
    depend on (the store, which holds the vocabulary's hash, the rows, the
    labels and the training settings), so a checkpoint is only ever taken
    up by the very same training.

    Parameters
    ----------
    store : FeatureStore
        The training features.
    rows : sequence of int
        Store positions of the training images.
    Y : array-like, shape (len(rows), n_labels)
        Their 0/1 targets.
    config : BaselineConfig
        ``C``, ``class_weight``, ``n_epochs``, ``seed`` and ``kernel_map``.

    Returns
    -------
    Path
        ``<store's folder>/../sgd-<16 hex digits>.npz`` (it may not exist yet).
    """
    return _checkpoint_path("sgd", store, rows, Y, config, ("C", "class_weight", "n_epochs", "seed", "kernel_map"))


def open_dataset(data_dir, config, strict=False, work_dir=None, kind: str | None = None):
    """The dataset in ``data_dir`` read through the protocol, with the config's splits and view filter.

    Parameters
    ----------
    data_dir : path
        A dataset folder (or, for the plain-CSV kind, the CSV file).
    config : BaselineConfig or CnnConfig
        ``dataset`` (the kind, or ``"auto"``: detected from the folder's files), ``frontal_only``,
        ``val_fraction``, ``test_fraction`` and ``seed`` (the seeded splits of datasets without an
        official one, and ChestX-ray14's validation carve).
    strict : bool
        Fail if a listed image is missing (else warn with counts).
    work_dir : path, optional
        The work folder, where a seeded split is written and read back (PadChest, a CSV without a
        ``split`` column, CheXpert's train/val carve); without one the split is drawn and not kept.
    kind : str, optional
        The kind, overriding ``config.dataset`` (``"auto"``: detect).

    Returns
    -------
    ChestDataset

    Raises
    ------
    phow_baseline.data.DatasetError
        A missing or malformed file (named), or a folder whose kind cannot be told.
    """
    from ..data import open_dataset as open_any

    kind = kind or getattr(config, "dataset", "chestxray14")
    return open_any(
        data_dir,
        kind=None if kind == "auto" else kind,
        work_dir=work_dir,
        strict=strict,
        frontal_only=getattr(config, "frontal_only", True),
        val_fraction=config.val_fraction,
        test_fraction=getattr(config, "test_fraction", 0.2),
        seed=config.seed,
    )


def prepare_training(ds, work_dir, config: BaselineConfig, progress=True):
    """The training split's image cache, its readable rows and the vocabulary (all cached in ``work_dir``).

    Parameters
    ----------
    ds : ChestDataset
        The dataset.
    work_dir : str or Path
        The work folder (locked while in use).
    config : BaselineConfig
        ``train_split`` and the image and vocabulary settings.
    progress : bool, default=True
        Show progress bars.

    Returns
    -------
    cache : ImageCache
        The training split's images.
    rows : list of int
        Its readable rows.
    vocabulary : object
        The fitted vocabulary (:func:`fit_vocabulary`).

    Raises
    ------
    ValueError
        No image of the training split is present.
    """
    names = ds.split_names(config.train_split)
    if not names:
        raise ValueError(f"{ds.root}: no image of split {config.train_split!r} is present")
    with folder_lock(work_dir):
        cache = build_image_cache(ds, names, work_dir, config, progress, tag=config.train_split)
        rows = [i for i in range(len(cache)) if cache.ok[i]]
        return cache, rows, fit_vocabulary(cache, rows, work_dir, config, progress)


def train_model(data_dir, work_dir, config: BaselineConfig, progress=True, ds=None) -> PhowModel:
    """Cache, vocabulary, features and SVMs on ``config.train_split``; returns the model.

    One SVM per label of the dataset, trained on the targets of the config's
    label policy (:func:`training_targets`); the model records the dataset
    (:func:`dataset_record`) and the training (:func:`training_record`:
    solver, and per label convergence, epochs, SDCA's duality gap and time).
    Calibrated unless ``config.calibration`` is ``"none"``
    (:func:`calibrate_model`): with ``config.calibration_folds`` >= 2 the
    fold models are trained with the final ones (:func:`train_svms_folds`,
    one pass over the shards for SDCA).

    Parameters
    ----------
    data_dir : str or Path
        The dataset folder (or CSV file); not read when ``ds`` is given.
    work_dir : str or Path
        The work folder of the caches (locked while in use; reruns resume).
    config : BaselineConfig
        Every stage's settings.
    progress : bool, default=True
        Show progress bars.
    ds : ChestDataset, optional
        The dataset, already open (a 0.1 ``ChestXray14`` too).

    Returns
    -------
    PhowModel
        The trained model (not saved).

    Raises
    ------
    ValueError
        A label policy that masks labels out, or no image of the training split.
    """
    ds = as_protocol(ds) if ds is not None else open_dataset(data_dir, config, work_dir=work_dir)
    training_targets(ds, ds.split_names(config.train_split), config)  # a refused label policy stops before any work
    with folder_lock(work_dir):
        cache, rows, vocab = prepare_training(ds, work_dir, config, progress)
        Y = training_targets(ds, [cache.names[r] for r in rows], config)
        store = encode_split(
            cache,
            range(len(cache)),
            cache.names,
            work_dir,
            vocab,
            config,
            dataset_tag(ds, config.train_split),
            progress,
        )
        solver, why, _ = resolve_solver(store, len(rows), config)
        if why:
            _log(f"train: solver {solver}{why.removeprefix(';')}")
        labels = list(ds.labels)
        folds = fold_models = None
        if config.calibration != "none" and config.calibration_folds >= 2:
            folds = training_folds(ds, [cache.names[r] for r in rows], config)
        if folds is not None and folds.max(initial=0) >= 1:
            svm, fold_models = train_svms_folds(
                store, [int(r) for r in rows], Y, folds, config, progress, solver, label_names=labels
            )
        else:
            svm = train_svms(store, rows, Y, config, progress, solver, label_names=labels)
        model = PhowModel(
            config,
            vocab,
            svm,
            labels=ds.labels,
            info={
                "trained_on": config.train_split,
                "n_train": len(rows),
                "training": training_record(svm, labels, why),
            },
            dataset=dataset_record(ds, config),
        )
        if config.calibration != "none":
            calibrate_model(model, ds, cache, store, rows, Y, work_dir, progress, folds=folds, fold_models=fold_models)
    return model


def calibrate_model(
    model: PhowModel, ds, cache, store, rows, Y, work_dir, progress=True, folds=None, fold_models=None
) -> PhowModel:
    """Fit the model's Platt scaling and operating points on scores of SVMs that did not see the images (in place).

    Cross-fitted (``config.calibration_folds`` K >= 2, the default 5): the
    training images are split patient-wise into K seeded folds
    (:func:`training_folds`); fold ``k``'s images are scored by SVMs trained
    on the other folds (:func:`train_svms_folds`, or ``fold_models`` given),
    so that every training image, and every positive of every class, has an
    out-of-fold score; Platt scaling and the operating points are fitted on
    all of them (scikit-learn's ``CalibratedClassifierCV(ensemble=False)``
    does the same).  The final SVMs, trained on all rows, are then
    calibrated with those scores.

    ``calibration_folds=1`` (0.1 and 0.2): the patient-wise validation carve.
    When the training split holds it (``train_val``), 14 held-out SVMs
    trained on the rows outside it score it; when the training split
    excludes it (``train``), the model itself scores it.

    A class with fewer than
    :data:`~phow_baseline.classification.calibration.MIN_FIT_POSITIVES`
    positives (or negatives) among the calibration images is a *fallback*:
    Platt's smoothed targets carry its fit (slope at the minimum with no
    positive) and its threshold follows the rule on the positives it has, or
    with none the prevalence quantile
    (:func:`~phow_baseline.classification.operating_points.prevalence_threshold`).
    ``info["calibrated_on"]["fallback"]`` names each such class and why; a
    warning counts them.

    Parameters
    ----------
    model : PhowModel
        The trained model (its ``calibrator``, ``operating_points`` and ``info["calibrated_on"]`` are set).
    ds : ChestDataset
        The dataset (its patients; its ``val`` carve with one fold).
    cache : ImageCache
        The training split's image cache.
    store : FeatureStore
        Its features.
    rows : sequence of int
        The readable training rows (cache rows, and store positions).
    Y : array-like, shape (len(rows), n_labels)
        Their 0/1 targets.
    work_dir : str or Path
        The work folder.
    progress : bool, default=True
        Show progress bars.
    folds : array-like of int, shape (len(rows),), optional
        The rows' folds (default :func:`training_folds`); cross-fitting only.
    fold_models : sequence of OneVsRestSVM, optional
        Model ``k`` trained without fold ``k`` (default: trained here with the final SVMs' solver).

    Returns
    -------
    PhowModel
        ``model``, calibrated (or unchanged, with a warning, when there is nothing to calibrate on).
    """
    from ..classification import OperatingPoints, PlattCalibrator

    config = model.config
    n_folds = getattr(config, "calibration_folds", 1)
    if n_folds >= 2:
        names = [cache.names[r] for r in rows]
        folds = training_folds(ds, names, config) if folds is None else np.asarray(folds, np.int64)
        K = int(folds.max()) + 1 if len(folds) else 0
        if K < 2:
            _log(
                f"warning: {ds.root}: the {len(rows)} training image(s) come from fewer than 2 patients; no "
                "cross-fitting is possible and the model is not calibrated (scores are SVM margins)"
            )
            return model
        if fold_models is None:
            _, fold_models = _fold_models_only(store, rows, Y, folds, config, model, progress)
        S = out_of_fold_scores(store, rows, folds, fold_models, model.kernel_map)
        Yv = np.asarray(Y)
        record = {
            "method": "cross-fitted",
            "split": config.train_split,
            "folds": K,
            "fold_sizes": np.bincount(folds, minlength=K).tolist(),
            "n_images": int(len(Yv)),
            "scores_from": f"out-of-fold scores: {K} patient-wise folds of the {config.train_split} images, each "
            f"scored by SVMs trained on the other {K - 1}",
        }
    else:
        val = set(ds.split_names("val"))
        val_rows = [i for i, r in enumerate(rows) if cache.names[r] in val]
        if val_rows:
            fit_rows = [i for i in range(len(rows)) if cache.names[rows[i]] not in val]
            _log(
                f"calibrate: 14 held-out SVMs on {len(fit_rows)} training images score the {len(val_rows)} "
                f"validation images"
            )
            # the solver of the final SVMs (not chosen again for the fewer rows): the calibration must map
            # the scores of the same kind of SVM
            ho = train_svms(
                store,
                [rows[i] for i in fit_rows],
                np.asarray(Y)[fit_rows],
                config,
                progress=progress,
                solver=model.svm.solver,
                label="calibrate",
                label_names=list(model.labels),
            )
            kmap = model.kernel_map
            S = np.concatenate(
                [
                    ho.decision_function(Xb if kmap is None else kmap.transform(np.asarray(Xb, np.float32)))
                    for Xb, _ in store.batches([rows[i] for i in val_rows])
                ]
            )
            Yv = np.asarray(Y)[val_rows]
            source = f"held-out SVMs trained on the {len(fit_rows)} {config.train_split} images outside the carve"
        else:
            if not val:
                _log(
                    f"warning: {ds.root}: the validation carve is empty; the model is not calibrated (scores are "
                    "SVM margins)"
                )
                return model
            names, S, _ = score_split(model, ds, "val", work_dir, progress)
            if not names:
                _log(f"warning: {ds.root}: no readable validation image; the model is not calibrated")
                return model
            Yv = training_targets(ds, names, config)
            source = "the model"
        record = {"method": "validation carve", "split": "val", "n_images": int(len(Yv)), "scores_from": source}
    model.calibrator = PlattCalibrator().fit(S, Yv)
    model.operating_points = OperatingPoints(config.operating_rule, config.min_sensitivity).fit(
        model.calibrator.predict_proba(S), Yv
    )
    record["n_positive"] = {lab: int(v) for lab, v in zip(model.labels, np.asarray(Yv).sum(0))}
    record["min_positives"] = int(model.operating_points.min_positives)
    record["fallback"] = calibration_fallbacks(model)
    model.info["calibrated_on"] = record
    if record["fallback"]:
        _log(
            f"warning: calibrate: {len(record['fallback'])} class(es) with fewer than {record['min_positives']} "
            f"positives (or negatives) among the {record['n_images']} calibration images; their Platt fit and "
            f"threshold are fallbacks (metrics.json: calibration.fallback): {', '.join(record['fallback'])}"
        )
    return model


def _fold_models_only(store, rows, Y, folds, config, model, progress):
    """The fold models of :func:`calibrate_model` when none were given: the final SVMs' solver, each fold."""
    solver = model.svm.solver if model.svm.solver != "auto" else None
    return train_svms_folds(
        store, np.asarray(rows, np.int64), Y, folds, config, progress, solver, "calibrate", list(model.labels)
    )


def calibration_fallbacks(model) -> dict:
    """The classes whose calibration is a fallback, and why (``info["calibrated_on"]["fallback"]``).

    Parameters
    ----------
    model : PhowModel
        Calibrated (its ``calibrator`` and ``operating_points``).

    Returns
    -------
    dict
        label -> ``{"reason": code, "n_positive": int, "platt": str, "threshold": str}`` for each class whose
        Platt fit or threshold is a fallback
        (:func:`~phow_baseline.classification.calibration.fallback_code`); empty when none is.
    """
    cal, ops = model.calibrator, model.operating_points
    out = {}
    for j, lab in enumerate(model.labels):
        code = str(ops.fallback_[j]) or str(getattr(cal, "fallback_", [""] * (j + 1))[j])
        if not code:
            continue
        n_pos = int(cal.n_positive_[j])
        platt = (
            "Platt's smoothed targets on few examples"
            if code.startswith("few")
            else f"no {'positive' if code == 'no_positive' else 'negative'}: slope at the minimum, intercept "
            f"fitted to Platt's prior-corrected target"
        )
        out[str(lab)] = {"reason": code, "n_positive": n_pos, "platt": platt, "threshold": ops.fallback_rule(j)}
    return out


def describe_training(training: dict | None, calibrated_on: dict | None = None) -> str:
    """The training and calibration in a few lines for the command line (``train`` and ``run``).

    Parameters
    ----------
    training : dict or None
        The training record (:func:`training_record`, ``model.json``'s and ``metrics.json``'s ``training``).
    calibrated_on : dict or None
        ``model.json``'s ``calibrated_on`` (or ``metrics.json``'s ``calibration.fitted_on``).

    Returns
    -------
    str
        Lines naming the solver, the classes that did not converge and the calibration fallbacks.
    """
    lines = []
    if training:
        solver = training.get("solver", "?")
        bad = training.get("not_converged")
        if bad is None:
            bad = [f"label {k}" for k, c in enumerate(training.get("converged", [])) if not c]
        n = len(training.get("converged", []))
        extra = ""
        if solver == "sdca" and training.get("per_class"):
            gaps = [e.get("relative_gap") for e in training["per_class"].values() if e.get("relative_gap") is not None]
            epochs = [e.get("epochs", 0) for e in training["per_class"].values()]
            if gaps:
                extra = f"; largest relative duality gap {max(gaps):.2g}, epochs {min(epochs)}-{max(epochs)}"
        lines.append(
            f"training: {solver}, {n - len(bad)} of {n} class(es) converged"
            + (f"; NOT converged: {', '.join(bad)}" if bad else "")
            + extra
        )
    if calibrated_on:
        how = (
            f"cross-fitted on {calibrated_on.get('folds')} patient-wise folds"
            if calibrated_on.get("method") == "cross-fitted"
            else "on the validation carve"
        )
        lines.append(f"calibration: {how} ({calibrated_on.get('n_images')} images)")
        for lab, e in (calibrated_on.get("fallback") or {}).items():
            lines.append(f"  fallback {lab}: {e.get('n_positive')} positive(s); threshold: {e.get('threshold')}")
    return "\n".join(lines)


def _runnable(config: BaselineConfig) -> BaselineConfig:
    """A loaded model's config as this process can run it.

    The backend is an execution setting recorded with the model: ``"dask"``
    with no dask client open here (a model trained on a cluster, evaluated
    on a workstation) runs on joblib's default instead, and says so.
    """
    import dataclasses

    from ..parallel import dask_client_active

    if config.backend == "dask" and not dask_client_active():
        _log("note: the model was built with backend 'dask' but no dask client is open here; running on loky")
        return dataclasses.replace(config, backend=None)
    return config


def score_split(model: PhowModel, ds, split: str, work_dir, progress=True):
    """Decision scores of every readable image of ``split``: ``(names, scores, failures)``.

    Parameters
    ----------
    model : PhowModel
        The model (its config's image and encoding settings name the caches).
    ds : ChestDataset
        The dataset.
    split : str
        The split to score.
    work_dir : str or Path
        The work folder of the caches (locked while they are built; reruns resume).
    progress : bool, default=True
        Show progress bars.

    Returns
    -------
    names : list of str
        The readable images, in cache order.
    scores : ndarray, shape (len(names), n_labels)
        Their SVM margins (uncalibrated).
    failures : list of (str, str)
        ``(file, reason)`` of each unreadable image.

    Raises
    ------
    ValueError
        No image of ``split`` is present.
    """
    names = ds.split_names(split)
    if not names:
        raise ValueError(f"{ds.root}: no image of split {split!r} is present")
    config = _runnable(model.config)
    with folder_lock(work_dir):
        cache = build_image_cache(ds, names, work_dir, config, progress, tag=split)
        store = encode_split(
            cache, range(len(cache)), cache.names, work_dir, model.vocabulary, config, dataset_tag(ds, split), progress
        )
    rows = [i for i in range(len(cache)) if cache.ok[i]]
    scores = (
        np.concatenate([model.decision_function(Xb) for Xb, _ in store.batches(rows)])
        if rows
        else np.zeros((0, len(model.labels)))
    )
    failures = [(f.path, f.reason) for f in cache.failures]
    return [cache.names[r] for r in rows], scores, failures


def external_labels(model, ds) -> dict | None:
    """How ``model``'s labels meet those of dataset ``ds`` when it is not the model's own.

    Parameters
    ----------
    model : Model
        Its ``labels`` and ``dataset_kind``.
    ds : ChestDataset

    Returns
    -------
    dict or None
        None when ``ds`` is of the model's kind with the model's labels; else ``pairs`` (the shared labels,
        :class:`~phow_baseline.data.LabelPair`, in the model's order), ``dropped_model`` and
        ``dropped_data`` (each side's labels without a partner) and ``why`` (dropped model label -> why a
        look-alike label of the dataset is not the same finding).

    Raises
    ------
    ValueError
        The two share no label (the message names both label lists).
    """
    from ..data import shared_labels, why_not_shared

    if ds.kind == model.dataset_kind and tuple(ds.labels) == tuple(model.labels):
        return None
    pairs, dropped_model, dropped_data = shared_labels(model.labels, ds.labels)
    if not pairs:
        raise ValueError(
            f"{ds.root}: the model's labels {list(model.labels)} and the {ds.kind} labels {list(ds.labels)} share "
            "no finding; nothing to score"
        )
    why = {}
    for a in dropped_model:
        for b in dropped_data:
            reason = why_not_shared(a, b)
            if reason:
                why[a] = f"not {b}: {reason}"
    return {"pairs": pairs, "dropped_model": dropped_model, "dropped_data": dropped_data, "why": why}


def describe_external(metrics: dict) -> str:
    """What a cross-dataset run scored and dropped, in words (empty for a run on the model's own dataset).

    Parameters
    ----------
    metrics : dict
        A ``metrics.json`` written by :func:`evaluate_model`.

    Returns
    -------
    str
        Lines for a terminal: the shared labels scored and each side's labels dropped.
    """
    ext = metrics.get("external")
    if not ext:
        return ""
    shared = ", ".join(a if a == b else f"{a} = {b}" for a, b in ext["pairs"])
    lines = [
        f"cross-dataset: a model trained on {ext['model_dataset']} scored on {ext['dataset']}; "
        f"{len(ext['pairs'])} shared label(s) scored: {shared}",
        f"dropped, the model's labels not in {ext['dataset']}: {', '.join(ext['dropped_model']) or 'none'}",
        f"dropped, the {ext['dataset']} labels the model lacks: {', '.join(ext['dropped_data']) or 'none'}",
    ]
    lines += [f"  {a}: {why}" for a, why in ext.get("why", {}).items()]
    return "\n".join(lines)


def evaluate_model(
    model: PhowModel,
    data_dir,
    run_dir,
    work_dir,
    split=None,
    model_name="PHOW baseline",
    n_bootstrap=1000,
    progress=True,
    ds=None,
    dataset: str | None = None,
) -> dict:
    """Score ``split`` (default the config's test split) of a dataset and write the run directory.

    The truth is the dataset's labels under
    :data:`~phow_baseline.data.EVALUATION_POLICY`: an uncertain label leaves
    its image out of that class's ROC (masked), a blank one is a negative.
    On another dataset than the model's own (another kind, or other label
    names), only the labels the two share are scored
    (:func:`phow_baseline.data.shared_labels`, under their shared names), and
    ``metrics.json`` records under ``external`` the dataset, the pairs and the
    labels dropped on each side (:func:`describe_external` says it in words).
    The dataset's subgroup columns go to the run directory
    (``ds.subgroups``: sex, age, view, follow-up).

    Parameters
    ----------
    model : PhowModel
    data_dir : path
        The dataset folder (or CSV file) to score.
    run_dir, work_dir : path
        The run directory to write; the caches (and a seeded split) of the dataset.
    split : str, optional
        Default ``model.config.test_split``.
    model_name : str
    n_bootstrap : int
    progress : bool
    ds : ChestDataset, optional
        The dataset, already open (``data_dir`` is then not read; a 0.1 ``ChestXray14`` too).
    dataset : str, optional
        The kind of ``data_dir`` (default: detected from its files).

    Returns
    -------
    dict
        The ``metrics.json`` contents.

    Raises
    ------
    ValueError
        The model and the dataset share no label.
    """
    from ..data import EVALUATION_POLICY
    from ..evaluation import write_run_dir

    ds = (
        as_protocol(ds)
        if ds is not None
        else open_dataset(data_dir, model.config, work_dir=work_dir, kind=dataset or "auto")
    )
    split = split or model.config.test_split
    external = external_labels(model, ds)  # no shared label: stop before scoring
    names, scores, failures = score_split(model, ds, split, work_dir, progress)
    if failures:
        write_failures_csv(Path(run_dir) / "failures.csv", failures)
    y_true, mask = ds.targets(names, EVALUATION_POLICY)
    cal = {}
    if model.calibrator is not None:
        cal["probabilities"] = model.calibrate(scores)
    if model.operating_points is not None:
        cal.update(thresholds=model.operating_points.thresholds_, operating_rule=model.operating_points.describe())
    labels = list(model.labels)
    extra = {}
    if external is not None:
        a = [p.index_a for p in external["pairs"]]
        b = [p.index_b for p in external["pairs"]]
        scores, y_true, mask, labels = scores[:, a], y_true[:, b], mask[:, b], [p.shared for p in external["pairs"]]
        if "probabilities" in cal:
            cal["probabilities"] = cal["probabilities"][:, a]
        if "thresholds" in cal:
            cal["thresholds"] = np.asarray(cal["thresholds"])[a]
        extra["external"] = {
            "dataset": ds.kind,
            "model_dataset": model.dataset_kind,
            "pairs": [[p.a, p.b] for p in external["pairs"]],
            "dropped_model": external["dropped_model"],
            "dropped_data": external["dropped_data"],
            "why": external["why"],
        }
        _log(
            f"cross-dataset: {len(a)} shared label(s) scored, {len(external['dropped_model'])} of the model's and "
            f"{len(external['dropped_data'])} of the {ds.kind} labels dropped (metrics.json: 'external')"
        )
    label = model.encoding.label if model.encoding.names_runs else None
    if label and label not in model_name:  # the tables and the report name the encoding of every run
        model_name = f"PHOW baseline ({label})" if model_name == "PHOW baseline" else f"{model_name}, {label}"
    return write_run_dir(
        run_dir,
        model_name=model_name,
        kind="phow",
        split=split,
        names=names,
        y_true=y_true,
        scores=scores,
        labels=labels,
        n_bootstrap=n_bootstrap,
        seed=model.config.seed,
        extra={
            "config": model.config.to_dict(),
            "encoding": model.config.encoding,
            "n_failures": len(failures),
            "training": model.info.get("training") or model.svm.convergence(),
            "dataset": {
                "kind": ds.kind,
                "title": ds.title,
                "split_note": ds.split_note,
                "label_policy": EVALUATION_POLICY.to_dict(),
            },
            **extra,
        },
        metadata=ds.subgroups(names),
        mask=None if mask.all() else mask,
        calibration_fit=_calibration_fit(model.info.get("calibrated_on"), external),
        **cal,
    )


def _calibration_fit(calibrated_on: dict | None, external: dict | None) -> dict | None:
    """``model.json``'s calibration record for ``metrics.json`` (the fallbacks of the labels scored)."""
    if not calibrated_on:
        return None
    fit = dict(calibrated_on)
    if external is not None:
        keep = {p.a: p.shared for p in external["pairs"]}
        fit["fallback"] = {keep[k]: v for k, v in (fit.get("fallback") or {}).items() if k in keep}
        fit["n_positive"] = {keep[k]: v for k, v in (fit.get("n_positive") or {}).items() if k in keep}
    return fit


#: Image files per prediction task.
PREDICT_CHUNK = 32


def _predict_job(model, paths, raw_scores=False):
    """A task of :func:`predict_paths`: ``[(name, scores or None, reason or None)]`` per file, in order."""
    from ..data import ImageReadError

    out = []
    for p in paths:
        try:
            img = model.preprocess(p)
        except ImageReadError as exc:  # every per-file failure is one (see read_xray)
            out.append((str(p), None, exc.reason))
            continue
        out.append((str(p), model.raw_scores(img) if raw_scores else model.scores(img), None))
    return out


def predict_paths(model, paths: Sequence, progress=True, *, n_jobs=1, backend=None, raw_scores=False, names=None):
    """Scores of image files by any model kind (a :class:`~phow_baseline.model.protocol.Model`: PHOW or CNN):
    ``(names, scores (n, len(model.labels)), failures [(file, reason)])``.

    Unreadable files (missing, corrupt, truncated, absurd header, not an
    image: every :class:`~phow_baseline.data.ImageReadError`) are
    skipped and listed; the others are still scored.  A model whose
    ``scores_in_workers`` is True (PHOW) scores chunks of files in parallel on
    ``backend`` (``n_jobs`` workers; the model is sent to each); one whose
    ``scores_in_workers`` is False (CNN) scores here, on its device.  The scores
    are the model's :meth:`scores` (probabilities for a calibrated PHOW model
    and for a CNN), or with ``raw_scores`` its ``raw_scores`` (SVM margins,
    CNN logits).  ``names`` (one per path) names the rows instead of the
    files' names (a dataset's image names: CheXpert's files are all called
    ``view1_frontal.jpg``).

    Parameters
    ----------
    model : Model
        A loaded model of any kind.
    paths : sequence of path
        Image files.
    progress : bool, default=True
        Show a progress bar.
    n_jobs : int, default=1
        Parallel workers for a model that scores in workers (-1: all cores).
    backend : str, optional
        joblib backend (:data:`phow_baseline.parallel.BACKENDS`); with ``"dask"`` paths are made absolute.
    raw_scores : bool, default=False
        Give :meth:`Model.raw_scores` instead of :meth:`Model.scores`.
    names : sequence of str, optional
        One row name per path; default each file's name.

    Returns
    -------
    names : list of str
        The rows' names (the scored files, in the order of ``paths``).
    scores : ndarray, shape (len(names), len(model.labels))
        Their scores (probabilities in [0, 1], SVM margins or logits).
    failures : list of (str, str)
        ``(file, reason)`` of each file that could not be read.

    Raises
    ------
    ValueError
        ``names`` and ``paths`` differ in length.
    """
    from ..parallel import imap
    from ..progress import progress_bar

    paths = [str(Path(p).resolve()) if backend == "dask" else str(p) for p in paths]
    if names is not None and len(names) != len(paths):
        raise ValueError(f"{len(names)} names for {len(paths)} paths")
    name_of = dict(zip(paths, names)) if names is not None else {}
    chunks = [(model, paths[i : i + PREDICT_CHUNK], raw_scores) for i in range(0, len(paths), PREDICT_CHUNK)]
    serial = not model.scores_in_workers
    out_names, rows, failures = [], [], []
    with progress_bar(total=len(paths), desc="predict", unit="img", disable=not progress) as bar:
        for chunk in imap(
            _predict_job, chunks, n_jobs=1 if serial else n_jobs, backend=None if serial else backend, ordered=True
        ):
            for p, sc, reason in chunk:
                if reason is not None:
                    failures.append((p, reason))
                else:
                    rows.append(sc)
                    out_names.append(name_of.get(p, Path(p).name))
            bar.update(len(chunk))
    scores = np.stack(rows) if rows else np.zeros((0, len(model.labels)), np.float32)
    return out_names, scores, failures


def run_baseline(
    data_dir, out_dir, config: BaselineConfig | None = None, progress=True, n_bootstrap=1000, model_name="PHOW baseline"
) -> dict:
    """All of it: train on ``config.train_split``, evaluate on ``config.test_split``.

    Writes ``out_dir/work`` (caches; reruns resume), ``out_dir/model``
    (model directory) and ``out_dir/run`` (metrics.json, predictions.csv,
    roc.png, comparison.md/.csv).  Returns the metrics.

    Parameters
    ----------
    data_dir : str or Path
        The dataset folder (or CSV file).
    out_dir : str or Path
        The output folder (``config.json``, ``work``, ``model``, ``run``); locked while in use.
    config : BaselineConfig, optional
        Every stage's settings; default ``BaselineConfig()`` (the ``strongest`` preset: Fisher vectors).
    progress : bool, default=True
        Show progress bars.
    n_bootstrap : int, default=1000
        Bootstrap resamples of the AUROC confidence intervals (0: none).
    model_name : str, default="PHOW baseline"
        The model's name in the tables.

    Returns
    -------
    dict
        The ``metrics.json`` contents (AUROC per label with CIs, calibration, subgroups...).

    Raises
    ------
    phow_baseline.io.OutOfSpaceError
        Not enough free disk for the run (checked before any work).
    phow_baseline.io.FolderBusyError
        Another process holds the work folder.
    """
    config = config or BaselineConfig()
    out = Path(out_dir)
    work = out / "work"
    with folder_lock(work):
        atomic_write_json(out / "config.json", config.to_dict())
        ds = open_dataset(data_dir, config, work_dir=work)
        from .disk import check_run_space_for_dataset  # the disk the run needs against the free space, first

        check_run_space_for_dataset(out, ds, config)
        model = train_model(data_dir, work, config, progress, ds=ds)
        model.save(out / "model")
        return evaluate_model(
            model, data_dir, out / "run", work, model_name=model_name, n_bootstrap=n_bootstrap, progress=progress, ds=ds
        )
