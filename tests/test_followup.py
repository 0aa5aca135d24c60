"""Follow-up differencing on the real follow-up series and on known transforms of real images."""

import math

import cv2
import numpy as np
import pytest

from phow_baseline.data import ImageReadError
from phow_baseline.data.preprocess import preprocess
from phow_baseline.followup import PairError, diff_pair, read_diff, register, write_diff_dir


def _warp(img, dx, dy, angle_deg):
    c = (img.shape[1] / 2, img.shape[0] / 2)
    M = cv2.getRotationMatrix2D(c, angle_deg, 1.0)
    M[:, 2] += (dx, dy)
    return cv2.warpAffine(img, M, img.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), M


def test_real_followup_series(sample_dir, tmp_path):
    fu = sorted((sample_dir / "followups").glob("*.png"))
    assert len(fu) == 7
    d = diff_pair(fu[3], fu[2])  # 00000013_033 given first: swapped to suffix order
    assert (d.image_a, d.image_b) == ("00000013_009.png", "00000013_033.png") and d.patient == 13
    # a portable AP film against a PA one: registration may not converge, but says so
    assert -1 <= d.registration.ecc <= 1 and isinstance(d.registration.converged, bool)
    meta = write_diff_dir(tmp_path / "d", d)
    assert read_diff(tmp_path / "d")["ssim_mean"] == meta["ssim_mean"]
    for f in ("a.png", "b_registered.png", "ssim_map.png", "intensity_diff.png"):
        assert cv2.imread(str(tmp_path / "d" / f)) is not None
    # every series of the folder runs and reports its quality
    for a, b in ((fu[0], fu[1]), (fu[4], fu[5]), (fu[5], fu[6])):
        r = diff_pair(a, b)
        assert r.registration.converged and r.registration.ecc > 0.8, (a.name, b.name, r.registration)
        assert 0 <= r.ssim_mean <= 1


@pytest.mark.parametrize("dx,dy,angle", [(6.0, -4.0, 0.0), (3.0, 2.0, 2.0), (-5.0, 0.0, -1.5)])
def test_registration_recovers_known_transform(sample_images, dx, dy, angle):
    a = preprocess(sample_images[10], 256, equalization="none")
    b, M = _warp(a, dx, dy, angle)
    reg = register(a, b, "affine")
    # reg maps a-coordinates to b-coordinates, like M
    pts = np.array([[64, 64, 1], [192, 64, 1], [128, 200, 1]], float)
    err = np.abs(pts @ reg.matrix.T - pts @ M.T).max()
    assert err < 1.0, (err, reg.matrix, M)
    # cv2.getRotationMatrix2D(angle) maps a to b with M[1, 0] = -sin(angle): the recovered matrix, which maps
    # a-coordinates to b-coordinates, must carry the same sign (a mirrored estimate would show +angle)
    rot = math.degrees(math.atan2(reg.matrix[1, 0], reg.matrix[0, 0]))
    assert math.degrees(math.atan2(M[1, 0], M[0, 0])) == pytest.approx(-angle)
    assert abs(rot - (-angle)) < 0.3, (rot, angle)


def test_difference_finds_pasted_opacity_despite_exposure_change(sample_images):
    a = preprocess(sample_images[20], 256, equalization="none")
    b, _ = _warp(a, 4.0, -3.0, 1.0)
    b = np.clip(b.astype(np.float32) * 0.85 + 20, 0, 255).astype(np.uint8)  # exposure change
    cv2.circle(b, (150, 110), 14, 255, -1)  # a new opacity (in b's frame)
    d = diff_pair(a, b)
    # where the opacity lands in a's frame
    inv = cv2.invertAffineTransform(d.registration.matrix)
    cx, cy = inv @ np.array([150, 110, 1.0])
    dis = (1 - d.ssim_map) * d.valid
    yy, xx = np.unravel_index(np.argmax(cv2.GaussianBlur(dis, (0, 0), 3)), dis.shape)
    assert math.hypot(xx - cx, yy - cy) < 14
    yy, xx = np.unravel_index(np.argmax(cv2.GaussianBlur(d.intensity_diff, (0, 0), 3)), dis.shape)
    assert math.hypot(xx - cx, yy - cy) < 14
    # away from it, the exposure change is cancelled by histogram matching
    ring = np.ones_like(dis, bool)
    cv2.circle(ring.view(np.uint8), (int(cx), int(cy)), 40, 0, -1)
    assert np.abs(d.intensity_diff[ring & (d.valid > 0)]).mean() < 12


def test_heatmap_and_score_changes(sample_images, tmp_path):
    a = preprocess(sample_images[30], 128, equalization="none")
    b = a.copy()
    cv2.circle(b, (60, 60), 10, 255, -1)

    def heat(img):
        return np.stack([img.astype(np.float32) * (k + 1) for k in range(14)])

    def score(img):
        return np.full(14, img.astype(float).mean())

    d = diff_pair(a, b, size=128, heatmap_fn=heat, score_fn=score)
    assert d.heat_diff.shape == (14, 128, 128) and d.heat_diff[:, 60, 60].min() > 0
    meta = write_diff_dir(tmp_path / "d", d)
    assert meta["score_changes"]["Atelectasis"]["delta"] > 0
    assert meta["heatmap_labels"][0] == "Hernia"  # the largest change (largest factor)
    assert (tmp_path / "d" / "heatmap_diff_Hernia.png").exists()


def test_bad_pairs(sample_dir, sample_images, tmp_path):
    with pytest.raises(PairError, match="different patients"):
        diff_pair(sample_images[0], sample_images[1])
    d = diff_pair(sample_images[0], sample_images[1], allow_different_patients=True)
    assert d.patient is None
    fu = sorted((sample_dir / "followups").glob("*.png"))
    big = tmp_path / "00000011_007.png"
    cv2.imwrite(str(big), cv2.resize(cv2.imread(str(fu[1]), 0), (300, 300)))
    with pytest.raises(PairError, match="256x256.*300x300|300x300.*256x256"):
        diff_pair(fu[0], big, size=None)
    assert diff_pair(fu[0], big, size=None, allow_resize=True).a.shape == (256, 256)
    broken = tmp_path / "00000011_009.png"
    broken.write_bytes(b"")
    with pytest.raises(ImageReadError, match="00000011_009.png: empty file"):
        diff_pair(fu[0], broken)


def test_pyramid_ecc_recovers_a_large_shift_from_the_identity(sample_images):
    from phow_baseline.followup.registration import _ecc_pyramid

    a = preprocess(sample_images[40], 256, equalization="none")
    b, M = _warp(a, 28.0, -18.0, 2.5)
    W, ecc, ok = _ecc_pyramid(
        a.astype(np.float32), b.astype(np.float32), np.eye(2, 3, dtype=np.float32), cv2.MOTION_AFFINE, 200, 1e-6
    )
    pts = np.array([[64, 64, 1], [192, 64, 1], [128, 200, 1]], float)
    assert ok and ecc > 0.99 and np.abs(pts @ W.T - pts @ M.T).max() < 1.0, (W, M)


def test_metadata_followup_is_reported_not_used(sample_dir, tmp_path):
    from phow_baseline.data.chestxray14 import read_metadata

    md = read_metadata(sample_dir / "Data_Entry_2017_v2020.csv.gz")
    fu = sorted((sample_dir / "followups").glob("*.png"))
    d = diff_pair(fu[2], fu[3], metadata=md)  # 00000013_009 (Follow-up # 34), 00000013_033 (11)
    assert d.image_a == "00000013_009.png" and d.metadata_followup == {"a": 34, "b": 11}
    assert any("other way" in n for n in d.notes)
    meta = write_diff_dir(tmp_path / "d", d)
    assert meta["metadata_followup"] == {"a": 34, "b": 11} and "suffix" in meta["order_rule"]


def _shift(img, dx, dy):
    """``img`` moved by (dx, dy) pixels; the uncovered strip is black (a real film ends there)."""
    M = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, M, img.shape[::-1], flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)


def test_known_translation_reports_no_change_outside_the_overlap(sample_images, tmp_path):
    from phow_baseline.followup import NO_DATA_GREYS, SSIM_WINDOW

    big = preprocess(sample_images[50], 300, equalization="none")
    dx, dy = 14, -9
    # two crops of one film, moved by (dx, dy): the same anatomy, nothing changed; b(x + dx, y + dy) = a(x, y)
    a = big[20:276, 20:276]
    b = big[20 - dy : 276 - dy, 20 - dx : 276 - dx]

    def heat(img):
        return np.stack([img.astype(np.float32) / 255 * (k + 1) for k in range(14)])

    d = diff_pair(
        a,
        b,
        motion="translation",
        heatmap_fn=heat,
        score_fn=lambda img: np.full(14, img.mean() / 255),
        score_kind="probability",
    )
    assert d.registration.converged and d.quality["level"] == "good"
    np.testing.assert_allclose(d.registration.matrix, [[1, 0, dx], [0, 1, dy]], atol=0.05)
    # the strip of a that b does not cover: x >= 256 - 14 and y < 9
    strip = np.zeros(a.shape, bool)
    strip[:, 256 - dx :] = True
    strip[:-dy, :] = True
    assert not (d.valid[strip] > 0).any() and (d.valid > 0).mean() > 0.85
    # zero change reported there, in every map
    assert (d.intensity_diff[strip] == 0).all() and (d.ssim_map[strip] == 1).all()
    assert (d.heat_diff[:, strip] == 0).all()
    # and no line along the overlap's edge: inside the overlap the shifted copy is the same image
    # (before the fix, SSIM windows straddling the edge compared anatomy with the black fill: up to 0.3 there)
    assert ((1 - d.ssim_map[d.valid > 0]) / 2).max() < 0.02
    assert (d.ssim_valid > 0).sum() >= (256 - dx - SSIM_WINDOW) * (256 + dy - SSIM_WINDOW)
    assert np.abs(d.intensity_diff[d.valid > 0]).max() <= 2
    assert np.abs(d.heat_diff).max() < 0.05
    # the figures draw the strip as hatched "no data", never in a colour of the change scale
    from phow_baseline.followup import overlay_rgb

    rgb = overlay_rgb(d.b_registered, d.intensity_diff + 50 * strip, d.valid, "RdBu_r", -10, 10, signed=True)
    greys = {tuple(g) for g in NO_DATA_GREYS}
    assert {tuple(p) for p in rgb[strip]} == greys
    inside_rgb = rgb[d.valid > 0].astype(int)
    assert (np.abs(inside_rgb - d.b_registered[d.valid > 0][:, None]).max(1) <= 40).mean() > 0.99  # grey: no change
    meta = write_diff_dir(tmp_path / "d", d)
    assert meta["overlap_fraction"] == pytest.approx((d.valid > 0).mean())
    assert meta["score_kind"] == "probability" and meta["registration_quality"]["reliable"] is True
    for f in ("ssim_map.png", "intensity_diff.png", *meta["figures"]["heatmaps"].values()):
        img = cv2.imread(str(tmp_path / "d" / f))
        assert img is not None and img.shape[1] > 300  # framed, with a colour bar beside the image


def test_registration_quality_in_words():
    from phow_baseline.followup import Registration, registration_quality

    M = np.eye(2, 3)
    assert registration_quality(Registration(M, 0.95, False, "affine"))["text"].startswith(
        "not converged: differences are unreliable"
    )
    q = registration_quality(Registration(M, 0.5, True, "affine"))
    assert q["level"] == "poor" and not q["reliable"] and "unreliable" in q["text"]
    assert registration_quality(Registration(M, 0.95, True, "affine"), overlap_fraction=0.4)["level"] == "poor"
    assert registration_quality(Registration(M, 0.85, True, "affine"))["level"] == "fair"
    assert registration_quality(Registration(M, 0.95, True, "affine"))["reliable"]


def test_diff_json_file_names_are_confined(sample_images, tmp_path):

    from phow_baseline.followup import figure_paths
    from phow_baseline.io import DataFileError

    a = preprocess(sample_images[60], 128, equalization="none")
    d = diff_pair(a, _shift(a, 3, 2), size=128)
    meta = write_diff_dir(tmp_path / "d", d)
    paths = figure_paths(tmp_path / "d", read_diff(tmp_path / "d"))
    assert paths["ssim"] == tmp_path / "d" / "ssim_map.png" and paths["heatmaps"] == {}
    for bad in ("/etc/passwd", "../a.png", "x/../../a.png"):
        m = dict(meta, figures=dict(meta["figures"], ssim=bad))
        with pytest.raises(DataFileError, match="leaves the folder"):
            figure_paths(tmp_path / "d", m)
    m = dict(meta, figures=dict(meta["figures"], heatmaps={"Mass": "../../x.png"}))
    with pytest.raises(DataFileError, match="leaves the folder"):
        figure_paths(tmp_path / "d", m)
    m = dict(meta, figures=None, heatmap_labels=["../../../etc/passwd"])
    with pytest.raises(DataFileError, match="leaves the folder"):
        figure_paths(tmp_path / "d", m)
    (tmp_path / "d" / "diff.json").write_text("{oops")
    with pytest.raises(DataFileError, match=r"diff\.json.*not valid JSON"):
        read_diff(tmp_path / "d")


class _ToyModel:
    """A model with the preprocessing contract: equalize at full resolution, then resize (like PhowModel)."""

    image_size = 96
    score_kind = "probability"

    def preprocess(self, image):
        return preprocess(image, 96, equalization="global")

    def heatmaps(self, img):
        return np.stack([cv2.GaussianBlur(img.astype(np.float32), (0, 0), 3) * (k + 1) for k in range(14)])

    def scores(self, img):
        return 1 / (1 + np.exp(-(img.astype(float).mean() / 128 - 1 + np.arange(14) / 14)))


def test_diff_reads_images_through_the_model_preprocessing(sample_dir):
    from phow_baseline.evaluation.localization import upsample

    m = _ToyModel()
    fu = sorted((sample_dir / "followups").glob("00000032_*.png"))
    d = diff_pair(
        fu[0], fu[1], heatmap_fn=m.heatmaps, score_fn=m.scores, preprocess=m.preprocess, score_kind="probability"
    )
    img = m.preprocess(fu[0])  # what localize and predict see
    np.testing.assert_array_equal(d.a, img)
    np.testing.assert_array_equal(d.heat_a, upsample(m.heatmaps(img), img.shape))
    np.testing.assert_array_equal(d.scores_b, m.scores(m.preprocess(fu[1])))
    # resizing first and equalizing after (the old diff path) gives another image: it is not what diff used
    other = preprocess(preprocess(fu[0], 96, equalization="none"), None, equalization="global")
    assert (other != d.a).mean() > 0.2


@pytest.mark.slow
def test_cli_diff_heatmap_equals_localize_heatmap(sample_run, sample_dir, tmp_path):
    from click.testing import CliRunner

    from phow_baseline.cli import main as cli
    from phow_baseline.evaluation.localization import upsample
    from phow_baseline.model.directory import load_model

    out, _ = sample_run
    model = load_model(out / "model")
    fu = sorted((sample_dir / "followups").glob("00000032_*.png"))
    d = diff_pair(fu[0], fu[1], heatmap_fn=model.heatmaps, score_fn=model.scores, preprocess=model.preprocess)
    img = model.preprocess(fu[0])
    np.testing.assert_array_equal(d.heat_a, upsample(model.heatmaps(img), img.shape))
    res = CliRunner().invoke(
        cli, ["diff", str(fu[0]), str(fu[1]), "--model", str(out / "model"), "--out", str(tmp_path / "d")]
    )
    assert res.exit_code == 0, res.output
    meta = read_diff(tmp_path / "d")
    assert meta["score_kind"] == "probability"
    sc = meta["score_changes"]["Effusion"]
    assert sc["a"] == pytest.approx(float(model.scores(img)[2]), rel=1e-6) and 0 <= sc["b"] <= 1
