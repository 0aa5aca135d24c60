"""The CLI on a dask cluster, the way a lab runs it: a ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, ``phow-baseline encode DATA --backend dask --scheduler ADDRESS`` (image caches, vocabulary sampling,
feature shards: every parallel step of ``run`` before the SVMs); and the default LocalCluster.

The work must go through the workers (the scheduler's task stream says which worker ran each task of each
parallel step) and give the same caches, vocabulary and features as the loky run.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# dask.distributed (the cluster extra) is a peer: the marker asks tests/conftest.py for it, which skips these
# tests one by one in a bare pytest and fails them under ./run-tests or CI.
pytestmark = [pytest.mark.slow, pytest.mark.cluster]

#: Tiny settings: the point is where the work runs, not the model.
TINY = [
    "--preset",
    "vlfeat",
    "--size",
    "64",
    "--n-words",
    "16",
    "--max-descriptors",
    "3000",
    "--vocab-images",
    "20",
    "--quiet",
]
#: The parallel steps' task functions (joblib names the dask tasks after them); prediction's is _predict_job.
STEP_FUNCTIONS = ("_build_shard", "_vocabulary_samples_job", "_encode_shard_job")


@pytest.fixture(scope="module")
def small_data(sample_dir, tmp_path_factory):
    """A ChestX-ray14 folder of 40 train_val and 12 test sample images (symlinks; the full metadata)."""
    root = tmp_path_factory.mktemp("cxr_small")
    for f in ("Data_Entry_2017_v2020.csv.gz", "BBox_List_2017.csv.gz", "train_val_list.txt", "test_list.txt"):
        (root / f).symlink_to(sample_dir / f)
    (root / "images").mkdir()
    present = {p.name for p in (sample_dir / "images").glob("*.png")}
    for split, n in (("train_val_list.txt", 40), ("test_list.txt", 12)):
        names = [x for x in (sample_dir / split).read_text().split() if x in present][:n]
        for name in names:
            (root / "images" / name).symlink_to(sample_dir / "images" / name)
    return root


def _cli(args, cwd, timeout=420):
    r = subprocess.run(
        [sys.executable, "-m", "phow_baseline.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert r.returncode == 0, f"phow-baseline {' '.join(args)} failed:\n{r.stdout}\n{r.stderr[-4000:]}"
    assert "Traceback" not in r.stderr
    return r


def _arrays(work: Path) -> dict:
    """Every array of the work folder (image cache shards, vocabulary, feature shards) by relative path."""
    out = {}
    for p in sorted(work.rglob("*")):
        if p.suffix == ".npy":
            out[str(p.relative_to(work))] = np.load(p, allow_pickle=False)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                out.update({f"{p.relative_to(work)}:{k}": z[k] for k in z.files})
    return out


def _assert_same_work(a: Path, b: Path):
    A, B = _arrays(a), _arrays(b)
    assert set(A) == set(B)
    for part in ("images-", "vocabulary.npz:", "features-"):  # image cache, vocabulary, feature shards
        assert any(k.startswith(part) for k in A), part
    for k in A:
        np.testing.assert_array_equal(A[k], B[k], err_msg=k)


@pytest.fixture
def lab_cluster(tmp_path, dask_distributed):
    """``dask scheduler`` + two ``dask worker`` processes (1 thread each) on 127.0.0.1, run from another
    working folder than the CLI's (so relative paths would break them); torn down whatever happens."""
    elsewhere = tmp_path / "workers_cwd"
    elsewhere.mkdir()
    sched_file = tmp_path / "scheduler.json"
    procs = []

    def spawn(*args):
        p = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=elsewhere,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs.append(p)
        return p

    try:
        spawn(
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        )
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sched_file.exists(), "the dask scheduler did not start within 60 s"
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for name in ("w1", "w2"):
            spawn(
                "distributed.cli.dask_worker",
                address,
                "--nthreads",
                "1",
                "--no-dashboard",
                "--name",
                name,
                "--local-directory",
                str(elsewhere / name),
                "--host",
                "127.0.0.1",
            )
        with dask_distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
            yield address, client
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def test_cli_run_on_a_dask_scheduler_with_two_workers(small_data, lab_cluster, tmp_path):
    address, client = lab_cluster
    cli_cwd = tmp_path / "cli"
    cli_cwd.mkdir()
    client.get_task_stream()  # start the scheduler's task-stream record now
    t0 = time.time()
    r = _cli(
        [
            "encode",
            str(small_data),
            "--work",
            "dask",
            "--split",
            "test",
            "--backend",
            "dask",
            "--scheduler",
            address,
            "--n-jobs",
            "2",
            *TINY,
        ],
        cwd=cli_cwd,
    )
    assert f"dask: <Client: '{address}'" in r.stderr
    stream = client.get_task_stream(start=t0)
    workers = set(client.scheduler_info()["workers"])  # the two dask worker processes' addresses
    ran = {}
    for rec in stream:
        key = str(rec["key"])
        for fn in STEP_FUNCTIONS:
            if fn in key:
                ran.setdefault(fn, set()).add(rec["worker"])
    # every parallel step sent its tasks to the cluster, and the tasks ran on the two dask workers
    keys = [r["key"] for r in stream][:20]
    assert set(ran) == set(STEP_FUNCTIONS), f"steps seen on the scheduler: {ran}; keys: {keys}"
    assert set().union(*ran.values()) == workers, f"work went to {ran}, not to both workers {workers}"
    # the same result as the loky run, array for array
    _cli(
        ["encode", str(small_data), "--work", "loky", "--split", "test", "--backend", "loky", "--n-jobs", "2", *TINY],
        cwd=cli_cwd,
    )
    _assert_same_work(cli_cwd / "loky", cli_cwd / "dask")
    # prediction on the cluster: the same scores as here
    _cli(
        [
            "train",
            str(small_data),
            "--work",
            "dask",
            "--model",
            "model",
            "--backend",
            "dask",
            "--scheduler",
            address,
            "--n-jobs",
            "2",
            "--kernel-map",
            "none",
            *TINY,
        ],
        cwd=cli_cwd,
    )
    t1 = time.time()
    _cli(
        [
            "predict",
            "model",
            str(small_data / "images"),
            "--out-csv",
            "dask.csv",
            "--backend",
            "dask",
            "--scheduler",
            address,
            "--n-jobs",
            "2",
            "--quiet",
        ],
        cwd=cli_cwd,
    )
    on = {rec["worker"] for rec in client.get_task_stream(start=t1) if "_predict_job" in str(rec["key"])}
    assert on == workers, f"predict tasks ran on {on}"
    _cli(["predict", "model", str(small_data / "images"), "--out-csv", "here.csv", "--quiet"], cwd=cli_cwd)
    assert (cli_cwd / "dask.csv").read_text() == (cli_cwd / "here.csv").read_text()
    assert len((cli_cwd / "here.csv").read_text().splitlines()) == 1 + 52


def test_cli_run_on_the_default_local_cluster(small_data, tmp_path):
    r = _cli(
        ["encode", str(small_data), "--work", "local", "--split", "test", "--backend", "dask", "--n-jobs", "2", *TINY],
        cwd=tmp_path,
    )
    assert "dask: <Client: 'tcp://127.0.0.1:" in r.stderr and "processes=2 threads=2" in r.stderr
    _cli(
        ["encode", str(small_data), "--work", "loky", "--split", "test", "--backend", "loky", "--n-jobs", "2", *TINY],
        cwd=tmp_path,
    )
    _assert_same_work(tmp_path / "loky", tmp_path / "local")


def test_dask_backend_without_a_client_is_a_clear_error(tmp_path):
    from phow_baseline.parallel import imap

    with pytest.raises(ValueError, match="needs an open dask.distributed client"):
        list(imap(abs, [(-1,), (-2,)], backend="dask"))
