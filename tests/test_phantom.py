"""The ground-truth phantom: deterministic, in the ChestX-ray14 layout, findings where their boxes say."""

import hashlib
import warnings

import cv2
import numpy as np
import pytest

from phow_baseline.data.chestxray14 import LABELS, ChestXray14
from phow_baseline.data.phantom import (
    CONSPICUOUS,
    REAL_COMBINATIONS,
    draw_finding,
    load_truth,
    make_anatomy,
    make_phantom_dataset,
    render_base,
    render_case,
)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    return make_phantom_dataset(tmp_path_factory.mktemp("ph") / "p", n_patients=200, seed=3)


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic(tmp_path):
    a = make_phantom_dataset(tmp_path / "a", n_patients=30, seed=7)
    b = make_phantom_dataset(tmp_path / "b", n_patients=30, seed=7)
    c = make_phantom_dataset(tmp_path / "c", n_patients=30, seed=8)
    assert _digest(a) == _digest(b) != _digest(c)


def test_layout_reads_as_chestxray14(phantom_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing missing: no warning at all
        ds = ChestXray14(phantom_dir, strict=True)
    c = ds.counts()
    assert c["all"].present == c["all"].listed == 200 + 6 * 2  # follow-up patients have 3 images
    tv, te = set(ds.patients(ds.split_names("train_val"))), set(ds.patients(ds.split_names("test")))
    assert tv and te and not (tv & te)
    assert not (phantom_dir / "test_list.txt").read_text().endswith("\n")
    # every label occurs
    y = ds.labels(ds.split_names("all"))
    assert (y.sum(0) > 0).all(), dict(zip(LABELS, y.sum(0)))
    # boxes: only test images, scaled back exactly from the 1024 frame
    truth = load_truth(phantom_dir)["images"]
    b = ds.boxes()
    assert len(b) and set(b["Image Index"]) <= set(ds.split_names("test"))
    for _, r in b.head(30).iterrows():
        want = truth[r["Image Index"]]["boxes"][r["label"]]
        np.testing.assert_allclose([r.x, r.y, r.w, r.h], want, atol=1e-3)
        assert 0 <= r.x and r.x + r.w <= 256 and 0 <= r.y and r.y + r.h <= 256


def test_prevalence_follows_the_real_ranking(phantom_dir):
    ds = ChestXray14(phantom_dir)
    y = ds.labels(ds.split_names("all")).sum(0)
    prev = dict(zip(LABELS, y))
    # the real data's most and least common findings keep their order
    assert prev["Infiltration"] > prev["Hernia"] and prev["Effusion"] > prev["Pneumonia"]
    assert 0.03 < (ds.labels(ds.split_names("all")).sum(1) == 0).mean() < 0.5  # enriched: ~10 % (real: 53 %)
    assert sum(REAL_COMBINATIONS.values()) > 0.9 * 112_120


@pytest.mark.parametrize("label", LABELS)
def test_each_finding_changes_its_box(label):
    """Drawing a finding changes the image inside its box, and (for local findings)
    much less outside it."""
    rng = np.random.default_rng(LABELS.index(label))
    an = make_anatomy(rng, 256, label == "Cardiomegaly", label == "Emphysema")
    base = render_base(an, np.random.default_rng(1))
    img = base.copy()
    box, _ = draw_finding(img, label, an, rng)
    if label in ("Cardiomegaly", "Emphysema"):
        normal = render_base(make_anatomy(np.random.default_rng(LABELS.index(label)), 256), np.random.default_rng(1))
        diff = np.abs(base - normal)
    else:
        diff = np.abs(img - base)
    x, y, w, h = (int(round(v)) for v in box)
    assert w > 0 and h > 0
    inside = diff[y : y + h + 1, x : x + w + 1].sum()
    assert inside > 0.5 * diff.sum(), label


def test_followup_series_show_the_change(phantom_dir):
    truth = load_truth(phantom_dir)
    stories = {f["change"] for f in truth["followups"]}
    assert stories == {"grows", "appears", "resolves"}
    for f in truth["followups"]:
        scales = [s["scale"] for s in f["series"]]
        if f["change"] == "grows":
            areas = [s["box"][2] * s["box"][3] for s in f["series"]]
            assert areas[0] < areas[1] < areas[2]
        if f["change"] == "appears":
            assert scales[0] == 0 and f["series"][0]["box"] is None and f["series"][2]["box"] is not None
        if f["change"] == "resolves":
            assert scales[-1] == 0 and truth["images"][f["series"][-1]["image"]]["findings"] == []


def test_render_case_returns_uint8_and_boxes():
    img, boxes, an, params = render_case(["Mass", "Effusion"], np.random.default_rng(0), 128)
    assert img.dtype == np.uint8 and img.shape == (128, 128) and set(boxes) == {"Mass", "Effusion"}
    again, boxes2, _, _ = render_case(["Mass", "Effusion"], np.random.default_rng(0), 128)
    assert np.array_equal(img, again) and boxes == boxes2


def test_existing_folder_with_other_parameters(tmp_path):
    make_phantom_dataset(tmp_path / "p", n_patients=10)
    with pytest.raises(FileExistsError, match="other parameters"):
        make_phantom_dataset(tmp_path / "p", n_patients=11)


def test_differencing_finds_the_change_between_followups(phantom_dir):
    """On the phantom's follow-up series, the structural difference concentrates in the
    box of the finding that appeared or grew."""
    from phow_baseline.followup import diff_pair

    truth = load_truth(phantom_dir)
    checked = 0
    for f in truth["followups"]:
        if f["change"] not in ("appears", "grows"):
            continue
        first, last = f["series"][0], f["series"][-1]
        d = diff_pair(phantom_dir / "images" / first["image"], phantom_dir / "images" / last["image"], size=256)
        assert d.registration.converged and d.registration.ecc > 0.9
        # the later box, mapped into the earlier image's frame
        x, y, w, h = last["box"]
        inv = cv2.invertAffineTransform(d.registration.matrix)
        cx, cy = inv @ np.array([x + w / 2, y + h / 2, 1.0])
        x0, y0, x1, y1 = int(max(cx - w / 2, 0)), int(max(cy - h / 2, 0)), int(cx + w / 2) + 1, int(cy + h / 2) + 1
        for name, change in (
            ("structure", (1 - d.ssim_map) * d.valid),
            ("intensity increase", np.clip(d.intensity_diff, 0, None)),
        ):
            smooth = cv2.GaussianBlur(change.astype(np.float32), (0, 0), 4)
            yy, xx = np.unravel_index(np.argmax(smooth), smooth.shape)
            assert x0 <= xx <= x1 and y0 <= yy <= y1, (f["finding"], f["change"], name, (xx, yy), (x0, y0, x1, y1))
            inside = change[y0:y1, x0:x1]
            assert inside.sum() / change.sum() > 1.5 * inside.size / change.size, (f["finding"], name)
        checked += 1
    assert checked >= 2


def _learnability_set(label, n, size=128, seed=0):
    """``n`` renders with ``label`` and ``n`` without (these carry one other finding or none)."""
    rng = np.random.default_rng([seed, LABELS.index(label)])
    others = [f for f in LABELS if f != label]
    X, y = [], []
    for i in range(2 * n):
        pos = i % 2 == 0
        extra = [] if rng.random() < 0.4 else [others[int(rng.integers(len(others)))]]
        img, _, _, _ = render_case(([label] if pos else []) + extra, rng, size)
        t = cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA) / 255.0
        X.append(np.concatenate([t.ravel(), np.abs(t - t[:, ::-1]).ravel()]))  # pixels and left-right asymmetry
        y.append(int(pos))
    return np.array(X), np.array(y)


@pytest.mark.parametrize("label", CONSPICUOUS)
def test_conspicuous_findings_are_learnable_from_pixels(label):
    """A plain logistic regression on 16x16 thumbnails (and their left-right asymmetry)
    separates each conspicuous finding from images with another finding or none
    (4-fold cross-validated AUROC > 0.85); with the labels shuffled it does not (< 0.7)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    X, y = _learnability_set(label, 50)
    clf = LogisticRegression(C=1.0, max_iter=500)
    auc = roc_auc_score(y, cross_val_predict(clf, X, y, cv=4, method="decision_function"))
    y_shuf = np.random.default_rng(0).permutation(y)
    auc_shuf = roc_auc_score(y_shuf, cross_val_predict(clf, X, y_shuf, cv=4, method="decision_function"))
    assert auc > 0.85, (label, auc)
    assert auc_shuf < 0.7, (label, auc_shuf)


def test_prevalence_matches_the_configured_combination_table(phantom_dir):
    """Each label's count over the single-image patients lies within 4 binomial standard
    deviations of what the (enriched) real combination table predicts."""
    from phow_baseline.data.phantom import DEFAULT_ENRICH
    from phow_baseline.data.phantom.dataset import _combo_table

    names, probs = _combo_table(DEFAULT_ENRICH)
    truth = load_truth(phantom_dir)
    fu = {s["image"] for f in truth["followups"] for s in f["series"]}
    single = [t["findings"] for n, t in truth["images"].items() if n not in fu]
    n = len(single)
    for lab in list(LABELS) + ["No Finding"]:
        p = sum(pr for nm, pr in zip(names, probs) if lab in nm.split("|"))
        got = sum((lab in f) if lab != "No Finding" else (not f) for f in single)
        assert abs(got - n * p) <= 4 * np.sqrt(n * p * (1 - p)) + 1, (lab, got, n * p)


# --------------------------------------------------------------------------
# make_phantom_like: the shape of the real metadata
# --------------------------------------------------------------------------


def _like(sample_dir, out, **kw):
    from phow_baseline.data.phantom import make_phantom_like

    kw.setdefault("size", 64)
    kw.setdefault("limit", 200)
    kw.setdefault("n_jobs", 1)
    kw.setdefault("progress", False)
    return make_phantom_like(
        out, sample_dir / "Data_Entry_2017_v2020.csv.gz", bbox_csv=sample_dir / "BBox_List_2017.csv.gz", **kw
    )


@pytest.fixture(scope="module")
def like_dir(sample_dir, tmp_path_factory):
    return _like(sample_dir, tmp_path_factory.mktemp("like") / "p", n_jobs=2)


def test_like_has_the_real_names_labels_patients_and_split(sample_dir, like_dir):
    from phow_baseline.data.chestxray14 import read_metadata, read_split_list

    real = read_metadata(sample_dir / "Data_Entry_2017_v2020.csv.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing missing
        ds = ChestXray14(like_dir, strict=True)
    names = ds.split_names("all")
    assert len(names) == 200 and set(names) <= set(real["Image Index"])
    # patient-complete: every image of every chosen patient, and nothing else
    chosen_patients = set(ds.patients(names).tolist())
    assert set(real.loc[real["Patient ID"].isin(chosen_patients), "Image Index"]) == set(names)
    # the metadata rows are the real rows, column for column
    got = ds.metadata.set_index("Image Index").loc[names]
    want = real.set_index("Image Index").loc[names]
    for col in ("Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender", "View Position"):
        assert (got[col].to_numpy() == want[col].to_numpy()).all(), col
    # the real split lists, restricted to the chosen images, in their order
    for _split, fname in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
        real_list = read_split_list(sample_dir / fname)
        assert read_split_list(like_dir / fname) == [n for n in real_list if n in set(names)]
    assert ds.split_names("test") and ds.split_names("train_val")
    # each image drawn with exactly its row's findings
    truth = load_truth(like_dir)["images"]
    y = ds.labels(names)
    for name, row in zip(names, y):
        want_f = [LABELS[j] for j in np.flatnonzero(row)]
        assert truth[name]["findings"] == want_f and sorted(truth[name]["boxes"]) == sorted(want_f)
    img = cv2.imread(str(like_dir / "images" / names[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (64, 64) and img.dtype == np.uint8


def test_like_subset_is_seeded(sample_dir, tmp_path):
    from phow_baseline.data.chestxray14 import read_metadata
    from phow_baseline.data.phantom.like import _patient_subset

    real = read_metadata(sample_dir / "Data_Entry_2017_v2020.csv.gz")
    p = real["Patient ID"].to_numpy()
    a, b, c = _patient_subset(p, 500, 0), _patient_subset(p, 500, 0), _patient_subset(p, 500, 1)
    assert a.sum() == c.sum() == 500 and np.array_equal(a, b) and not np.array_equal(a, c)
    for m in (a, c):  # whole patients
        assert not (set(p[m].tolist()) & set(p[~m].tolist()))


def test_like_boxes_follow_the_real_box_list(sample_dir, tmp_path):
    """Every real box row of a chosen image becomes a row holding the phantom's own box
    for that finding, which the data layer scales back to the truth in pixels."""
    from phow_baseline.data.chestxray14 import read_boxes, read_metadata, read_split_list
    from phow_baseline.data.phantom import make_phantom_like

    real = read_metadata(sample_dir / "Data_Entry_2017_v2020.csv.gz")
    boxes = read_boxes(sample_dir / "BBox_List_2017.csv.gz")
    pick = set(boxes["Image Index"].drop_duplicates().iloc[:12])
    sub = real[real["Image Index"].isin(pick)]
    small = tmp_path / "meta"
    small.mkdir()
    sub.rename(
        columns={
            "Original Width": "OriginalImage[Width",
            "Original Height": "Height]",
            "Pixel Spacing x": "OriginalImagePixelSpacing[x",
            "Pixel Spacing y": "y]",
        }
    ).to_csv(small / "Data_Entry_2017_v2020.csv", index=False)
    for fname in ("train_val_list.txt", "test_list.txt"):
        (small / fname).write_text("\n".join(n for n in read_split_list(sample_dir / fname) if n in pick))
    out = make_phantom_like(
        tmp_path / "p",
        small / "Data_Entry_2017_v2020.csv",
        size=64,
        bbox_csv=sample_dir / "BBox_List_2017.csv.gz",
        n_jobs=1,
        progress=False,
    )
    ds = ChestXray14(out, strict=True)
    got = ds.boxes()
    want = boxes[boxes["Image Index"].isin(pick)]
    truth = load_truth(out)
    listed = {(n, l) for n, l in zip(want["Image Index"], want["label"])}
    drawable = {(n, l) for n, l in listed if l in truth["images"][n]["findings"]}
    assert len(drawable) >= 10 and truth["box_rows"] == len(drawable)
    assert truth["box_rows_skipped"] == len(want) - len(drawable)
    assert {(n, l) for n, l in zip(got["Image Index"], got["label"])} == drawable
    for _, r in got.iterrows():
        np.testing.assert_allclose(
            [r.x, r.y, r.w, r.h], truth["images"][r["Image Index"]]["boxes"][r["label"]], atol=1e-3
        )


def _bytes(folder):
    return {p.name: p.read_bytes() for p in (folder / "images").glob("*.png")}


def test_like_images_are_the_same_whoever_draws_them(sample_dir, like_dir, tmp_path):
    """An image depends on its name, row, size and seed only: not on the subset, the order,
    the chunking or the process that drew it."""
    from phow_baseline.data.phantom import render_like
    from phow_baseline.data.phantom.like import _encode_png

    first = _bytes(like_dir)
    other = _bytes(_like(sample_dir, tmp_path / "b", limit=260, chunk=7))  # another subset and order
    common = set(first) & set(other)
    assert len(common) >= 100
    assert all(first[n] == other[n] for n in common)
    ds = ChestXray14(like_dir)
    name = sorted(first)[5]
    findings = [LABELS[j] for j in np.flatnonzero(ds.labels([name])[0])]
    img, _ = render_like(name, findings, ds.patient_of(name), 64, 0)  # drawn here, in this process
    assert _encode_png(img) == first[name]
    reseeded = _bytes(_like(sample_dir, tmp_path / "c", seed=1, limit=40))
    assert all(reseeded[n] != first.get(n, reseeded[n] + b"x") for n in reseeded)


def test_like_resumes_keeping_what_is_there(sample_dir, tmp_path):
    import os

    out = _like(sample_dir, tmp_path / "p", limit=120, chunk=16)
    images = sorted((out / "images").glob("*.png"))
    full = {p.name: p.read_bytes() for p in images}
    # an interrupted run: some images and truth parts missing, one image marked to see that it is kept
    removed = [images[3], images[40], images[77]]
    for p in removed:
        p.unlink()
    sorted((out / ".phantom_parts").glob("*.json"))[2].unlink()
    marked = images[10]
    marked.write_bytes(b"kept")
    before = {p.name: p.stat().st_mtime_ns for p in images if p.exists()}
    (out / "phantom_truth.json").unlink()
    _like(sample_dir, out, limit=120, chunk=16)
    assert marked.read_bytes() == b"kept"  # not redrawn
    assert all(os.stat(out / "images" / n).st_mtime_ns == t for n, t in before.items())
    assert all((out / "images" / p.name).read_bytes() == full[p.name] for p in removed)
    assert len(load_truth(out)["images"]) == 120
    with pytest.raises(FileExistsError, match="other parameters"):
        _like(sample_dir, out, limit=120, chunk=16, size=72)


def test_cli_phantom_like(sample_dir, tmp_path):
    from click.testing import CliRunner

    from phow_baseline.cli import main

    out = tmp_path / "p"
    args = [
        "phantom",
        str(out),
        "--like",
        str(sample_dir / "Data_Entry_2017_v2020.csv.gz"),
        "--limit",
        "30",
        "--size",
        "64",
        "--n-jobs",
        "1",
        "--quiet",
    ]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "30 images" in r.output
    ds = ChestXray14(out, strict=True)
    assert len(ds.split_names("all")) == 30 and ds.bbox_path is not None  # the box list found next to the metadata
    r = CliRunner().invoke(main, args[:-5] + ["--size", "72", "--n-jobs", "1", "--quiet"])
    assert r.exit_code != 0 and "other parameters" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["phantom", str(tmp_path / "q"), "--limit", "30"])
    assert r.exit_code != 0 and "--like" in r.output
