"""scikit-learn's own estimator checks on the package's estimators.

Every estimator that takes array input runs ``check_estimator``'s full list
(through ``parametrize_with_checks``); each check it is known to fail is named
in :data:`EXPECTED_FAILED` with the reason.  The image-input transformers
(:class:`PHOW`, :class:`SpatialPyramidEncoder`) take sequences of images or of
``(frames, descriptors)`` pairs, which the generic checks cannot generate:
they get the checks that apply (clone, get/set_params, not-fitted errors,
fit returns self, idempotent fit).
"""

import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_clusterer
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import SKLEARN_CHECKS_NOT_APPLICABLE, applicable_checks
from phow_baseline.classification.kernel_map import AdditiveChi2Map, HomogeneousKernelMap
from phow_baseline.classification.svm import OneVsRestSVM
from phow_baseline.encoding.vocabulary import Vocabulary

ARRAY_ESTIMATORS = [
    HomogeneousKernelMap(),
    AdditiveChi2Map(),
    OneVsRestSVM(),
    OneVsRestSVM(solver="sgd"),
    Vocabulary(n_words=3, max_descriptors=1000),
]

_FLOAT32_SCORES = (
    "scores are one float32 GEMM of float32 features and weights (the 14 x 36,000 model is "
    "float32 throughout); scoring rows in batches of other sizes changes BLAS's summation and the "
    "scores by float32 rounding (~5e-7 absolute), above the check's 1e-7"
)
_CLASS_WEIGHT = (
    "class_weight is None or 'balanced', per label of a 0/1 label matrix; a dict keyed by class "
    "(this check sets {0: 1000, 1: 1e-4}) is not supported"
)
EXPECTED_FAILED = {
    "OneVsRestSVM": {
        "check_methods_subset_invariance": _FLOAT32_SCORES,
        "check_class_weight_classifiers": _CLASS_WEIGHT,
    },
}


def _expected_failed(estimator):
    return EXPECTED_FAILED.get(type(estimator).__name__, {})


@applicable_checks(
    parametrize_with_checks(ARRAY_ESTIMATORS, expected_failed_checks=_expected_failed), SKLEARN_CHECKS_NOT_APPLICABLE
)
def test_scikit_learn_checks(estimator, check):
    check(estimator)


def test_estimator_types():
    from phow_baseline.config import BaselineConfig
    from phow_baseline.workflow.pipeline import make_pipeline

    assert is_classifier(OneVsRestSVM()) and is_clusterer(Vocabulary())
    assert is_classifier(make_pipeline(BaselineConfig.from_preset("vlfeat", n_jobs=1)))


# -- the image-input transformers ------------------------------------------------


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [(rng.random((48, 56)) * 255).astype(np.uint8) for _ in range(3)]


@pytest.fixture(scope="module")
def phow_output(images):
    from phow_baseline.features.phow import PHOW

    return PHOW(equalization="none").transform(images)


def _same_params(a, b):
    pa, pb = a.get_params(), b.get_params()
    assert pa.keys() == pb.keys()
    for k in pa:
        if isinstance(pa[k], np.ndarray):
            np.testing.assert_array_equal(pa[k], pb[k])
        else:
            assert pa[k] == pb[k], k


def test_phow_transformer_contract(images, phow_output):
    from phow_baseline.features.phow import PHOW

    t = PHOW(sizes=(4, 6), equalization="none")
    c = clone(t)
    _same_params(t, c)
    assert c.set_params(step=3) is c and c.get_params()["step"] == 3 and t.get_params()["step"] == 2
    assert t.fit(images) is t  # stateless: fit checks the parameters, returns self
    out1 = PHOW(equalization="none").transform(images)  # needs no fit
    out2 = PHOW(equalization="none").fit(images).fit(images).transform(images)  # idempotent
    for (_f1, d1), (_f2, d2), (_f0, d0) in zip(out1, out2, phow_output):
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(d1, d0)
    for bad in (dict(sizes=(0, 4)), dict(step=0), dict(magnif=-1.0), dict(equalization="sharpen")):
        with pytest.raises(ValueError):
            PHOW(**bad).fit(images)


def test_spatial_pyramid_encoder_contract(phow_output):
    from phow_baseline.encoding.pyramid import SpatialPyramidEncoder

    enc = SpatialPyramidEncoder(n_words=4, max_descriptors=2000, image_size=48)
    with pytest.raises(NotFittedError):
        enc.transform(phow_output)
    with pytest.raises(NotFittedError):
        enc.encode_one(*phow_output[0])
    assert enc.fit(phow_output) is enc
    F = enc.transform(phow_output)
    assert F.shape == (3, 4 * 20) and enc.n_features_out_ == 80
    # idempotent fit: same random_state, same vocabulary, same features
    np.testing.assert_array_equal(enc.fit(phow_output).transform(phow_output), F)
    np.testing.assert_array_equal(clone(enc).fit(phow_output).transform(phow_output), F)
    # clone keeps given words (an array parameter, not a fitted estimator that clone would empty)
    words = enc.vocabulary_.cluster_centers_
    fixed = SpatialPyramidEncoder(image_size=48, centers=words)
    c = clone(fixed)
    _same_params(fixed, c)
    np.testing.assert_array_equal(c.fit().transform(phow_output), F)
    assert c.set_params(weighting="lazebnik", grids=(1, 2, 4)) is c
    assert c.fit().transform(phow_output).shape == (3, 4 * 21)
    with pytest.raises(ValueError, match="weighting"):
        SpatialPyramidEncoder(weighting="flat", centers=words).fit()
    with pytest.raises(ValueError, match="centers"):
        SpatialPyramidEncoder().fit()
    with pytest.raises(ValueError, match="pair"):
        fixed.fit().transform([phow_output[0][1]])
    nan = phow_output[0][1].astype(np.float32)
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fixed.fit().transform([(phow_output[0][0], nan)])


def test_vocabulary_contract(phow_output):
    per_image = [d for _, d in phow_output]
    v = Vocabulary(n_words=4, max_descriptors=2000)
    with pytest.raises(NotFittedError):
        v.predict(per_image[0])
    assert v.fit(per_image) is v and v.n_features_in_ == 128 and not hasattr(v, "labels_")
    np.testing.assert_array_equal(
        Vocabulary(n_words=4, max_descriptors=2000).fit(phow_output).cluster_centers_, v.cluster_centers_
    )  # (frames, descriptors) pairs work too
    # init-style words survive clone; a fitted vocabulary's learnt words do not (scikit-learn's rule)
    w = clone(Vocabulary(n_words=4, max_descriptors=2000, init=v.cluster_centers_, max_iter=1))
    np.testing.assert_array_equal(w.init, v.cluster_centers_)
    assert not hasattr(clone(v), "cluster_centers_")
    with pytest.raises(ValueError, match="features"):
        v.predict(per_image[0][:, :64])
    with pytest.raises(ValueError, match="n_words"):
        Vocabulary(n_words=1).fit(per_image)
