"""io.py: atomic writes (with the umask's modes), a full disk in one line, file-naming errors, confinement,
the work-folder lock."""

import errno
import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
import threading
from collections import namedtuple

import numpy as np
import pytest

import phow_baseline.io as pio
from phow_baseline.io import (
    DataFileError,
    FolderBusyError,
    OutOfSpaceError,
    atomic_path,
    atomic_save_npy,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_free_space,
    confined,
    folder_lock,
    is_out_of_space,
    list_images,
    load_npz,
    read_json,
    translate_out_of_space,
)


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
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from phow_baseline.io import folder_lock
        with folder_lock({str(work)!r}):
            print("held", flush=True)
            time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
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
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time
        from phow_baseline.io import folder_lock
        with folder_lock({str(out / "work")!r}):
            print("held", flush=True)
            time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        res = CliRunner().invoke(
            main, ["run", str(sample_dir), "--out", str(out), "--preset", "vlfeat", "--n-words", "8", "--quiet"]
        )
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


# --------------------------------------------------------------------------
# Files keep the umask
# --------------------------------------------------------------------------


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test (``umask(0o002)``), restored after."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_mode_open_would_give(tmp_path, umask, mask):
    """Every atomic writer (and the folders it makes) gives 0o666 / 0o777 less the umask, not mkstemp's 0600."""
    umask(mask)
    d = tmp_path / "new" / "deeper"
    written = [
        atomic_write_bytes(d / "a.bin", b"x"),
        atomic_write_text(d / "b.txt", "x"),
        atomic_write_json(d / "c.json", {"x": 1}),
        atomic_save_npy(d / "d.npy", np.arange(3)),
        atomic_save_npz(d / "e.npz", {"w": np.arange(3)}),
        atomic_save_npz(d / "f.npz", {"w": np.arange(3)}, compressed=True),
    ]
    with atomic_path(d / "g.png") as tmp, open(tmp, "wb") as fh:  # as savefig / torch.save write: reopened "wb"
        fh.write(b"png")
    written.append(d / "g.png")
    opened = d / "plain.txt"
    opened.write_text("what open() gives")
    assert _mode(opened) == 0o666 & ~mask
    assert {p.name: _mode(p) for p in written} == {p.name: 0o666 & ~mask for p in written}
    assert _mode(d) == _mode(tmp_path / "new") == 0o777 & ~mask


def test_rewrite_takes_the_umask_of_now(tmp_path, umask):
    p = tmp_path / "a.json"
    umask(0o077)
    atomic_write_json(p, {"v": 1})
    assert _mode(p) == 0o600
    umask(0o002)
    atomic_write_json(p, {"v": 2})  # a new file replaces the old one: the mode of a new file
    assert _mode(p) == 0o664 and json.loads(p.read_text()) == {"v": 2}


@pytest.mark.slow
def test_a_run_folder_has_no_private_file(sample_run):
    """End to end: under umask 0022 every file of a `run` (work caches, model, run folder) is 0644, every folder
    0755: a shared results folder, a web server or cluster workers as another user can read them."""
    out, _ = sample_run
    mask = os.umask(0o022)
    os.umask(mask)
    files = [p for p in out.rglob("*") if p.is_file()]
    folders = [p for p in out.rglob("*") if p.is_dir()]
    assert len(files) > 20 and {"model", "run", "work"} <= {p.name for p in folders}
    bad = {str(p.relative_to(out)): oct(_mode(p)) for p in files if _mode(p) != 0o666 & ~mask}
    bad.update({str(p.relative_to(out)): oct(_mode(p)) for p in folders if _mode(p) != 0o777 & ~mask})
    assert not bad, bad


# --------------------------------------------------------------------------
# A full disk
# --------------------------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("where", ["write", "np.save", "numpy-message", "os.replace", "fsync", "create"])
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, where):
    p = tmp_path / "feat_00001.npy"
    atomic_save_npy(p, np.zeros(4, np.float32))  # an earlier, complete version
    old = p.read_bytes()
    array = np.ones((64, 1024), np.float32)  # 256 KiB

    def partial_save(fh, *args, **kwargs):  # half written, then the disk is full
        fh.write(b"\0" * 1000)
        fh.flush()
        if where == "numpy-message":  # numpy's own errno-less message
            raise OSError("Not enough free space to write 262144 bytes after offset 128")
        _enospc()

    if where in ("np.save", "numpy-message"):
        monkeypatch.setattr(np, "save", partial_save)
    elif where == "os.replace":
        monkeypatch.setattr(os, "replace", _enospc)
    elif where == "fsync":
        monkeypatch.setattr(os, "fsync", _enospc)
    elif where == "create":
        real_open = os.open
        monkeypatch.setattr(
            os, "open", lambda f, flags, *a: _enospc() if str(f).endswith(".tmp") else real_open(f, flags, *a)
        )
    elif where == "write":
        monkeypatch.setattr(pio.Path, "write_bytes", _enospc)
    monkeypatch.setattr(pio.shutil, "disk_usage", lambda path: namedtuple("u", "total used free")(10, 10, 4096))
    with pytest.raises(OutOfSpaceError) as info:
        if where == "write":
            atomic_write_bytes(p, b"x" * 5000)
        else:
            atomic_save_npy(p, array)
    exc = info.value
    message = str(exc)
    assert "\n" not in message and message.startswith(f"{p}: no space left on device (")
    assert message.endswith(", 4.0 KiB free)"), message
    needed = {"write": "4.9 KiB needed", "numpy-message": "256.1 KiB needed"}.get(where, "256.1 KiB needed")
    assert needed in message, message
    assert exc.errno == errno.ENOSPC and exc.filename == str(p) and isinstance(exc, OSError)
    assert _leftovers(tmp_path) == []  # the partial temporary is gone
    assert p.read_bytes() == old  # nothing already written is lost


def test_a_full_disk_while_making_the_folder_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(pio.Path, "mkdir", _enospc)
    with pytest.raises(OutOfSpaceError, match=rf"^{tmp_path / 'sub'}: no space left on device"):
        atomic_write_text(tmp_path / "sub" / "a.txt", "x")


def test_other_errors_pass_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EACCES, "Permission denied")))
    with pytest.raises(OSError) as info:
        atomic_write_text(tmp_path / "a.txt", "x")
    assert not isinstance(info.value, OutOfSpaceError) and info.value.errno == errno.EACCES
    assert _leftovers(tmp_path) == []


def test_is_out_of_space():
    assert is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert is_out_of_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_out_of_space(OSError("3145728 requested and 2211712 written"))  # numpy's short fwrite
    assert is_out_of_space(OSError("Not enough free space to write 16777216 bytes after offset 128"))
    assert not is_out_of_space(OSError(errno.EIO, "Input/output error"))
    assert not is_out_of_space(OSError(errno.EIO, "12 requested and 3 written"))  # an errno: not numpy's message
    assert not is_out_of_space(ValueError("No space left on device"))


def test_translate_out_of_space_names_the_path(tmp_path):
    with pytest.raises(OutOfSpaceError, match=r"^/data/part\.tar\.gz: no space left on device \(3\.0 MiB needed, "):
        with translate_out_of_space("/data/part.tar.gz"):
            raise OSError("Not enough free space to write 3145600 bytes after offset 128")
    with pytest.raises(OutOfSpaceError, match=r"^/data/x\.csv: no space left on device \(\d+\.\d \w+ free\)$"):
        with translate_out_of_space("/data/x.csv"):
            raise OSError("3145728 requested and 2211712 written")  # a short write: the size is unknown
    with pytest.raises(KeyError):
        with translate_out_of_space(tmp_path):
            raise KeyError("not a disk error")


def test_out_of_space_error_survives_a_worker(tmp_path):
    """Raised in a joblib worker, it reaches the caller as itself (pickled by its own arguments)."""
    exc = OutOfSpaceError("/w/shard_00003.npy", needed=3145728, free=2211712)
    back = pickle.loads(pickle.dumps(exc))
    assert (
        type(back) is OutOfSpaceError
        and str(back) == str(exc) == "/w/shard_00003.npy: no space left on device (3.0 MiB needed, 2.1 MiB free)"
    )
    assert (back.needed, back.free, back.errno, back.filename) == (3145728, 2211712, errno.ENOSPC, "/w/shard_00003.npy")


def test_check_free_space_refuses_with_both_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(pio.shutil, "disk_usage", lambda path: namedtuple("u", "total used free")(0, 0, 20 * 2**20))
    assert check_free_space(tmp_path / "not" / "yet", 2**20, "the run") == 20 * 2**20
    with pytest.raises(OutOfSpaceError) as info:
        check_free_space(tmp_path / "out", 3 * 2**30, "the run", detail="image cache 2.0 GiB")
    assert str(info.value) == (
        f"{tmp_path / 'out'}: no space left on device for the run "
        "(about 3.0 GiB needed, 20.0 MiB free; image cache 2.0 GiB)"
    )


def test_free_bytes_asks_the_nearest_existing_folder(tmp_path):
    assert pio.free_bytes(tmp_path / "a" / "b" / "c.npy") == pio.shutil.disk_usage(tmp_path).free > 0
