"""The registry of encodings: every encoding through one interface, and no encoding switch outside it."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator

import phow_baseline
from phow_baseline import config as config_module
from phow_baseline.config import BaselineConfig, ConfigError
from phow_baseline.encoding import (
    ENCODINGS,
    Encoding,
    UnknownEncodingError,
    encoding_for,
    get_encoding,
    register_encoding,
    unregister_encoding,
)
from phow_baseline.features.phow import make_phow

BUILT_IN = ("bow", "fisher", "vlad")
#: Tiny settings for every encoding: 8 words, 4 Gaussians on PCA-16, 4 VLAD words, 64 px images.
TINY = dict(
    size=64,
    n_words=8,
    max_descriptors=1500,
    fv_components=4,
    fv_pca_dims=16,
    gmm_max_iter=5,
    vlad_words=4,
    regions="1x1+3x1",
    calibration="none",
    n_jobs=1,
)


@pytest.fixture(scope="module")
def phow_pairs():
    """PHOW ``(frames, descriptors)`` of six 64 px images with some structure (gradients and blobs)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    imgs = []
    for _ in range(6):
        cx, cy = rng.uniform(10, 54, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 60.0)
        img = 60 + 120 * blob + 40 * xx / 63 + rng.normal(0, 8, (64, 64))
        imgs.append(np.clip(img, 0, 255).astype(np.uint8))
    return make_phow(BaselineConfig.from_preset("vlfeat", **TINY)).transform(imgs)


def _fit(name, pairs):
    cfg = BaselineConfig(**TINY, encoding=name)
    enc = encoding_for(cfg)
    return cfg, enc, enc.fit(cfg, np.concatenate([d for _, d in pairs]))


def test_the_built_in_encodings_are_registered_in_order():
    assert ENCODINGS[:3] == BUILT_IN and tuple(phow_baseline.encoding.ENCODINGS) == ENCODINGS
    labels = {n: get_encoding(n).label for n in BUILT_IN}
    assert labels == {"bow": "bag of words", "fisher": "Fisher vectors", "vlad": "VLAD"}
    assert [get_encoding(n).has_heatmaps for n in BUILT_IN] == [True, False, False]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_encoding_round_trips_through_its_arrays(name, phow_pairs):
    cfg, enc, fitted = _fit(name, phow_pairs)
    arrays = enc.to_arrays(fitted)
    assert arrays and all(isinstance(a, np.ndarray) for a in arrays.values())
    back = enc.from_arrays(cfg, {k: np.array(v) for k, v in arrays.items()})
    assert enc.vocabulary_sha256(back) == enc.vocabulary_sha256(fitted)
    a, b = enc.make_encoder(fitted, cfg), enc.make_encoder(back, cfg)
    assert a.n_features_out_ == b.n_features_out_ == enc.dimension(cfg)
    for frames, desc in phow_pairs[:2]:
        va, vb = a.encode_one(frames, desc), b.encode_one(frames, desc)
        assert va.shape == (enc.dimension(cfg),) and np.abs(va).sum() > 0
        np.testing.assert_array_equal(va, vb)
    # the encoder's state (what a worker process rebuilds it from) gives the same vectors too
    params, state = enc.encoder_state(a)
    c = enc.encoder_from_state(params, state)
    np.testing.assert_array_equal(c.encode_one(*phow_pairs[0]), a.encode_one(*phow_pairs[0]))
    # a feature store records what the vectors depend on: a freshly fitted encoder (progress messages
    # on, several threads) and the same one loaded from its vocabulary file must agree, or an
    # interrupted encoding could not resume (found by a kill -9 of `cv --preset strongest`)
    if "verbose" in a.get_params():
        a.set_params(verbose=True)
        c.set_params(verbose=False)
    if "n_threads" in a.get_params():
        a.set_params(n_threads=2)
    assert enc.store_params(a) == enc.store_params(b) == enc.store_params(c)


def test_the_dimensions_follow_the_config():
    cfg = BaselineConfig.from_preset("vlfeat")
    assert [get_encoding(n).dimension(cfg) for n in BUILT_IN] == [600 * 20, 5 * 2 * 256 * 80, 5 * 64 * 128]
    assert (
        get_encoding("vlad").dimension(BaselineConfig.from_preset("vlfeat", regions="1x1", vlad_pca_dims=32)) == 64 * 32
    )


def test_the_kernel_map_is_the_bag_of_words_only():
    cfg = BaselineConfig.from_preset("vlfeat", kernel_map="additive_chi2")
    assert [get_encoding(n).kernel_map_name(cfg) for n in BUILT_IN] == ["additive_chi2", "none", "none"]


def test_summary_says_what_was_fitted(phow_pairs):
    _, bow, v = _fit("bow", phow_pairs)
    assert re.fullmatch(r"8 words \(k-means on \d+ descriptors of 128 dims\)", bow.summary(v)), bow.summary(v)
    _, fisher, f = _fit("fisher", phow_pairs)
    s = fisher.summary(f)
    assert s.startswith("4-Gaussian GMM on PCA-16 RootSIFT (128 -> 16 dims) from ") and "descriptors" in s, s
    assert "512-dim Fisher vectors over regions 1x1+3x1" in s, s  # 4 regions x 2 x 4 Gaussians x 16 dims
    _, vlad, w = _fit("vlad", phow_pairs)
    s = vlad.summary(w)
    assert s.startswith("4 k-means words on RootSIFT (128 dims) from ") and "2048-dim VLADs" in s, s  # 4 x 4 x 128
    # rebuilt from arrays, the number of descriptors is not known: the summary says the rest
    back = bow.from_arrays(BaselineConfig.from_preset("vlfeat", **TINY), bow.to_arrays(v))
    assert bow.summary(back) == "8 words (k-means, 128 dims)"


def test_an_unknown_encoding_is_a_clear_error():
    with pytest.raises(UnknownEncodingError) as e:
        get_encoding("fishr")
    assert isinstance(e.value, ConfigError) and e.value.field == "encoding"
    assert "'bow', 'fisher', 'vlad'" in str(e.value) and "'fishr'" in str(e.value)
    cfg = BaselineConfig(encoding="fishr")  # a name: checked against the registry when looked up
    with pytest.raises(UnknownEncodingError):
        encoding_for(cfg)
    with pytest.raises(ConfigError) as e:
        BaselineConfig(encoding="bag of words")  # not even a name: refused when built
    assert e.value.field == "encoding"


@pytest.mark.parametrize("name, field", [("fisher", "fv_components"), ("vlad", "vlad_words")])
def test_an_encoding_checks_the_settings_it_needs(name, field):
    cfg = BaselineConfig(encoding=name, n_words=8, max_descriptors=100, **{field: 200})
    with pytest.raises(ConfigError) as e:
        encoding_for(cfg)
    assert e.value.field == "max_descriptors" and "200" in str(e.value)
    encoding_for(BaselineConfig(encoding=name, n_words=8, max_descriptors=200, **{field: 200}))


def test_the_config_repeats_the_stages_choices_exactly():
    """config.py imports no stage: its tuples of choices must equal the stages' own."""
    from phow_baseline.classification.kernel_map import KERNEL_MAPS
    from phow_baseline.data.chestxray14 import SPLITS
    from phow_baseline.data.preprocess import EQUALIZATIONS
    from phow_baseline.encoding.fisher import REGION_LAYOUTS

    assert config_module.SPLITS == SPLITS and config_module.EQUALIZATIONS == EQUALIZATIONS
    assert config_module.KERNEL_MAPS == KERNEL_MAPS and config_module.REGION_LAYOUTS == tuple(REGION_LAYOUTS)


def test_the_vocabulary_fingerprints_are_those_of_0_1():
    """Cached vocabularies stay valid: the keys are 0.1's (its formula, copied here)."""
    cfg = BaselineConfig.from_preset("vlfeat", **TINY)

    def old(config):
        fp = {
            k: getattr(config, k)
            for k in (
                "size",
                "equalization",
                "sizes",
                "step",
                "magnif",
                "window_size",
                "contrast_threshold",
                "n_words",
                "max_descriptors",
                "vocab_images",
                "seed",
                "train_split",
            )
        }
        if config.encoding != "bow":
            keys = (
                ("fv_components", "fv_pca_dims", "gmm_max_iter")
                if config.encoding == "fisher"
                else ("vlad_words", "vlad_pca_dims")
            )
            fp.update({"encoding": config.encoding, "regions": config.regions, **{k: getattr(config, k) for k in keys}})
            fp.pop("n_words")
        return fp

    for name in BUILT_IN:
        c = BaselineConfig(**{**TINY, "encoding": name})
        assert get_encoding(name).vocabulary_fingerprint(c) == old(c), name
    assert cfg.encoding == "bow"


# --------------------------------------------------------------------------
# No encoding switch outside phow_baseline/encoding/
# --------------------------------------------------------------------------


def _mentions_encoding(node) -> bool:
    return (isinstance(node, ast.Attribute) and "encoding" in node.attr) or (
        isinstance(node, ast.Name) and "encoding" in node.id
    )


def _encoding_names_in(node) -> bool:
    consts = (
        [node]
        if isinstance(node, ast.Constant)
        else list(node.elts)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set))
        else []
    )
    return any(isinstance(c, ast.Constant) and c.value in BUILT_IN for c in consts)


def _keyed_by_encoding_names(node) -> bool:
    return (
        isinstance(node, ast.Dict) and sum(isinstance(k, ast.Constant) and k.value in BUILT_IN for k in node.keys) >= 2
    )


def _encoding_switches(tree) -> list[int]:
    """Lines that compare an ``...encoding`` with an encoding's name, or look an ``...encoding`` up in a dict
    keyed by encoding names (a literal, or a name assigned one in the module)."""
    tables = {
        t.id
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and _keyed_by_encoding_names(node.value)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }

    def is_table(n):
        return _keyed_by_encoding_names(n) or (isinstance(n, ast.Name) and n.id in tables)

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_mentions_encoding(s) for s in sides) and any(_encoding_names_in(s) for s in sides):
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and is_table(node.value) and _mentions_encoding(node.slice):
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and is_table(node.func.value)
            and node.args
            and _mentions_encoding(node.args[0])
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_switch_finder_finds_switches():
    src = (
        'if config.encoding == "bow": pass\n'
        'x = encoding in ("fisher", "vlad")\n'
        'y = {"fisher": 1, "vlad": 2}.get(model.config.encoding)\n'
        "z = config.encoding == other\n"
        'TABLE = {"bow": 0, "fisher": 1}\n'
        "w = TABLE[config.encoding]\n"
        'MOVED = {"fisher": "encoding.fisher", "vlad": "encoding.vlad"}\n'
        "v = MOVED[leaf]\n"
    )
    assert _encoding_switches(ast.parse(src)) == [1, 2, 3, 6]


def test_no_encoding_is_switched_on_outside_the_encoding_package():
    root = Path(phow_baseline.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] == "encoding":
            continue
        found += [
            f"{path.relative_to(root)}:{line}"
            for line in _encoding_switches(ast.parse(path.read_text(encoding="utf-8")))
        ]
    assert not found, f"encoding names compared outside phow_baseline/encoding/ (use the registry): {found}"


# --------------------------------------------------------------------------
# A fourth encoding, registered here, goes through the library untouched
# --------------------------------------------------------------------------


class MeanResidual(BaseEstimator):
    """Toy vocabulary and encoder: each image's mean descriptor minus the training mean, ``(128,)``."""

    def __init__(self, max_descriptors=1000):
        self.max_descriptors = max_descriptors

    def fit(self, X, y=None):
        self.mean_ = np.asarray(X[: self.max_descriptors], np.float32).mean(0)
        self.n_samples_ = int(min(len(X), self.max_descriptors))
        self.n_features_out_ = len(self.mean_)
        return self

    def encode_one(self, frames, descriptors):
        return (np.asarray(descriptors, np.float32).mean(0) - self.mean_).astype(np.float32)

    def to_arrays(self):
        return {"mean": self.mean_}

    @classmethod
    def from_arrays(cls, params, arrays):
        v = cls(**{k: p for k, p in params.items() if k != "n_threads"})
        v.mean_ = np.asarray(arrays["mean"], np.float32)
        v.n_samples_ = None
        v.n_features_out_ = len(v.mean_)
        return v


class MeanResidualEncoding(Encoding):
    name = "meanres"
    label = "mean residual"
    fingerprint_keys = ("encoding",)
    encoder_type = MeanResidual

    def make_vocabulary(self, config, progress=False):
        return MeanResidual(config.max_descriptors)

    def from_arrays(self, config, arrays):
        return MeanResidual.from_arrays({"max_descriptors": config.max_descriptors}, arrays)

    def make_encoder(self, fitted, config):
        return fitted

    def dimension(self, config):
        return 128

    def summary(self, fitted):
        return f"the mean of {fitted.n_samples_} descriptors"


@pytest.fixture
def meanres():
    enc = register_encoding(MeanResidualEncoding())
    yield enc
    unregister_encoding("meanres")


def test_a_fourth_encoding_works_through_the_registry_and_the_model(meanres, phow_pairs, tmp_path):
    from phow_baseline.classification.svm import OneVsRestSVM
    from phow_baseline.model import PhowModel, load_model

    assert "meanres" in phow_baseline.encoding.ENCODINGS and get_encoding("meanres") is meanres
    cfg, enc, fitted = _fit("meanres", phow_pairs)
    assert enc is meanres and enc.summary(fitted).startswith("the mean of ")
    X = np.stack([fitted.encode_one(f, d) for f, d in phow_pairs])
    Y = np.tile([0, 1], (14, 3)).T
    model = PhowModel(cfg, fitted, OneVsRestSVM(C=1.0).fit(X, Y))
    assert model.kernel_map is None and not model.has_heatmaps
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.encoding is meanres
    np.testing.assert_allclose(
        loaded.raw_scores(np.zeros((64, 64), np.uint8) + 9), model.raw_scores(np.zeros((64, 64), np.uint8) + 9)
    )
    np.testing.assert_allclose(model.decision_function(X[:2]), loaded.decision_function(X[:2]))
    unregister_encoding("meanres")
    with pytest.raises(Exception, match="encoding must be one of"):
        load_model(tmp_path / "m")
    register_encoding(meanres)  # for the fixture's teardown


# --------------------------------------------------------------------------
# Model kinds: one interface (phow_baseline.model.protocol.Model)
# --------------------------------------------------------------------------


def test_every_model_kind_meets_the_model_interface():
    from phow_baseline.model import Model, PhowModel

    assert issubclass(PhowModel, Model) and not PhowModel.__abstractmethods__
    assert PhowModel.kind == "phow" and PhowModel.scores_in_workers


@pytest.mark.slow
@pytest.mark.cnn
def test_the_cnn_model_meets_the_model_interface(torch, tmp_path):
    from phow_baseline.cnn.models import build_model
    from phow_baseline.cnn.train import CnnConfig, CnnModel
    from phow_baseline.model import DecisionsUnavailableError, Model, load_model

    assert issubclass(CnnModel, Model) and not CnnModel.__abstractmethods__
    torch.manual_seed(0)
    cfg = CnnConfig(backbone="resnet50", cache_size=64, resize=64, crop=56, equalization="none")
    model = CnnModel(build_model("resnet50", None), cfg, device="cpu")
    assert (model.kind, model.image_size, model.score_kind) == ("cnn", 64, "probability")
    assert model.has_heatmaps and not model.has_decisions and not model.scores_in_workers
    img = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    raw, p = model.raw_scores(img), model.scores(img)
    assert raw.shape == p.shape == (14,) and ((p > 0) & (p < 1)).all()
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-raw.astype(np.float64))))
    assert model.heatmaps(img).shape == (14, 64, 64)
    with pytest.raises(DecisionsUnavailableError, match="no operating points"):
        model.decide(p[None])
    model.save(tmp_path / "cnn", extra={"note": "test"})
    loaded = load_model(tmp_path / "cnn")
    assert isinstance(loaded, CnnModel)
    np.testing.assert_allclose(loaded.raw_scores(img), raw, rtol=1e-5, atol=1e-5)
