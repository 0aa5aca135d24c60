"""The downloader against a real HTTP server on 127.0.0.1 serving archives built from real images."""

import hashlib
import http.server
import io
import tarfile
import threading

import pytest
from click.testing import CliRunner

from phow_baseline.cli import main as cli
from phow_baseline.data.download import NIH_IMAGE_ARCHIVES, DownloadError, download, extract_images, fetch, parse_parts


class Server:
    """A loopback HTTP server with Range support and scripted misbehaviour."""

    def __init__(self, files):
        self.files = dict(files)
        self.cut_first = {}  # path -> byte count after which the first response is cut
        self.ignore_range = False
        self.corrupt_first = set()
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                if self.path in outer.corrupt_first:
                    outer.corrupt_first.discard(self.path)
                    data = data[: len(data) // 2] + b"\0" * (len(data) - len(data) // 2)
                start = 0
                rng = self.headers.get("Range")
                if rng and not outer.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = outer.cut_first.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the transfer breaks mid-way
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def _archive(images):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for p in images:
            tf.add(p, arcname=f"images/{p.name}")
        evil = tarfile.TarInfo("../evil.png")  # must never be extracted
        evil.size = 3
        tf.addfile(evil, io.BytesIO(b"bad"))
    return buf.getvalue()


@pytest.fixture
def server(sample_images):
    s = Server({"/images_001.tar.gz": _archive(sample_images[:4]), "/images_002.tar.gz": _archive(sample_images[4:7])})
    yield s
    s.close()


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_constants():
    assert len(NIH_IMAGE_ARCHIVES) == 12 and all(u.startswith("https://") for u in NIH_IMAGE_ARCHIVES.values())
    assert parse_parts("1,3-4") == [1, 3, 4] and parse_parts("all") == list(range(1, 13))
    with pytest.raises(ValueError):
        parse_parts("13")


def test_interrupted_transfer_resumes_to_identical_file(server, tmp_path):
    path = "/images_001.tar.gz"
    server.cut_first[path] = 5000
    out = fetch(server.url + path, tmp_path / "a.tar.gz", progress=False, backoff=0)
    assert out.read_bytes() == server.files[path]
    ranges = [r for p, r in server.requests if p == path]
    assert ranges[0] is None and ranges[1] == "bytes=5000-"  # resumed with a Range request


def test_server_ignoring_range_restarts(server, tmp_path):
    path = "/images_001.tar.gz"
    server.cut_first[path] = 3000
    server.ignore_range = True
    out = fetch(server.url + path, tmp_path / "a.tar.gz", progress=False, backoff=0)
    assert out.read_bytes() == server.files[path]


def test_missing_file_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server.url + "/nope.gz", tmp_path / "x", progress=False, retries=1, backoff=0)


def test_download_extracts_layout_and_reports(server, sample_dir, sample_images, tmp_path):
    data = tmp_path / "data"
    urls = {1: server.url + "/images_001.tar.gz", 2: server.url + "/images_002.tar.gz"}
    r = download(data, [1, 2], urls=urls, metadata_from=sample_dir, progress=False, log=lambda *a, **k: None)
    assert r["parts"] == {1: 4, 2: 3}
    for p in sample_images[:4]:
        assert _sha(data / "images_001" / "images" / p.name) == _sha(p)
    assert not (tmp_path / "evil.png").exists() and not (data / "evil.png").exists()
    assert r["metadata"]["Data_Entry_2017_v2020.csv"].startswith("copied")
    assert r["present"]["all"] == 7 and r["listed"]["all"] == 112_120
    assert not (data / ".downloads" / "images_001.tar.gz").exists()
    # a second run skips complete parts
    again = download(data, [1], urls=urls, progress=False, log=lambda *a, **k: None)
    assert again["parts"] == {1: 4} and len(server.requests) == 2


def test_corrupt_archive_refetched_never_half_extracted(server, tmp_path):
    data = tmp_path / "data"
    server.corrupt_first.add("/images_001.tar.gz")
    r = download(data, [1], urls={1: server.url + "/images_001.tar.gz"}, progress=False, log=lambda *a, **k: None)
    assert r["parts"] == {1: 4}
    assert len([p for p, _ in server.requests if p == "/images_001.tar.gz"]) == 2


def test_truncated_archive_leaves_nothing(sample_images, tmp_path):
    blob = _archive(sample_images[:4])
    arch = tmp_path / "t.tar.gz"
    arch.write_bytes(blob[: len(blob) * 2 // 3])
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(DownloadError, match="truncated or corrupt"):
        extract_images(arch, data, 1)
    assert list(data.iterdir()) == []


def test_cli_download(server, sample_dir, tmp_path):
    res = CliRunner().invoke(
        cli,
        [
            "download",
            str(tmp_path / "d"),
            "--parts",
            "2",
            "--quiet",
            "--mirror",
            f"2={server.url}/images_002.tar.gz",
            "--metadata-from",
            str(sample_dir),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "images_002.tar.gz: 3 images" in res.output and "all: 3 of 112120" in res.output


def test_persistently_corrupt_archive_is_reported_and_leaves_nothing(server, tmp_path):
    """Corrupt on both fetches: the part is reported as an error, fetched exactly twice, and the
    data folder holds no images_001 (nor a half-extracted temporary folder)."""
    data = tmp_path / "data"
    path = "/images_001.tar.gz"
    blob = server.files[path]
    server.files[path] = blob[: len(blob) // 2] + b"\0" * (len(blob) - len(blob) // 2)
    logs = []
    r = download(data, [1], urls={1: server.url + path}, progress=False, log=lambda *a, **k: logs.append(a))
    assert isinstance(r["parts"][1], str) and "truncated or corrupt" in r["parts"][1]
    assert len([p for p, _ in server.requests if p == path]) == 2
    assert not (data / "images_001").exists()
    assert not [p for p in data.iterdir() if p.name.startswith(".images_")]
    assert not list(data.rglob("*.png"))


def test_whole_archive_left_by_an_earlier_run_is_not_fetched_again(server, tmp_path):
    data = tmp_path / "data"
    path = "/images_001.tar.gz"
    (data / ".downloads").mkdir(parents=True)
    (data / ".downloads" / "images_001.tar.gz").write_bytes(server.files[path])
    r = download(data, [1], urls={1: server.url + path}, progress=False, log=lambda *a, **k: None)
    assert r["parts"] == {1: 4} and server.requests == []
    assert len(list((data / "images_001" / "images").glob("*.png"))) == 4


def test_truncated_transfer_without_resume_support_is_completed(server, tmp_path):
    """The server cuts the transfer and ignores Range: the file restarts from 0 (a 200), and
    the archive still extracts in full."""
    data = tmp_path / "data"
    path = "/images_002.tar.gz"
    server.cut_first[path] = 2000
    server.ignore_range = True
    r = download(data, [2], urls={2: server.url + path}, progress=False, log=lambda *a, **k: None)
    assert r["parts"] == {2: 3}
    ranges = [r for p, r in server.requests if p == path]
    assert ranges == [None, "bytes=2000-"]  # asked to resume, got the whole file again
