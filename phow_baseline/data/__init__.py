"""Stage 1, data: a dataset folder -> metadata, labels, splits, boxes, and preprocessed images.

:mod:`.chestxray14` reads NIH ChestX-ray14 (metadata, the official split,
the boxes, patient-wise validation carves); :mod:`.preprocess` reads an
X-ray file into 8-bit grey, equalizes and resizes it, and keeps the
memory-mapped image cache; :mod:`.download` fetches the NIH archives;
:mod:`.phantom` renders the synthetic ground-truth dataset.
"""

from .chestxray14 import (
    LABELS,
    NO_FINDING,
    SPLITS,
    ChestXray14,
    DatasetError,
    MissingImagesWarning,
    followup_index,
    patient_from_name,
    read_boxes,
    read_metadata,
    read_split_list,
)
from .preprocess import EQUALIZATIONS, ImageCache, ImageReadError, equalize, read_xray, resize

__all__ = [
    "EQUALIZATIONS", "LABELS", "NO_FINDING", "SPLITS", "ChestXray14", "DatasetError", "ImageCache",
    "ImageReadError", "MissingImagesWarning", "equalize", "followup_index", "patient_from_name",
    "read_boxes", "read_metadata", "read_split_list", "read_xray", "resize",
]
