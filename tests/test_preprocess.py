"""Reading, equalizing, resizing, and the on-disk image cache."""

import json
import shutil

import cv2
import numpy as np
import pytest

from phow_baseline.data import ImageCache, ImageReadError, equalize, read_xray, resize, to_gray_uint8
from phow_baseline.data.preprocess import preprocess


def test_read_real_png(sample_images):
    img = read_xray(sample_images[0])
    assert img.dtype == np.uint8 and img.shape == (512, 512)


def test_read_16bit_rgb_rgba(sample_images, tmp_path):
    grey = read_xray(sample_images[1])
    p16 = tmp_path / "a16.png"
    cv2.imwrite(str(p16), grey.astype(np.uint16) * 257)
    assert cv2.imread(str(p16), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    np.testing.assert_array_equal(
        read_xray(p16), np.rint((grey.astype(float) - grey.min()) * 255 / (grey.max() - grey.min())).astype(np.uint8)
    )
    prgb, prgba = tmp_path / "rgb.png", tmp_path / "rgba.png"
    cv2.imwrite(str(prgb), np.dstack([grey] * 3))
    cv2.imwrite(str(prgba), np.dstack([grey] * 3 + [np.full_like(grey, 255)]))
    np.testing.assert_array_equal(read_xray(prgb), grey)
    np.testing.assert_array_equal(read_xray(prgba), grey)


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "empty file"),
        (b"this is a text file, not a picture", "not a readable image"),
    ],
)
def test_bad_files(tmp_path, content, reason):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as ei:
        read_xray(p)
    assert str(p) in str(ei.value)


def test_truncated_png(sample_images, tmp_path):
    data = sample_images[0].read_bytes()
    p = tmp_path / "trunc.png"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match=r"trunc\.png: corrupt or truncated PNG"):
        read_xray(p)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_xray(tmp_path / "nope.png")


def test_equalize_and_resize(sample_images):
    img = read_xray(sample_images[2])
    eq = equalize(img)
    hist = np.bincount(eq.ravel(), minlength=256)
    # equalized: cumulative histogram close to the identity ramp
    cdf = np.cumsum(hist) / hist.sum()
    assert np.abs(cdf[np.flatnonzero(hist)] - (np.flatnonzero(hist) + 1) / 256).max() < 0.05
    assert equalize(img, "clahe").shape == img.shape
    assert equalize(img, "none") is img
    with pytest.raises(ValueError, match="unknown equalization"):
        equalize(img, "fancy")
    small = resize(eq, 256)
    assert small.shape == (256, 256)
    np.testing.assert_allclose(small.astype(float), eq.reshape(256, 2, 256, 2).mean((1, 3)), atol=1)
    out = preprocess(sample_images[2], size=128)
    assert out.shape == (128, 128) and out.dtype == np.uint8


def test_float_image_rejected():
    with pytest.raises(ImageReadError, match="floating-point"):
        to_gray_uint8(np.zeros((4, 4), np.float32))


def test_image_cache_build_resume_and_failures(sample_images, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    paths = []
    for p in sample_images[:10]:
        shutil.copy(p, src / p.name)
        paths.append(src / p.name)
    (src / "broken.png").write_bytes(b"")
    paths.insert(4, src / "broken.png")
    cache_dir = tmp_path / "cache"
    c = ImageCache.build(cache_dir, paths, size=64, n_jobs=2, shard_size=4, progress=False)
    assert len(c) == 11 and c.ok.sum() == 10
    assert [f.name for f in c.failures] == ["broken.png"] and "empty file" in c.failures[0].reason
    np.testing.assert_array_equal(c[0], preprocess(paths[0], size=64))
    np.testing.assert_array_equal(c.get(paths[7].name), preprocess(paths[7], size=64))
    assert c.take([0, 1]).shape == (2, 64, 64)
    # interrupt: drop one shard; the rebuild redoes only that one
    shard1 = cache_dir / "shard_00001.npy"
    before = {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("shard_*.npy")}
    shard1.unlink()
    c2 = ImageCache.build(cache_dir, paths, size=64, n_jobs=1, shard_size=4, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("shard_*.npy")}
    assert after["shard_00000.npy"] == before["shard_00000.npy"]
    assert after["shard_00001.npy"] != before["shard_00001.npy"]
    np.testing.assert_array_equal(c2.take(range(11)), c.take(range(11)))
    # other parameters in the same folder is an error, not a silent mix
    with pytest.raises(ValueError, match="other parameters"):
        ImageCache.build(cache_dir, paths, size=32, progress=False)
    assert json.loads((cache_dir / "index.json").read_text())["failures"][0]["name"] == "broken.png"


def test_open_incomplete_cache(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete image cache"):
        ImageCache.open(tmp_path)


# --------------------------------------------------------------------------
# Bad input never escapes as anything but that file's ImageReadError
# --------------------------------------------------------------------------


def _png_with_size(data: bytes, w: int, h: int) -> bytes:
    """The PNG ``data`` with its IHDR width and height replaced and the CRC fixed."""
    import struct
    import zlib

    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", w, h)
    return data[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + data[33:]


@pytest.mark.parametrize("w,h", [(40000, 40000), (16385, 16), (16, 16385), (9000, 9000)])
def test_absurd_png_header_refused_before_decoding(sample_images, tmp_path, w, h):
    p = tmp_path / "huge.png"
    p.write_bytes(_png_with_size(sample_images[0].read_bytes(), w, h))
    with pytest.raises(ImageReadError, match=rf"huge\.png: PNG header claims {w} x {h} pixels, above the limit"):
        read_xray(p)


def test_zero_size_and_bad_crc_png(sample_images, tmp_path):
    data = sample_images[0].read_bytes()
    p = tmp_path / "zero.png"
    p.write_bytes(_png_with_size(data, 0, 512))
    with pytest.raises(ImageReadError, match="empty image"):
        read_xray(p)
    bad = bytearray(data)
    bad[17] ^= 0x40  # width changed, CRC left as it was
    p.write_bytes(bytes(bad))
    with pytest.raises(ImageReadError, match="IHDR CRC mismatch"):
        read_xray(p)


def test_header_size_reads_every_format(tmp_path):
    from phow_baseline.data.imread import header_size

    img = np.random.default_rng(0).integers(0, 255, (37, 53), dtype=np.uint8)  # not square: w and h not swapped
    for ext, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".tif", "TIFF"), (".bmp", "BMP")):
        ok, buf = cv2.imencode(ext, img)
        assert ok
        assert header_size(buf) == (fmt, 53, 37), ext
        np.testing.assert_array_equal(read_xray(_write(tmp_path / f"x{ext}", buf.tobytes())).shape, (37, 53))
    assert header_size(b"GIF89a" + bytes(20)) is None


def _write(p, data):
    p.write_bytes(data)
    return p


def test_absurd_jpeg_header_refused(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.zeros((20, 30), np.uint8))
    b = bytearray(buf.tobytes())
    i = next(i for i in range(len(b) - 1) if b[i] == 0xFF and b[i + 1] == 0xC0)  # baseline frame header
    b[i + 5 : i + 9] = (60000).to_bytes(2, "big") + (50000).to_bytes(2, "big")
    p = _write(tmp_path / "big.jpg", bytes(b))
    with pytest.raises(ImageReadError, match="JPEG header claims 50000 x 60000 pixels"):
        read_xray(p)


def test_decoder_exceptions_become_image_read_errors(sample_images, tmp_path, monkeypatch):
    """Whatever the decoder raises (OpenCV's assertions, MemoryError) is that file's ImageReadError."""
    import phow_baseline.data.imread as imread

    def boom(exc):
        def f(*a, **k):
            raise exc

        return f

    p = sample_images[0]
    monkeypatch.setattr(imread.cv2, "imdecode", boom(cv2.error("validateInputImageSize failed")))
    with pytest.raises(ImageReadError, match=rf"{p.name}: decoder error: validateInputImageSize"):
        read_xray(p)
    monkeypatch.setattr(imread.cv2, "imdecode", boom(MemoryError()))
    with pytest.raises(ImageReadError, match="out of memory while decoding"):
        read_xray(p)


def test_directory_and_too_large_file(tmp_path, monkeypatch):
    import phow_baseline.data.imread as imread

    with pytest.raises(ImageReadError, match="not a regular file"):
        read_xray(tmp_path)
    p = _write(tmp_path / "big.png", bytes(1000))
    monkeypatch.setattr(imread, "MAX_FILE_BYTES", 999)
    with pytest.raises(ImageReadError, match="1000 bytes is above the limit"):
        read_xray(p)


def test_image_cache_lists_absurd_header_and_keeps_the_others(sample_images, tmp_path):
    paths = list(sample_images[:3])
    huge = _write(tmp_path / "huge.png", _png_with_size(sample_images[3].read_bytes(), 40000, 40000))
    paths.insert(1, huge)
    c = ImageCache.build(tmp_path / "cache", paths, size=32, n_jobs=1, shard_size=2, progress=False)
    assert c.ok.tolist() == [True, False, True, True]
    assert [f.name for f in c.failures] == ["huge.png"] and "40000 x 40000" in c.failures[0].reason
    np.testing.assert_array_equal(c[2], preprocess(paths[2], size=32))
