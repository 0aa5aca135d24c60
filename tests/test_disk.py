"""workflow/disk.py: a run (and the demo) refuses at once when the disk cannot hold it; a disk that fills up
anyway stops the run with one line, and the rerun after freeing space resumes."""

import os
import shutil
import subprocess
import sys
from collections import namedtuple

import numpy as np
import pytest
from click.testing import CliRunner

import phow_baseline.io as pio
from phow_baseline.cli import main as cli
from phow_baseline.config import BaselineConfig
from phow_baseline.io import OutOfSpaceError
from phow_baseline.workflow import disk
from phow_baseline.workflow.disk import (
    check_demo_space,
    check_run_space,
    encoding_dimension,
    estimate_run_bytes,
    run_disk_estimate,
)

GiB = 2**30
MiB = 2**20


@pytest.fixture
def free_space(monkeypatch):
    """``free_space(n)``: the file systems report ``n`` bytes free (statvfs faked for the library)."""

    def set_free(n):
        monkeypatch.setattr(pio.shutil, "disk_usage", lambda path: namedtuple("u", "total used free")(n, 0, n))

    return set_free


@pytest.mark.parametrize("encoding", ["bow", "fisher", "vlad"])
def test_the_dimension_is_the_fitted_encoders(encoding):
    """The estimate's per-image vector length equals what the fitted encoder writes to the store."""
    from phow_baseline.encoding.registry import encoding_for

    config = BaselineConfig(
        encoding=encoding,
        n_words=6,
        grids=(1, 2),
        fv_components=3,
        fv_pca_dims=8,
        vlad_words=4,
        vlad_pca_dims=0,
        max_descriptors=400,
        size=64,
        regions="1x1+2x2",
    )
    X = np.random.default_rng(0).random((400, 128)).astype(np.float32)
    enc = encoding_for(config)
    fitted = enc.fit(config, X)
    assert (
        encoding_dimension(config)
        == enc.make_encoder(fitted, config).n_features_out_
        == {"bow": 6 * 5, "fisher": 5 * 2 * 3 * 8, "vlad": 5 * 4 * 128}[encoding]
    )


def test_the_full_dataset_needs_what_the_readme_says():
    """README.md, "The full dataset": about 12.9 GB for the 256 px bag-of-words run (image cache 7.3 GB,
    features 5.1 GB), Fisher vectors 400 KiB per image in the default float16 (46 GB of features)."""
    parts = run_disk_estimate(86_524, 25_596, BaselineConfig.from_preset("vlfeat"))
    assert 7.2e9 < parts["image cache"] < 7.5e9 and 5.0e9 < parts["features"] < 5.6e9
    assert 11.5e9 < estimate_run_bytes(86_524, 25_596, BaselineConfig.from_preset("vlfeat")) < 13.5e9
    # SDCA (auto): the final SVMs' and the 5 folds' checkpoints, 18 bytes per row and label plus the weights,
    # in one file rewritten after each epoch (the old and the new one for a moment)
    per_row = 14 * disk.SDCA_BYTES_PER_ROW_LABEL
    assert 2 * 5 * 86_524 * per_row < parts["checkpoints"] < 2 * (6 * 86_524 * per_row + 6 * 8e6)
    assert parts["model"] < 10e6
    sgd = run_disk_estimate(86_524, 25_596, BaselineConfig.from_preset("vlfeat", solver="sgd"))
    assert 2 * 2 * 8 * 14 * 36_000 < sgd["checkpoints"] < 20e6  # the SVMs' and the calibration's, weights only
    fisher = run_disk_estimate(86_524, 25_596, BaselineConfig())  # the default: float16 shards
    assert 45e9 < fisher["features"] < 47e9
    assert 90e9 < run_disk_estimate(86_524, 25_596, BaselineConfig(feature_dtype="float32"))["features"] < 95e9
    small = run_disk_estimate(300, 100, BaselineConfig.from_preset("vlfeat", size=128, solver="liblinear"))
    assert small["checkpoints"] == 0  # liblinear in memory: nothing to keep
    assert small["image cache"] == 400 * (128 * 128 + disk.INDEX_BYTES_PER_IMAGE)


def test_a_run_that_cannot_fit_is_refused_with_both_numbers(tmp_path, free_space):
    out = tmp_path / "out"
    need = estimate_run_bytes(1000, 200, BaselineConfig.from_preset("vlfeat"))
    free_space(need - 1)
    with pytest.raises(OutOfSpaceError) as info:
        check_run_space(out, 1000, 200, BaselineConfig.from_preset("vlfeat"))
    msg = str(info.value)
    assert msg.startswith(f"{out}: no space left on device for the run (about ")
    assert f"{pio.format_bytes(need)} needed, {pio.format_bytes(need - 1)} free; image cache " in msg
    assert "\n" not in msg and info.value.needed == need and info.value.free == need - 1
    free_space(need)
    assert check_run_space(out, 1000, 200, BaselineConfig.from_preset("vlfeat"))["image cache"] > 0


def test_what_a_resumed_run_already_wrote_is_not_counted_twice(tmp_path, free_space):
    out = tmp_path / "out"
    need = estimate_run_bytes(100, 20, BaselineConfig.from_preset("vlfeat", size=64))
    (out / "work").mkdir(parents=True)
    (out / "work" / "shard_00000.npy").write_bytes(b"\0" * (need // 2))
    (out / "elsewhere.bin").write_bytes(b"\0" * need)  # not the run's: not subtracted
    free_space(need // 2 + 1000)
    check_run_space(out, 100, 20, BaselineConfig.from_preset("vlfeat", size=64))  # half is there: the other half fits
    free_space(need // 2 - 1000)
    with pytest.raises(OutOfSpaceError, match="already there"):
        check_run_space(out, 100, 20, BaselineConfig.from_preset("vlfeat", size=64))


def test_the_demo_counts_the_phantom_until_it_is_there(tmp_path, free_space):
    config = BaselineConfig.from_preset("vlfeat", n_words=200)
    free_space(10**12)
    with_phantom = check_demo_space(tmp_path, 400, config)
    (tmp_path / "phantom").mkdir()
    (tmp_path / "phantom" / "phantom_truth.json").write_text("{}")
    without = check_demo_space(tmp_path, 400, config)
    # 412 images of 256 px PNG at 0.75 bytes per pixel
    assert with_phantom - without == disk.estimate_phantom_bytes(412, 256) > 412 * 0.6 * 256**2
    free_space(without - 1)
    with pytest.raises(OutOfSpaceError, match=r"no space left on device for the demo \(about .* needed, .* free"):
        check_demo_space(tmp_path, 400, config)


@pytest.mark.filterwarnings("ignore::phow_baseline.data.chestxray14.MissingImagesWarning")  # a sample
def test_run_baseline_refuses_before_any_work(sample_dir, tmp_path, free_space):
    from phow_baseline.workflow.steps import run_baseline

    free_space(5 * MiB)  # the sample's 481 images alone take 30 MiB in the image cache
    with pytest.raises(OutOfSpaceError, match=r"for the run \(about .* needed, 5\.0 MiB free; image cache "):
        run_baseline(
            sample_dir, tmp_path / "out", BaselineConfig.from_preset("vlfeat", n_words=8, size=256), progress=False
        )
    assert not any(p.name.startswith(("images-", "features-")) for p in (tmp_path / "out" / "work").iterdir())


def test_the_demo_command_refuses_in_one_line(tmp_path, free_space):
    free_space(5 * MiB)
    res = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "d"), "--patients", "40"])
    assert res.exit_code == 1, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.stderr
    assert errors[0].startswith(f"Error: {tmp_path / 'd'}: no space left on device for the demo (about ")
    assert "5.0 MiB free" in errors[0] and "phantom" in errors[0]
    assert not (tmp_path / "d" / "phantom").exists()


# --------------------------------------------------------------------------
# A real small disk
# --------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB tmpfs, unmounted after (needs Linux and the right to mount: root; skipped otherwise)."""
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("a small tmpfs needs Linux's mount")
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m,mode=0755", "tmpfs", str(d)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"mounting a 6 MiB tmpfs is not permitted here ({r.stderr.strip() or r.returncode})")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def _state(folder):
    """{relative path: (inode, mtime_ns)} of the files under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.mark.slow
def test_a_disk_that_fills_up_stops_the_demo_in_one_line_and_the_rerun_resumes(small_disk, monkeypatch):
    out = small_disk / "demo"
    args = ["demo", "--out", str(out), "--patients", "60", "--n-bootstrap", "20"]
    # the estimate refuses first: nothing but the demo's record written
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and "no space left on device for the demo (about" in res.stderr, res.output
    assert not (out / "phantom").exists()

    # without the estimate the disk fills up mid-run: the phantom fits, the image cache's shard does not
    monkeypatch.setattr(disk, "check_free_space", lambda *args, **kwargs: 0)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.stderr[-3000:]
    assert errors[0].startswith(f"Error: {out}/") and ": no space left on device (" in errors[0], errors[0]
    assert " needed, " in errors[0] and " free)" in errors[0]
    assert not [p for p in small_disk.rglob("*.tmp")], "a partial temporary file was left behind"
    kept = _state(out / "phantom")
    assert len(kept) > 60

    # space freed: the same command resumes, keeping what was written
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
    monkeypatch.undo()
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output[-3000:]
    assert "demo: reusing the caches" in res.stderr
    now = _state(out / "phantom")
    assert {k: now.get(k) for k in kept} == kept  # the phantom was not made again
    assert (out / "report" / "index.html").is_file() and (out / "run" / "metrics.json").is_file()
    modes = {p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert modes == {0o666 & ~_umask()}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_full_disk_while_extracting_is_not_a_corrupt_archive(tmp_path, monkeypatch):
    """The downloader says the disk is full and keeps the (good) archive for the rerun, instead of calling it
    corrupt, deleting it and fetching 4 GB again."""
    import io
    import tarfile

    from phow_baseline.data import download

    archive = tmp_path / "images_001.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("images/00000001_000.png")
        info.size = 1000
        tf.addfile(info, io.BytesIO(b"\0" * 1000))

    def full(src, dst, *args):
        dst.write(b"\0" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(download.shutil, "copyfileobj", full)
    with pytest.raises(OutOfSpaceError, match=r"\.images_001\.extracting: no space left on device \("):
        download.extract_images(archive, tmp_path / "data", 1)
    assert archive.exists() and not (tmp_path / "data" / ".images_001.extracting").exists()
    assert not (tmp_path / "data" / "images_001").exists()
