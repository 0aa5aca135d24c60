"""Stage 3, encoding: descriptors -> one fixed-length vector per image.

The exact nearest-word quantizer (:mod:`.quantize`), k-means with Elkan's
bounds (:mod:`.kmeans`, :mod:`.kmeans_bounds`), the visual vocabulary
(:mod:`.vocabulary`), the diagonal GMM (:mod:`.gmm`), the spatial pyramid
(:mod:`.pyramid`), Fisher vectors (:mod:`.fisher`), VLAD (:mod:`.vlad`),
and the sharded on-disk feature store (:mod:`.store`).
"""

from .fisher import FisherVectorEncoder
from .gmm import GaussianMixtureVocabulary
from .kmeans import fit_kmeans
from .pyramid import SpatialPyramidEncoder
from .quantize import quantize_histogram
from .store import FeatureStore, encode_to_store
from .vlad import VladEncoder
from .vocabulary import Vocabulary, sample_descriptors

__all__ = [
    "FeatureStore", "FisherVectorEncoder", "GaussianMixtureVocabulary", "SpatialPyramidEncoder", "VladEncoder",
    "Vocabulary", "encode_to_store", "fit_kmeans", "quantize_histogram", "sample_descriptors",
]
