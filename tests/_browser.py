"""Headless Chromium for the browser tests (marker ``browser``): render a page, read the DOM, take a screenshot."""

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    """The Chromium executable (Debian's ``chromium``, installed by .ci/run); fails the test when absent."""
    exe = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    )
    assert exe, "Chromium is not installed: this test needs Debian's chromium (.ci/run installs it)"
    return exe


def render(page: Path, screenshot: Path, width: int = 1280, height: int = 6000) -> str:
    """Screenshot ``page`` (``width`` x ``height`` pixels) and return the DOM Chromium built from it.

    Parameters
    ----------
    page : Path
        The HTML file.
    screenshot : Path
        The PNG to write.
    width, height : int
        The window, in CSS pixels.

    Returns
    -------
    str
        ``--dump-dom`` after the page's load event (5 s of virtual time).
    """
    with tempfile.TemporaryDirectory() as profile:
        common = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        r = subprocess.run(
            [*common, f"--window-size={width},{height}", f"--screenshot={screenshot}", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0 and screenshot.is_file(), f"chromium screenshot failed: {r.stderr[-2000:]}"
        r = subprocess.run(
            [*common, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, f"chromium --dump-dom failed: {r.stderr[-2000:]}"
    return r.stdout
