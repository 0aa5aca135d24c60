"""Follow-up differencing on the real follow-up series and on known transforms of real images."""

import math

import cv2
import numpy as np
import pytest

from phow_baseline.followup import PairError, diff_pair, read_diff, register, write_diff_dir
from phow_baseline.preprocess import ImageReadError, preprocess


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
    rot = math.degrees(math.atan2(reg.matrix[1, 0], reg.matrix[0, 0]))
    assert abs(rot - (-angle)) < 0.5 or abs(rot - angle) < 0.5


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
    heat = lambda img: np.stack([img.astype(np.float32) * (k + 1) for k in range(14)])
    score = lambda img: np.full(14, img.astype(float).mean())
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
    from phow_baseline.followup import _ecc_pyramid

    a = preprocess(sample_images[40], 256, equalization="none")
    b, M = _warp(a, 28.0, -18.0, 2.5)
    W, ecc, ok = _ecc_pyramid(a.astype(np.float32), b.astype(np.float32), np.eye(2, 3, dtype=np.float32),
                              cv2.MOTION_AFFINE, 200, 1e-6)
    pts = np.array([[64, 64, 1], [192, 64, 1], [128, 200, 1]], float)
    assert ok and ecc > 0.99 and np.abs(pts @ W.T - pts @ M.T).max() < 1.0, (W, M)


def test_metadata_followup_is_reported_not_used(sample_dir, tmp_path):
    from phow_baseline.data import read_metadata

    md = read_metadata(sample_dir / "Data_Entry_2017_v2020.csv.gz")
    fu = sorted((sample_dir / "followups").glob("*.png"))
    d = diff_pair(fu[2], fu[3], metadata=md)  # 00000013_009 (Follow-up # 34), 00000013_033 (11)
    assert d.image_a == "00000013_009.png" and d.metadata_followup == {"a": 34, "b": 11}
    assert any("other way" in n for n in d.notes)
    meta = write_diff_dir(tmp_path / "d", d)
    assert meta["metadata_followup"] == {"a": 34, "b": 11} and "suffix" in meta["order_rule"]
