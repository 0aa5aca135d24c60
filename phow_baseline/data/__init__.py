"""Stage 1, data: a dataset folder -> metadata, labels, splits, boxes, and preprocessed images.

:mod:`.chestxray14` reads NIH ChestX-ray14 (metadata, the official split,
the boxes, patient-wise validation carves); :mod:`.imread` reads an X-ray
file into 8-bit grey, checking its header first; :mod:`.preprocess`
equalizes and resizes it; :mod:`.cache` keeps the memory-mapped image cache;
:mod:`.download` fetches the NIH archives; :mod:`.phantom` renders the
synthetic ground-truth dataset.
"""

from .cache import ImageCache
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
from .imread import ImageReadError, read_xray, to_gray_uint8
from .preprocess import EQUALIZATIONS, equalize, resize

# The function ``preprocess.preprocess`` shares its module's name: it is reached through its
# module, so that ``phow_baseline.data.preprocess`` stays a module.
__all__ = [
    "EQUALIZATIONS",
    "LABELS",
    "NO_FINDING",
    "SPLITS",
    "ChestXray14",
    "DatasetError",
    "ImageCache",
    "ImageReadError",
    "MissingImagesWarning",
    "equalize",
    "followup_index",
    "patient_from_name",
    "read_boxes",
    "read_metadata",
    "read_split_list",
    "read_xray",
    "resize",
    "to_gray_uint8",
]

# 0.1's ``phow_baseline.data`` was today's :mod:`.chestxray14`: its other names still resolve, warned.
_MOVED = {
    name: f"phow_baseline.data.chestxray14:{name}"
    for name in (
        "LABEL_ALIASES",
        "METADATA_FILES",
        "TRAIN_VAL_LIST",
        "TEST_LIST",
        "BBOX_FILES",
        "BBOX_FRAME",
        "DEFAULT_VAL_FRACTION",
        "DEFAULT_SEED",
        "labels_from_strings",
        "png_size",
        "discover_images",
        "patient_validation_split",
        "SplitCount",
        "format_summary",
    )
}


def __getattr__(name):
    from .._compat import forward

    return forward(__name__, _MOVED, name)
