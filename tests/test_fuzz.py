"""Bad input never costs the other files: a few hundred mutated images through read_xray, the image cache and
``phow-baseline predict``.

The corpus is made in tmp_path from real sample images: truncations, flipped bytes in IHDR (CRC left wrong or
fixed) and in IDAT, huge and zero dimensions with a valid CRC, wrong chunk CRCs, and other formats renamed
``.png`` (JPEG, with a huge frame header or truncated; TIFF, BMP, GIF, text, empty, random bytes).  Every file
must be either read (scored) or listed with a reason naming it; nothing may escape as another exception or a
traceback; and the memory used while reading stays bounded.
"""

import csv
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from phow_baseline.data import ImageCache, ImageReadError, read_xray

#: Peak memory (RSS) a fresh process may add while reading the whole corpus, in MiB.  Reading one real
#: 512 x 512 PNG needs ~1 MiB; a decoder that believed a header of 40000 x 40000 pixels would need >= 1.5 GiB.
MAX_RSS_GROWTH_MIB = 200


def _chunks(data: bytes):
    """``(offset, type, length)`` of each PNG chunk."""
    i, out = 8, []
    while i + 8 <= len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        out.append((i, data[i + 4 : i + 8], n))
        i += 12 + n
    return out


def _fix_crc(data: bytearray, off: int, n: int):
    data[off + 8 + n : off + 12 + n] = struct.pack(">I", zlib.crc32(bytes(data[off + 4 : off + 8 + n])))


def _with_ihdr(data: bytes, w=None, h=None, depth=None, colour=None) -> bytes:
    b = bytearray(data)
    if w is not None:
        b[16:20] = struct.pack(">I", w)
    if h is not None:
        b[20:24] = struct.pack(">I", h)
    if depth is not None:
        b[24] = depth
    if colour is not None:
        b[25] = colour
    _fix_crc(b, 8, 13)
    return bytes(b)


def make_corpus(sources, out: Path, seed=0) -> dict[str, bytes]:
    """About 300 mutated files (name -> bytes) from the real PNGs ``sources``; also writes them to ``out``."""
    rng = np.random.default_rng(seed)
    files = {}
    for k, src in enumerate(sources):
        data = src.read_bytes()
        chunks = _chunks(data)
        idat = [c for c in chunks if c[1] == b"IDAT"]
        files[f"{k}_original.png"] = data
        # truncations, anywhere (inside the signature, the header, the data, the end chunk)
        for j, n in enumerate(sorted(rng.integers(1, len(data), 40).tolist()) + [7, 8, 20, 33, len(data) - 12]):
            files[f"{k}_trunc_{j}.png"] = data[:n]
        # IHDR bytes flipped, CRC left as it was
        for j in range(15):
            b = bytearray(data)
            b[int(rng.integers(16, 29))] ^= int(rng.integers(1, 256))
            files[f"{k}_ihdr_flip_{j}.png"] = bytes(b)
        # IHDR fields changed with the CRC fixed: huge, zero, odd depths and colour types
        for w, h in [
            (40000, 40000),
            (16385, 16),
            (16, 16385),
            (9000, 9000),
            (0, 512),
            (512, 0),
            (2**31 - 1, 2**31 - 1),
            (1, 1),
            (513, 512),
            (4096, 4096),
        ]:
            files[f"{k}_size_{w}x{h}.png"] = _with_ihdr(data, w, h)
        for j in range(12):
            files[f"{k}_ihdr_fields_{j}.png"] = _with_ihdr(
                data,
                depth=int(rng.choice([0, 1, 2, 3, 4, 7, 8, 16, 255])),
                colour=int(rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 255])),
            )
        # IDAT bytes flipped (CRC left wrong, and fixed so that zlib sees the damage)
        off, _, n = idat[0]
        for j in range(25):
            b = bytearray(data)
            for _ in range(int(rng.integers(1, 6))):
                b[off + 8 + int(rng.integers(0, n))] ^= int(rng.integers(1, 256))
            files[f"{k}_idat_flip_{j}.png"] = bytes(b)
            _fix_crc(b, off, n)
            files[f"{k}_idat_flip_crcok_{j}.png"] = bytes(b)
        # wrong CRCs only
        for j, (coff, _, cn) in enumerate(chunks[:3]):
            b = bytearray(data)
            b[coff + 8 + cn] ^= 0xFF
            files[f"{k}_crc_{j}.png"] = bytes(b)
        # a chunk length that runs past the end of the file
        b = bytearray(data)
        b[off : off + 4] = struct.pack(">I", 0x7FFFFFF0)
        files[f"{k}_idat_length.png"] = bytes(b)
        # other formats, renamed .png
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)[:200, :300]
        jpg = bytearray(cv2.imencode(".jpg", img)[1].tobytes())
        files[f"{k}_jpeg.png"] = bytes(jpg)
        files[f"{k}_jpeg_trunc.png"] = bytes(jpg[: len(jpg) // 2])
        sof = next(i for i in range(len(jpg) - 1) if jpg[i] == 0xFF and jpg[i + 1] == 0xC0)
        big = bytearray(jpg)
        big[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
        files[f"{k}_jpeg_huge.png"] = bytes(big)
        for ext in (".tif", ".bmp"):
            files[f"{k}_as{ext[1:]}.png"] = cv2.imencode(ext, img)[1].tobytes()
        bmp = bytearray(files[f"{k}_asbmp.png"])
        bmp[18:26] = struct.pack("<ii", 50000, -50000)
        files[f"{k}_bmp_huge.png"] = bytes(bmp)
        files[f"{k}_png16.png"] = cv2.imencode(".png", img.astype(np.uint16) * 257)[1].tobytes()
        files[f"{k}_rgb.png"] = cv2.imencode(".png", np.dstack([img] * 3))[1].tobytes()
    files["gif.png"] = b"GIF89a" + bytes(rng.integers(0, 256, 200, dtype=np.uint8))
    files["text.png"] = b"this is not a picture\n" * 10
    files["empty.png"] = b""
    files["signature_only.png"] = data[:8]
    files["random.png"] = bytes(rng.integers(0, 256, 5000, dtype=np.uint8))
    files["png_magic_random.png"] = data[:8] + bytes(rng.integers(0, 256, 5000, dtype=np.uint8))
    out.mkdir(parents=True, exist_ok=True)
    for name, b in files.items():
        (out / name).write_bytes(b)
    return files


@pytest.fixture(scope="module")
def corpus(sample_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz") / "images"
    files = make_corpus(sample_images[:3], out)
    assert len(files) >= 250
    return out, sorted(files)


def _read_all(folder: Path, names):
    ok, failed = {}, {}
    for n in names:
        p = folder / n
        try:
            img = read_xray(p)
        except ImageReadError as exc:  # anything else escapes and fails the test
            assert str(p) in str(exc) and exc.reason, n
            failed[n] = exc.reason
            continue
        assert img.dtype == np.uint8 and img.ndim == 2 and img.size > 0, n
        ok[n] = img
    return ok, failed


def test_read_xray_reads_or_names_each_file(corpus):
    folder, names = corpus
    ok, failed = _read_all(folder, names)
    assert len(ok) + len(failed) == len(names)
    for k in range(3):  # what must be read is read
        for kind in ("original", "jpeg", "astif", "asbmp", "png16", "rgb"):
            assert f"{k}_{kind}.png" in ok, (kind, failed.get(f"{k}_{kind}.png"))
        for kind in ("size_40000x40000", "size_9000x9000", "size_2147483647x2147483647", "jpeg_huge", "bmp_huge"):
            assert "header claims" in failed[f"{k}_{kind}.png"], kind
        assert "empty image" in failed[f"{k}_size_0x512.png"]
    assert failed["empty.png"].startswith("empty file")
    # the corpus exercises the failure paths broadly: many distinct reasons
    assert len(failed) > len(names) // 2 and len({r.split("(")[0] for r in failed.values()}) >= 5


def test_image_cache_lists_every_bad_file(corpus, tmp_path):
    folder, names = corpus
    ok, failed = _read_all(folder, names)
    cache = ImageCache.build(
        tmp_path / "cache", [folder / n for n in names], size=32, n_jobs=2, shard_size=64, progress=False
    )
    assert len(cache) == len(names)
    assert {f.name: f.reason for f in cache.failures} == failed
    assert [n for n, k in zip(cache.names, cache.ok) if k] == sorted(ok)


def test_memory_stays_bounded(corpus):
    """Reading the corpus in a fresh process adds little to its peak memory (huge headers are refused before
    anything is allocated for them)."""
    folder, _ = corpus
    script = textwrap.dedent(f"""
        import resource
        from pathlib import Path
        from phow_baseline.data import ImageCache, ImageReadError, read_xray
        import tempfile
        paths = sorted(Path({str(folder)!r}).glob("*.png"))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for p in paths:
            try:
                read_xray(p)
            except ImageReadError:
                pass
        with tempfile.TemporaryDirectory() as d:
            ImageCache.build(d, paths, size=32, n_jobs=1, shard_size=64, progress=False)
        print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    base, peak = (int(v) for v in r.stdout.split())
    assert (peak - base) / 1024 < MAX_RSS_GROWTH_MIB, f"peak RSS grew by {(peak - base) / 1024:.0f} MiB"


@pytest.fixture(scope="module")
def tiny_model(sample_dir, tmp_path_factory):
    """A PHOW model trained in seconds: 40 train_val sample images at 64 px, 16 words."""
    import warnings

    from phow_baseline.config import BaselineConfig
    from phow_baseline.workflow.steps import run_baseline

    root = tmp_path_factory.mktemp("fuzz_data")
    for f in ("Data_Entry_2017_v2020.csv.gz", "BBox_List_2017.csv.gz", "train_val_list.txt", "test_list.txt"):
        (root / f).symlink_to(sample_dir / f)
    (root / "images").mkdir()
    present = {p.name for p in (sample_dir / "images").glob("*.png")}
    for split, n in (("train_val_list.txt", 40), ("test_list.txt", 8)):
        for name in [x for x in (sample_dir / split).read_text().split() if x in present][:n]:
            (root / "images" / name).symlink_to(sample_dir / "images" / name)
    out = tmp_path_factory.mktemp("fuzz_model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_baseline(
            root,
            out,
            BaselineConfig.from_preset("vlfeat", size=64, n_words=16, max_descriptors=3000, vocab_images=20, n_jobs=1),
            progress=False,
            n_bootstrap=0,
        )
    return out / "model"


def test_predict_scores_or_lists_every_file(corpus, tiny_model, tmp_path):
    from click.testing import CliRunner

    from phow_baseline.cli import main

    folder, names = corpus
    ok, failed = _read_all(folder, names)
    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(main, ["predict", str(tiny_model), str(folder), "--out-csv", str(out), "--quiet"])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    with open(out, newline="") as fh:
        scored = [r["Image Index"] for r in csv.DictReader(fh)]
    with open(out.with_name(out.stem + ".failures.csv"), newline="") as fh:
        listed = {Path(r[0]).name: r[1] for r in list(csv.reader(fh))[1:]}
    assert sorted(scored) == sorted(ok)  # every readable file scored
    assert listed == failed  # every other file listed, with its reason
    assert f"scored {len(ok)} image(s), {len(failed)} failure(s)" in res.output


def test_localization_skips_and_lists_unreadable_images(sample_images, tmp_path):
    """localize-eval's evaluation goes on past an unreadable boxed image and lists it."""
    import pandas as pd

    from phow_baseline.evaluation.localization import evaluate_localization

    good = sample_images[0]
    bad = tmp_path / "huge.png"
    bad.write_bytes(make_corpus([good], tmp_path / "c")["0_size_40000x40000.png"])

    class Boxed:
        def boxes(self, size):
            return pd.DataFrame(
                {
                    "Image Index": [good.name, "huge.png", "huge.png"],
                    "label": ["Cardiomegaly", "Mass", "Nodule"],
                    "x": [10.0, 5.0, 7.0],
                    "y": [10.0, 5.0, 7.0],
                    "w": [20.0, 9.0, 9.0],
                    "h": [20.0, 9.0, 9.0],
                }
            )

        def image_path(self, name):
            return good if name == good.name else bad

    heat = np.zeros((14, 8, 8))
    heat[:, 1:4, 1:4] = 1
    res, _ = evaluate_localization(lambda img: heat, Boxed(), image_size=64, progress=False)
    assert res["failures"] == [{"file": str(bad), "reason": res["failures"][0]["reason"], "boxes": 2}]
    assert "40000 x 40000" in res["failures"][0]["reason"]
    assert res["n_images"] == {"Cardiomegaly": 1}  # the unreadable image's boxes are not scored
