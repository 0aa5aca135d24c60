"""Stage 3, encoding: descriptors -> one fixed-length vector per image.

The exact nearest-word quantizer (:mod:`.quantize`), k-means with Elkan's
bounds (:mod:`.kmeans`, :mod:`.kmeans_bounds`), the visual vocabulary
(:mod:`.vocabulary`), the diagonal GMM (:mod:`.gmm`), the spatial pyramid
(:mod:`.pyramid`), Fisher vectors (:mod:`.fisher`), VLAD (:mod:`.vlad`),
the registry of encodings by name (:mod:`.registry`: ``bow``, ``fisher``,
``vlad``, each one :class:`Encoding`; how to add one is in its docstring),
and the sharded on-disk feature store (:mod:`.store`).
"""

from .fisher import FisherVectorEncoder
from .gmm import GaussianMixtureVocabulary
from .kmeans import fit_kmeans
from .pyramid import SpatialPyramidEncoder
from .quantize import quantize_histogram
from .registry import (
    Encoding,
    UnknownEncodingError,
    encoding_for,
    encoding_names,
    get_encoding,
    register_encoding,
    unregister_encoding,
)
from .store import FeatureStore, encode_to_store
from .vlad import VladEncoder
from .vocabulary import Vocabulary, sample_descriptors

__all__ = [
    "ENCODINGS",
    "Encoding",
    "FeatureStore",
    "FisherVectorEncoder",
    "GaussianMixtureVocabulary",
    "SpatialPyramidEncoder",
    "UnknownEncodingError",
    "VladEncoder",
    "Vocabulary",
    "encode_to_store",
    "encoding_for",
    "encoding_names",
    "fit_kmeans",
    "get_encoding",
    "quantize_histogram",
    "register_encoding",
    "sample_descriptors",
    "unregister_encoding",
]


def __getattr__(name):
    # ENCODINGS (the registered names, a tuple) is read from the registry when asked for, so that it
    # includes encodings registered later
    if name == "ENCODINGS":
        return encoding_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
