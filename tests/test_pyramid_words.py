"""The bag of words' encode_one: its words are the float64 brute force's, and the search says what it runs."""

import numpy as np
import pytest

from phow_baseline.encoding.pyramid import SpatialPyramidEncoder
from phow_baseline.encoding.quantize import quantizer_kernel


@pytest.fixture(scope="module")
def real_image_and_words(sample_images):
    """PHOW of one real 256 px image and 200 words k-means'd on two other images (128 px)."""
    from phow_baseline.data.preprocess import preprocess
    from phow_baseline.encoding.vocabulary import Vocabulary
    from phow_baseline.features.phow import phow

    train = [phow(preprocess(p, 128))[1] for p in sample_images[30:32]]
    C = Vocabulary(200, max_descriptors=8_000, random_state=0).fit(train).cluster_centers_
    return phow(preprocess(sample_images[3], 256)), C


def test_encode_one_words_are_the_float64_brute_force(real_image_and_words):
    (frames, X), C = real_image_and_words
    assert len(X) > 50_000 and (~X.any(1)).sum() > 0  # a full 256 px image, zeroed descriptors included
    enc = SpatialPyramidEncoder(centers=C, n_threads=1).fit()
    feat, words = enc.encode_one(frames, X, return_words=True)
    X64, C64 = X.astype(np.float64), C.astype(np.float64)
    # every distance, float64: ||x||^2 - 2 x.c + ||c||^2 (exact products of uint8 and float32 values)
    D = (X64**2).sum(1)[:, None] - 2.0 * X64 @ C64.T + (C64**2).sum(1)[None]
    assert (words == D.argmin(1)).mean() == 1.0
    # and the histogram is that of the brute-force words
    _, w2 = SpatialPyramidEncoder(centers=C, n_threads=2).fit().encode_one(frames, X, return_words=True)
    np.testing.assert_array_equal(w2, words)
    assert feat.shape == (200 * 20,) and abs(float(feat.sum()) - 1.0) < 1e-5


def test_quantizer_kernel_names_the_search_and_the_machine_code():
    import llvmlite.binding as ll

    name = quantizer_kernel()
    assert name.startswith("pruned-pca32 ") and ll.get_host_cpu_name() in name
    assert quantizer_kernel(12, 40).startswith("gemm ")  # too few words to prune
    assert quantizer_kernel(600, 128, method="gemm").startswith("gemm ")
    feats = ll.get_host_cpu_features()
    if not feats.get("avx512f", False):  # the kernel runs without AVX-512 and says what it uses
        assert "AVX512" not in name
    with pytest.raises(ValueError, match="method must be"):
        quantizer_kernel(method="fast")
