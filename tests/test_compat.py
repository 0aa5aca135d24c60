"""0.1 compatibility: a 0.1 model directory loads and scores as it did; the 0.1 import paths still work.

``tests/fixtures/model-0.1/`` holds two model directories written by the 0.1
code (``make_fixture.py`` there says how): ``bow`` (16 words, Platt-calibrated,
with operating points) and ``fisher`` (4 Gaussians on PCA-16, uncalibrated),
each with the 0.1 model's ``scores.npy`` and ``raw_scores.npy`` on the four
phantom images of ``images/``, and the records of its work folder's caches
(``vocabulary.json``, ``feature-index.json``).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phow_baseline.model import Model, PhowModel, load_model

FIXTURE = Path(__file__).parent / "fixtures" / "model-0.1"
IMAGES = sorted((FIXTURE / "images").glob("*.png"))


@pytest.mark.parametrize("name", ["bow", "fisher"])
def test_a_0_1_model_directory_loads_and_scores_as_0_1_did(name):
    meta = json.loads((FIXTURE / name / "model" / "model.json").read_text())
    assert meta["versions"]["phow_baseline"].startswith("0.1")  # written by 0.1, not by this code
    model = load_model(FIXTURE / name / "model")
    assert isinstance(model, PhowModel) and isinstance(model, Model) and model.config.encoding == name
    if name == "bow":  # trained on the closed-form map (the table came in 0.3.0): loaded with it
        assert "kernel_map" not in meta["params"] and model.kernel_map.evaluation == "closed_form"
    assert len(IMAGES) == 4
    imgs = [model.preprocess(p) for p in IMAGES]
    raw = np.stack([model.raw_scores(im) for im in imgs])
    scores = np.stack([model.scores(im) for im in imgs])
    # Fisher vectors: 0.2 sums the moments in another order (a sparse float64 kernel instead of 0.1's float32
    # GEMM, issue 24): float32 rounding of the encoding, ~1e-6 of the scores
    atol = 1e-5 if name == "fisher" else 1e-9
    np.testing.assert_allclose(raw, np.load(FIXTURE / name / "raw_scores.npy"), rtol=0, atol=atol)
    np.testing.assert_allclose(scores, np.load(FIXTURE / name / "scores.npy"), rtol=0, atol=atol)
    assert raw.shape == (4, 14) and np.ptp(raw, axis=0).max() > 0  # the images do not all score alike


def test_the_0_1_calibrated_model_keeps_its_probabilities_and_decisions():
    model = load_model(FIXTURE / "bow" / "model")
    assert model.score_kind == "probability" and model.has_decisions and model.has_heatmaps
    p = np.load(FIXTURE / "bow" / "scores.npy")
    assert ((p > 0) & (p < 1)).all()
    calls = model.decide(p)
    assert calls.shape == (4, 14) and set(np.unique(calls)) <= {0, 1}
    np.testing.assert_array_equal(calls, model.operating_points.decide(p))
    fisher = load_model(FIXTURE / "fisher" / "model")
    assert fisher.score_kind == "margin" and not fisher.has_decisions and not fisher.has_heatmaps


@pytest.mark.parametrize("name", ["bow", "fisher"])
def test_the_0_1_work_folder_records_match_the_0_2_fingerprints(name, tmp_path):
    """A 0.1 work folder's vocabulary and feature store are reused: their records equal what 0.2 computes.

    Store parameters leave out the encoder's runtime settings (``RUNTIME_PARAMS``: progress messages,
    threads) that 0.1 and 0.2.0 recorded; such an index is rewritten without them when reopened.
    """
    from phow_baseline.encoding.registry import RUNTIME_PARAMS
    from phow_baseline.encoding.store import FeatureStore
    from phow_baseline.features.phow import make_phow
    from phow_baseline.workflow.steps import _vocab_fingerprint

    model = load_model(FIXTURE / name / "model")
    index = json.loads((FIXTURE / name / "feature-index.json").read_text())
    vocabulary_record = json.loads((FIXTURE / name / "vocabulary.json").read_text())["params"]
    # every training image of the phantom is readable: the vocabulary's images are the store's
    assert _vocab_fingerprint(model.config, index["names"]) == vocabulary_record
    store_params = {
        "phow": make_phow(model.config).get_params(),
        **model.encoding.store_params(model.encoder),
        "cache": index["params"]["cache"],
    }
    held = dict(index["params"])
    if "encoder_params" in held:
        held["encoder_params"] = {k: v for k, v in held["encoder_params"].items() if k not in RUNTIME_PARAMS}
    assert json.loads(json.dumps(store_params, default=str)) == held
    # and the store itself reopens (its index rewritten without the runtime settings), nothing to redo
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "index.json").write_text(json.dumps(index))
    store = FeatureStore.create(
        tmp_path / "store",
        index["names"],
        index["dim"],
        json.loads(json.dumps(store_params, default=str)),
        index["shard_size"],
    )
    assert store.params == json.loads(json.dumps(store_params, default=str))
    assert index["params"]["vocabulary_sha256"] == model.encoding.vocabulary_sha256(model.vocabulary)
    assert index["dim"] == model.encoding.dimension(model.config) == model.encoder.n_features_out_


#: 0.1 import statement -> whether it must warn (moved) or not (the name is still where it was).
OLD_IMPORTS = {
    "import phow_baseline.preprocess; phow_baseline.preprocess.preprocess": True,
    "from phow_baseline.pipeline import make_pipeline": True,
    "from phow_baseline.phow import PHOW": True,
    "from phow_baseline.metrics import evaluate_scores": True,
    "from phow_baseline.model_io import load_model": True,
    "from phow_baseline.features import FeatureStore": True,
    "from phow_baseline.config import make_phow": True,
    "from phow_baseline.data import ChestXray14, LABELS": False,
    "from phow_baseline.config import BaselineConfig": False,
}

_PROBE = """
import json, sys, warnings
out = {}
for stmt in json.loads(sys.argv[1]):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            exec(stmt, {})
            out[stmt] = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
        except Exception as exc:
            out[stmt] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_the_0_1_import_paths_work_and_warn_where_moved():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    res = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(OLD_IMPORTS))],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    got = json.loads(res.stdout)
    for stmt, moved in OLD_IMPORTS.items():
        assert isinstance(got[stmt], list), f"{stmt}: {got[stmt]}"
        if moved:
            assert any("deprecated since phow-baseline 0.2" in m for m in got[stmt]), f"{stmt}: no warning"
        else:
            assert got[stmt] == [], f"{stmt}: warned {got[stmt]}"


def test_the_0_1_names_are_the_new_objects():
    import warnings

    import phow_baseline.features.phow
    import phow_baseline.model.directory
    from phow_baseline.encoding.store import FeatureStore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import phow_baseline.model_io
        from phow_baseline.config import make_phow
        from phow_baseline.features import FeatureStore as OldFeatureStore
    assert phow_baseline.model_io is phow_baseline.model.directory
    assert make_phow is phow_baseline.features.phow.make_phow and OldFeatureStore is FeatureStore
