"""The 0.1 modules that 0.2 split (metrics, calibration, preprocess, phantom, followup, data) give their 0.1 names.

``phow_baseline.metrics``, ``.calibration`` and ``.preprocess`` are built by
``phow_baseline._compat`` from the modules their names went to;
``phow_baseline.phantom`` is the ``data.phantom`` package; the ``followup``
and ``data`` packages hold (or forward) the names of the 0.1 modules of the
same name.
"""

import sys
import warnings

import pytest

import phow_baseline.classification
import phow_baseline.data
import phow_baseline.data.phantom
import phow_baseline.evaluation
import phow_baseline.followup

#: The names each 0.1 module defined (its functions, classes and constants; not what it imported).
NAMES_01 = {
    "metrics": (
        "DEFAULT_N_BOOTSTRAP",
        "N_BINS",
        "PUBLISHED",
        "ROC_GRID",
        "ROC_MARKED",
        "auroc_weighted",
        "auroc_weighted_all",
        "bootstrap_auroc",
        "bootstrap_roc_band",
        "bootstrap_weights",
        "calibration_summary",
        "comparison_table",
        "evaluate_scores",
        "format_auroc_table",
        "operating_point_metrics",
        "plot_calibration",
        "plot_roc",
        "read_metrics",
        "read_predictions",
        "table_markdown",
        "write_predictions",
        "write_run_dir",
    ),
    "calibration": (
        "N_BINS",
        "RATES",
        "RULES",
        "OperatingPoints",
        "PlattCalibrator",
        "TemperatureScaler",
        "bootstrap_weights",
        "brier_scores",
        "calibration_summary",
        "choose_threshold",
        "expected_calibration_error",
        "fit_sigmoid",
        "operating_point_metrics",
        "reliability_curve",
    ),
    "preprocess": (
        "CACHE_FORMAT_VERSION",
        "CACHE_SHARD_SIZE",
        "CLAHE_CLIP_LIMIT",
        "CLAHE_TILE_GRID",
        "DEFAULT_EQUALIZATION",
        "DEFAULT_SIZE",
        "EQUALIZATIONS",
        "MAX_FILE_BYTES",
        "MAX_IMAGE_PIXELS",
        "MAX_IMAGE_SIDE",
        "CacheFailure",
        "ImageCache",
        "ImageReadError",
        "equalize",
        "header_size",
        "preprocess",
        "read_xray",
        "resize",
        "to_gray_uint8",
    ),
    "phantom": (
        "CONSPICUOUS",
        "DEFAULT_ENRICH",
        "DEFAULT_SIZE",
        "FOLLOWUP_STORIES",
        "LIKE_CHUNK",
        "LIKE_VERSION",
        "REAL_COMBINATIONS",
        "SUBTLE",
        "Anatomy",
        "draw_finding",
        "finish",
        "image_seed",
        "load_truth",
        "make_anatomy",
        "make_phantom_dataset",
        "make_phantom_like",
        "render_base",
        "render_case",
        "render_like",
    ),
    "followup": (
        "DISSIMILARITY_MAX",
        "MIN_OVERLAP",
        "MOTIONS",
        "NO_DATA_GREYS",
        "ORDER_RULE",
        "SSIM_WINDOW",
        "FollowupDiff",
        "PairError",
        "Registration",
        "diff_pair",
        "figure_paths",
        "no_data_hatch",
        "overlay_rgb",
        "read_diff",
        "register",
        "registration_quality",
        "warp_with_overlap",
        "write_diff_dir",
    ),
}
#: 0.1's ``phow_baseline.data`` names that the 0.2 ``data`` package forwards to ``data.chestxray14``.
DATA_FORWARDED_01 = (
    "BBOX_FILES",
    "BBOX_FRAME",
    "DEFAULT_SEED",
    "DEFAULT_VAL_FRACTION",
    "LABEL_ALIASES",
    "METADATA_FILES",
    "TEST_LIST",
    "TRAIN_VAL_LIST",
    "SplitCount",
    "discover_images",
    "format_summary",
    "labels_from_strings",
    "patient_validation_split",
    "png_size",
)


def _import_as_0_1_code(old: str, monkeypatch):
    """``import phow_baseline.<old>`` afresh from code named ``<0.1 code>``; the module and its DeprecationWarnings."""
    monkeypatch.delitem(sys.modules, f"phow_baseline.{old}", raising=False)
    namespace = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(f"import phow_baseline.{old} as module", "<0.1 code>", "exec"), namespace)
    return namespace["module"], [w for w in caught if issubclass(w.category, DeprecationWarning)]


@pytest.mark.parametrize(
    "old, homes",
    [
        ("metrics", (phow_baseline.evaluation,)),
        ("calibration", (phow_baseline.classification, phow_baseline.evaluation)),
        ("preprocess", (phow_baseline.data,)),
    ],
)
def test_a_split_0_1_module_gives_its_names_from_their_new_homes_with_one_warning(old, homes, monkeypatch):
    module, warned = _import_as_0_1_code(old, monkeypatch)
    assert len(warned) == 1, [str(w.message) for w in warned]
    assert str(warned[0].message).startswith(f"phow_baseline.{old} is deprecated since phow-baseline 0.2")
    assert warned[0].filename == "<0.1 code>"  # the warning points at the import, not into the package
    assert [n for n in NAMES_01[old] if not hasattr(module, n)] == []
    shared = [(n, home) for n in NAMES_01[old] for home in homes if n in home.__all__]
    assert len(shared) >= 5
    for name, home in shared:
        assert getattr(module, name) is getattr(home, name), name


def test_the_0_1_phantom_module_is_the_phantom_package(monkeypatch):
    module, warned = _import_as_0_1_code("phantom", monkeypatch)
    assert module is phow_baseline.data.phantom
    assert len(warned) == 1 and "import phow_baseline.data.phantom instead" in str(warned[0].message)
    assert [n for n in NAMES_01["phantom"] if not hasattr(module, n)] == []


def test_the_followup_package_holds_the_0_1_followup_names_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        missing = [n for n in NAMES_01["followup"] if not hasattr(phow_baseline.followup, n)]
    assert missing == []
    assert sorted(phow_baseline.followup.__all__) == sorted(NAMES_01["followup"] + ("ECC_GOOD", "ECC_POOR"))


def test_the_data_package_forwards_the_other_0_1_data_names_with_a_warning():
    from phow_baseline.data import chestxray14

    for name in DATA_FORWARDED_01:
        with pytest.warns(DeprecationWarning, match=rf"phow_baseline\.data\.{name} is deprecated"):
            assert getattr(phow_baseline.data, name) is getattr(chestxray14, name)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = phow_baseline.data.no_such_name
