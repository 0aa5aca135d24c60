"""Stage 2, features: dense SIFT (VLFeat's ``vl_dsift``), PHOW (``vl_phow``), descriptor post-processing.

:mod:`.dsift` is the dense SIFT kernel (Numba), :mod:`.phow` the
multi-scale PHOW extractor on top of it, :mod:`.descriptors` RootSIFT and
PCA.  (In 0.1, ``phow_baseline.features`` was the feature store: it is
:mod:`phow_baseline.encoding.store` now, and its old names still resolve
here with a :class:`DeprecationWarning`.)
"""

from .descriptors import PCA, RootSIFT, root_sift
from .dsift import DESCRIPTOR_SIZE
from .phow import PHOW, phow_batch

# The functions ``dsift.dsift`` and ``phow.phow`` share their modules' names: they are
# reached through their modules, so that ``phow_baseline.features.dsift`` stays a module.
__all__ = ["DESCRIPTOR_SIZE", "PCA", "PHOW", "RootSIFT", "phow_batch", "root_sift"]

_MOVED = {
    "FeatureStore": "phow_baseline.encoding.store:FeatureStore",
    "encode_to_store": "phow_baseline.encoding.store:encode_to_store",
    "encode_images": "phow_baseline.encoding.store:encode_images",
    "FEATURE_FORMAT_VERSION": "phow_baseline.encoding.store:FEATURE_FORMAT_VERSION",
    "FEATURE_SHARD_SIZE": "phow_baseline.encoding.store:FEATURE_SHARD_SIZE",
}


def __getattr__(name):
    from .._compat import forward

    return forward(__name__, _MOVED, name)
