"""io.py: atomic writes, file-naming errors, confinement, the work-folder lock."""

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from phow_baseline.io import (DataFileError, FolderBusyError, atomic_path, atomic_save_npz, atomic_write_json,
                              atomic_write_text, confined, folder_lock, list_images, load_npz, read_json)


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert json.loads(p.read_text()) == {"x": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["a.json"]  # no temporary left


def test_concurrent_writers_never_share_a_temporary_name(tmp_path):
    """Two writers of one file each use their own temporary: the result is one whole version."""
    p = tmp_path / "model.json"
    names = []
    barrier = threading.Barrier(8)

    def write(i):
        with atomic_path(p) as tmp:
            names.append(tmp.name)
            barrier.wait()
            tmp.write_text(json.dumps({"writer": i, "pad": "x" * 10000}))

    ts = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert len(set(names)) == 8
    assert json.loads(p.read_text())["writer"] in range(8)
    assert [q.name for q in tmp_path.iterdir()] == ["model.json"]


def test_npz_round_trip_refuses_objects(tmp_path):
    atomic_save_npz(tmp_path / "a.npz", {"w": np.arange(3.0)})
    assert np.array_equal(load_npz(tmp_path / "a.npz")["w"], np.arange(3.0))
    with pytest.raises(TypeError, match="object"):
        atomic_save_npz(tmp_path / "b.npz", {"o": np.array([{"a": 1}], dtype=object)})
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFileError, match="bad.npz"):
        load_npz(tmp_path / "bad.npz")


def test_read_json_names_the_file(tmp_path):
    with pytest.raises(DataFileError, match=r"missing\.json: model file not found"):
        read_json(tmp_path / "missing.json", what="model file")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataFileError, match=r"bad\.json: JSON file is not valid JSON"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DataFileError, match="should hold a JSON dict"):
        read_json(tmp_path / "list.json")


@pytest.mark.parametrize("name", ["/etc/passwd", "../x.npz", "a/../../x.npz", ""])
def test_confined_refuses_escapes(tmp_path, name):
    with pytest.raises(DataFileError):
        confined(tmp_path, name)


def test_confined_accepts_plain_names(tmp_path):
    assert confined(tmp_path, "svm.npz") == tmp_path / "svm.npz"
    assert confined(tmp_path, "sub/heat.png") == tmp_path / "sub" / "heat.png"


def test_list_images(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    for n in ("d/b.png", "d/e/a.PNG", "d/notes.txt", "c.jpg"):
        (tmp_path / n).write_bytes(b"")
    got = list_images([tmp_path / "d", tmp_path / "c.jpg", tmp_path / "missing.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["d/b.png", "d/e/a.PNG", "c.jpg", "missing.png"]


def test_folder_lock_refuses_a_second_process_and_is_reentrant(tmp_path):
    work = tmp_path / "work"
    with folder_lock(work):
        with folder_lock(work):  # the same process may nest
            pass
        code = textwrap.dedent(f"""
            from phow_baseline.io import folder_lock, FolderBusyError
            try:
                with folder_lock({str(work)!r}):
                    print("acquired")
            except FolderBusyError as exc:
                print("busy:", exc)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.startswith("busy:") and str(work) in out and f"pid {os.getpid()}" in out
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "acquired"  # released after the block


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    work = tmp_path / "work"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from phow_baseline.io import folder_lock
        with folder_lock({str(work)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError):
            with folder_lock(work):
                pass
        holder.kill()
        holder.wait(10)
        with folder_lock(work):
            pass
    finally:
        holder.kill()


def test_second_run_on_a_busy_work_folder_stops_at_once(sample_dir, tmp_path):
    """Two concurrent `run`s with one output folder: the second refuses with a clear message, no traceback."""
    from click.testing import CliRunner

    from phow_baseline.cli import main

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from phow_baseline.io import folder_lock
        with folder_lock({str(out / "work")!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = CliRunner().invoke(main, ["run", str(sample_dir), "--out", str(out), "--n-words", "8", "--quiet"])
    finally:
        holder.kill()
        holder.wait(10)
    assert res.exit_code != 0
    assert "in use by another run" in res.output and "Traceback" not in res.output
    assert not (out / "model").exists()


def test_model_json_file_names_are_confined(tmp_path):
    from phow_baseline.model.directory import ModelFileError, read_model_dir, write_model_dir

    d = write_model_dir(tmp_path / "m", "phow", {}, {"svm": {"w": np.zeros(3)}})
    meta = json.loads((d / "model.json").read_text())
    (tmp_path / "outside.npz").write_bytes((d / "svm.npz").read_bytes())
    meta["files"]["svm"]["file"] = "../outside.npz"
    atomic_write_text(d / "model.json", json.dumps(meta))
    with pytest.raises(ModelFileError, match="leaves the folder"):
        read_model_dir(d)


def test_run_folder_given_as_model_says_where_the_model_is(tmp_path):
    from phow_baseline.model.directory import ModelFileError, load_model, write_model_dir

    write_model_dir(tmp_path / "out" / "model", "phow", {}, {})
    (tmp_path / "out" / "run").mkdir()
    for given in (tmp_path / "out", tmp_path / "out" / "run"):
        with pytest.raises(ModelFileError, match=r"the model of this run is in .*out/model"):
            load_model(given)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.json").write_text("{oops")
    with pytest.raises(ModelFileError, match=r"bad/model\.json: model file is not valid JSON"):
        load_model(tmp_path / "bad")
