"""progress.py: bars only on a terminal, a few log lines elsewhere; the library logs, it never prints."""

import ast
import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from tqdm.std import tqdm as std_tqdm

import phow_baseline
from phow_baseline.progress import LogProgress, configure_logging, progress_bar

PACKAGE = Path(phow_baseline.__file__).parent


class _Stream(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


class _Clock:
    """A fake monotonic clock: ``tick(s)`` moves it on."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t

    def tick(self, seconds):
        self.t += seconds


@pytest.fixture
def records():
    """The ``phow_baseline.progress`` log records of the test (INFO and above)."""
    got = []

    class _Keep(logging.Handler):
        def emit(self, record):
            got.append(record.getMessage())

    logger = logging.getLogger("phow_baseline.progress")
    handler = _Keep(logging.INFO)
    logger.addHandler(handler)
    yield got
    logger.removeHandler(handler)


def test_a_100_step_loop_off_a_terminal_is_a_few_lines_not_100_updates(capsys, monkeypatch):
    """In a log file (stderr not a terminal) the k-means loop of the issue writes its end, not 100 bar updates."""
    monkeypatch.setattr(sys, "stderr", _Stream(tty=False))
    configure_logging(logging.INFO)
    bar = progress_bar(total=100, desc="k-means", unit="it", file=sys.stderr, leave=False, mininterval=0)
    assert isinstance(bar, LogProgress)
    for i in range(100):
        bar.update(1)
        bar.set_postfix(inertia=f"{1000 - i:.6g}")
    bar.close()
    err = sys.stderr.getvalue()
    assert "\r" not in err
    assert err.splitlines() == [err.splitlines()[-1]]  # fast: only the closing line
    assert err.startswith("k-means: done, 100/100 it (100%), ") and err.rstrip().endswith("inertia=901")


def test_lines_come_at_most_every_interval_and_once_at_the_end(records):
    clock = _Clock()
    bar = LogProgress(total=100, desc="encode", unit="shard", interval=10.0, clock=clock)
    for _ in range(100):
        clock.tick(1.0)
        bar.update(1)
    bar.close()
    bar.close()  # a second close says nothing more
    assert len(records) == 10 + 1  # at 10 s, 20 s, ... 100 s, and the end
    assert records[0] == "encode: 10/100 shard (10%), 00:10 elapsed, 01:30 left, 1 shard/s"
    assert records[-1] == "encode: done, 100/100 shard (100%), 01:40 elapsed, 1 shard/s"


def test_iterating_yields_every_item_and_ends_with_a_line(records):
    clock = _Clock()
    items = list(LogProgress(iter(range(7)), desc="localize", total=None, interval=10.0, clock=clock))
    assert items == list(range(7))
    assert records == ["localize: 7 it, 00:00 elapsed"]  # no total and no time passed: no rate, nothing left


def test_a_resumed_job_counts_from_its_initial_steps(records):
    clock = _Clock()
    bar = LogProgress(total=40, initial=30, desc="calibrate (SGD)", unit="img", clock=clock)
    clock.tick(20.0)
    bar.update(5)
    bar.close()
    assert records[0] == "calibrate (SGD): 35/40 img (88%), 00:20 elapsed, 00:20 left, 0.25 img/s"
    assert records[-1].startswith("calibrate (SGD): 35/40 img (88%), 00:20 elapsed")  # stopped early: no "done"


def test_bytes_are_shown_with_prefixes(records):
    clock = _Clock()
    bar = LogProgress(total=4_000_000, desc="images_001.tar.gz", unit="B", unit_scale=True, clock=clock)
    clock.tick(2.0)
    bar.update(3_000_000)
    bar.close()
    assert records == ["images_001.tar.gz: 3.00M/4.00M B (75%), 00:02 elapsed, 1.50M B/s"]


def test_a_terminal_gets_a_tqdm_bar():
    term = _Stream(tty=True)
    bar = progress_bar(range(3), desc="encode", file=term)
    assert isinstance(bar, std_tqdm) and list(bar) == [0, 1, 2]
    assert "\r" in term.getvalue() and "encode" in term.getvalue()


def test_disable_is_honoured(records, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Stream(tty=False))
    assert list(progress_bar(range(5), desc="x", disable=True)) == list(range(5))
    with progress_bar(total=5, desc="x", disable=True) as bar:
        bar.update(5)
        bar.set_postfix(a=1)
    term = _Stream(tty=True)
    list(progress_bar(range(5), desc="x", disable=True, file=term))
    assert records == [] and term.getvalue() == "" and sys.stderr.getvalue() == ""


def test_configure_logging_sends_notes_to_the_current_stderr_once(capsys):
    configure_logging(logging.INFO)
    configure_logging(logging.INFO)  # idempotent: one handler
    logging.getLogger("phow_baseline.workflow.steps").info("vocabulary: reusing x.npz")
    logging.getLogger("phow_baseline.encoding.gmm").debug("gmm: em: iteration 3")
    assert capsys.readouterr().err == "vocabulary: reusing x.npz\n"
    configure_logging(logging.WARNING)  # --quiet
    logging.getLogger("phow_baseline.workflow.steps").info("a note")
    logging.getLogger("phow_baseline.workflow.steps").warning("warning: 3 unreadable image(s)")
    assert capsys.readouterr().err == "warning: 3 unreadable image(s)\n"
    configure_logging(logging.DEBUG)  # --verbose
    logging.getLogger("phow_baseline.encoding.gmm").debug("gmm: em: iteration 3")
    assert capsys.readouterr().err == "gmm: em: iteration 3\n"


def test_the_library_installs_only_a_null_handler():
    code = (
        "import logging, phow_baseline.workflow.steps, phow_baseline.encoding.kmeans; "
        "hs = [type(h).__name__ for n in ('phow_baseline', 'phow_baseline.progress') "
        "for h in logging.getLogger(n).handlers]; print(hs)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['NullHandler']"


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_no_print_to_stderr_and_no_bare_tqdm_in_the_library():
    """Notes go through logging and bars through progress_bar: no print(..., file=sys.stderr) outside the CLI,
    and no tqdm outside progress.py."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and rel != "progress.py":
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                bad += [f"{rel}:{node.lineno} imports {m}" for m in mods if m.split(".")[0] == "tqdm"]
        if rel.startswith("cli/"):
            continue
        for call in _calls(tree):
            if isinstance(call.func, ast.Name) and call.func.id == "print":
                bad.append(f"{rel}:{call.lineno} print()")
    assert not bad, bad
