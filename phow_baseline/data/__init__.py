"""Stage 1, data: a dataset folder -> metadata, labels, splits, boxes, and preprocessed images.

:mod:`.chestxray14` reads NIH ChestX-ray14 (metadata, the official split,
the boxes, patient-wise validation carves); :mod:`.imread` reads an X-ray
file into 8-bit grey, checking its header first; :mod:`.preprocess`
equalizes and resizes it; :mod:`.cache` keeps the memory-mapped image cache;
:mod:`.download` fetches the NIH archives; :mod:`.phantom` renders the
synthetic ground-truth dataset.

:mod:`.protocol` is what the rest of the library reads from any dataset
(:class:`ChestDataset`: names, paths, label codes and a :class:`LabelPolicy`,
splits, patients, subgroups, boxes; :func:`open_dataset` detects the kind);
the adapters :mod:`.chestxray14` (:class:`ChestXray14Dataset`),
:mod:`.chexpert`, :mod:`.mimic`, :mod:`.padchest` and :mod:`.csv_dataset`
register their kinds in :data:`DATASETS`; :mod:`.label_map` pairs label
names across datasets; :mod:`.lookalike` writes small folders in each real
format (for the tests).
"""

from .cache import ImageCache
from .chestxray14 import (
    LABELS,
    NO_FINDING,
    SPLITS,
    ChestXray14,
    ChestXray14Dataset,
    DatasetError,
    MissingImagesWarning,
    followup_index,
    patient_from_name,
    read_boxes,
    read_metadata,
    read_split_list,
)
from .chexpert import CheXpert
from .csv_dataset import CsvDataset
from .imread import ImageReadError, read_xray, to_gray_uint8
from .label_map import SYNONYMS, LabelPair, shared_labels, shared_name, why_not_shared
from .mimic import MimicCXR
from .padchest import PadChest
from .preprocess import EQUALIZATIONS, equalize, resize
from .protocol import (
    CODE_NAMES,
    DATASETS,
    EVALUATION_POLICY,
    FRONTAL_VIEWS,
    NEGATIVE,
    NOT_MENTIONED,
    POSITIVE,
    SUBGROUP_COLUMNS,
    TRAINING_POLICY,
    UNCERTAIN,
    VIEWS,
    ChestDataset,
    LabelPolicy,
    detect_kind,
    get_dataset,
    open_dataset,
    patient_split,
    register_dataset,
)

# The function ``preprocess.preprocess`` shares its module's name: it is reached through its
# module, so that ``phow_baseline.data.preprocess`` stays a module.
__all__ = [
    "CODE_NAMES",
    "DATASETS",
    "EQUALIZATIONS",
    "EVALUATION_POLICY",
    "FRONTAL_VIEWS",
    "LABELS",
    "NEGATIVE",
    "NOT_MENTIONED",
    "NO_FINDING",
    "POSITIVE",
    "SPLITS",
    "SUBGROUP_COLUMNS",
    "SYNONYMS",
    "TRAINING_POLICY",
    "UNCERTAIN",
    "VIEWS",
    "ChestDataset",
    "ChestXray14",
    "ChestXray14Dataset",
    "CheXpert",
    "CsvDataset",
    "DatasetError",
    "ImageCache",
    "ImageReadError",
    "LabelPair",
    "LabelPolicy",
    "MimicCXR",
    "MissingImagesWarning",
    "PadChest",
    "detect_kind",
    "equalize",
    "followup_index",
    "get_dataset",
    "open_dataset",
    "patient_from_name",
    "patient_split",
    "read_boxes",
    "read_metadata",
    "read_split_list",
    "read_xray",
    "register_dataset",
    "resize",
    "shared_labels",
    "shared_name",
    "to_gray_uint8",
    "why_not_shared",
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
