"""The tooling of the project: the peer gate cannot be bypassed, the lint entry point and run-tests' handling of
it, one version, the license shipped in the wheel, the changelog."""

import ast
import configparser
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import phow_baseline

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
#: the modules that are peers (tests/conftest.py's PEERS): never imported through importorskip
PEER_MODULES = ("cyvlfeat", "torch", "torchvision", "dask", "distributed")


def _is_call_to(node: ast.AST, name: str) -> bool:
    """``pytest.name(...)``, ``<anything>.name(...)`` or a bare ``name(...)``."""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == name) or (isinstance(f, ast.Name) and f.id == name)


def module_level_skips(source: str) -> list[int]:
    """Lines of ``importorskip`` calls, and of ``skip(..., allow_module_level=True)``, that run when the module is
    imported (module body, class bodies, module-level if/try/with/decorators), not inside a function."""
    lines = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                for deco in getattr(child, "decorator_list", []):  # decorators run at import
                    visit(deco)
                continue
            if _is_call_to(child, "importorskip") or (
                _is_call_to(child, "skip") and any(k.arg == "allow_module_level" for k in child.keywords)
            ):
                lines.append(child.lineno)
            visit(child)

    visit(ast.parse(source))
    return lines


def peer_importorskips(source: str) -> list[int]:
    """Lines of ``importorskip("<peer module>...")`` calls anywhere (a peer goes through conftest.require_peer)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if _is_call_to(node, "importorskip") and node.args and isinstance(node.args[0], ast.Constant):
            if str(node.args[0].value).split(".")[0] in PEER_MODULES:
                out.append(node.lineno)
    return out


def test_the_skip_finders_find_skips():
    bad = (
        "import pytest\n"
        "torch = pytest.importorskip('torch')\n"
        "try:\n    x = importorskip('dask')\nexcept Exception:\n    pass\n"
        "class T:\n    d = pytest.importorskip('distributed')\n"
        "pytest.skip('no', allow_module_level=True)\n"
        "def test_ok():\n    np = pytest.importorskip('numpy')\n    cy = pytest.importorskip('cyvlfeat.fisher')\n"
    )
    assert module_level_skips(bad) == [2, 4, 8, 9]
    assert peer_importorskips(bad) == [2, 4, 8, 12]


def test_no_module_level_importorskip_in_tests():
    """A module-level importorskip hides a whole file, even under CI; a peer is asked for in tests/conftest.py."""
    found = {p.name: module_level_skips(p.read_text(encoding="utf-8")) for p in sorted(TESTS.glob("*.py"))}
    assert len(found) > 20  # the test files were read
    assert {k: v for k, v in found.items() if v} == {}, "use a marker or conftest.require_peer (tests/conftest.py)"


def test_no_test_asks_for_a_peer_through_importorskip():
    found = {p.name: peer_importorskips(p.read_text(encoding="utf-8")) for p in sorted(TESTS.glob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}, "use a marker or conftest.require_peer (tests/conftest.py)"


# -- tools/lint and run-tests ------------------------------------------------------------------------------------


def _tiny_project(root: Path) -> None:
    """A tree that tools/lint checks as it checks this repository: the package's numeric core, tests, benchmarks."""
    (root / "tools").mkdir(parents=True)
    shutil.copy(ROOT / "tools" / "lint", root / "tools" / "lint")
    shutil.copy(ROOT / "tools" / "check_docstrings.py", root / "tools" / "check_docstrings.py")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    for pkg in ("phow_baseline", "phow_baseline/features", "phow_baseline/encoding", "phow_baseline/classification"):
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").write_text('"""A package."""\n')
    (root / "phow_baseline" / "features" / "core.py").write_text(
        '"""A module."""\n\n\ndef twice(x: int) -> int:\n    """Twice ``x``.\n\n    Parameters\n    ----------\n'
        '    x : int\n        A number.\n\n    Returns\n    -------\n    int\n        ``2 x``.\n    """\n'
        "    return 2 * x\n"
    )
    for d in ("tests", "benchmarks"):
        (root / d).mkdir()
        (root / d / f"{d}_x.py").write_text('"""A module."""\n\nVALUE = 1\n')


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VENV": str(Path(sys.executable).parent.parent)}
    return subprocess.run(
        ["bash", str(root / "tools" / "lint")], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_tools_lint_passes_a_clean_tree_and_fails_each_check(tmp_path):
    _tiny_project(tmp_path)
    r = _lint(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ruff check, ruff format --check, mypy and the numpydoc sections passed" in r.stderr
    # one problem for each check: all four run (none stops the others) and all four are reported
    (tmp_path / "benchmarks" / "benchmarks_x.py").write_text('"""A module."""\n\nimport os\n\nVALUE = 1\n')
    (tmp_path / "tests" / "tests_x.py").write_text('"""A module."""\n\nVALUE = [1,2]\n')
    core = tmp_path / "phow_baseline" / "features" / "core.py"
    core.write_text(core.read_text().replace("return 2 * x", 'return "2" * x'))
    (tmp_path / "phow_baseline" / "encoding" / "more.py").write_text(
        '"""A module."""\n\n\ndef thrice(x: int) -> int:\n    """Three times ``x``."""\n    return 3 * x\n'
    )
    r = _lint(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failed: ruff check, ruff format --check, mypy, numpydoc sections" in r.stderr, r.stderr
    assert "phow_baseline.encoding.more.thrice: PR01" in r.stdout  # the undocumented parameter, by name
    out = r.stdout + r.stderr
    assert "benchmarks_x.py" in out and "F401" in out  # ruff: the unused import, by file and rule
    assert "tests_x.py" in out  # the format check names the file
    assert "core.py" in out and "return-value" in out  # mypy: the type error


_FAKE_PYTHON = """#!/usr/bin/env bash
case "$1" in
  -c) exit 0 ;;  # run-tests' check that the venv is complete
  -m) shift 2; echo "pytest $*" >> "$LOG"; exit "${PYTEST_STATUS:-0}" ;;
esac
exit 3
"""
_FAKE_LINT = """#!/usr/bin/env bash
echo "lint" >> "$LOG"
exit "${LINT_STATUS:-0}"
"""


@pytest.fixture
def run_tests_copy(tmp_path):
    """run-tests in a copy of the repository's set-up files, with a venv whose python and a tools/lint that only
    record how they were called: what run-tests runs, with which arguments, and its exit status."""
    root = tmp_path / "repo"
    (root / "tools").mkdir(parents=True)
    for f in ("run-tests", "setup.cfg", "pyproject.toml"):
        shutil.copy(ROOT / f, root / f)
    (root / "tools" / "lint").write_text(_FAKE_LINT)
    (root / "tools" / "lint").chmod(0o755)
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").write_text(_FAKE_PYTHON)
    (root / ".venv" / "bin" / "python").chmod(0o755)
    stamp = hashlib.sha256(b"".join((root / f).read_bytes() for f in ("setup.cfg", "pyproject.toml", "run-tests")))
    (root / ".venv" / ".phow-baseline-setup").write_text(stamp.hexdigest() + "\n")  # set up already
    log = tmp_path / "calls.log"

    def run(*args, **env):
        log.write_text("")
        e = {k: v for k, v in os.environ.items() if k not in ("CI", "PHOW_BASELINE_LINT", "VENV")}
        e.update(LOG=str(log), **env)
        r = subprocess.run(
            ["bash", str(root / "run-tests"), *args], cwd=root, env=e, capture_output=True, text=True, timeout=60
        )
        return r.returncode, log.read_text().splitlines(), r.stderr

    return run


def test_run_tests_lints_before_pytest(run_tests_copy):
    assert run_tests_copy()[:2] == (0, ["lint", "pytest "])
    assert run_tests_copy("-k", "dsift", "-x")[:2] == (0, ["lint", "pytest -k dsift -x"])


def test_run_tests_skips_the_lint_locally_only(run_tests_copy):
    assert run_tests_copy("--no-lint", "-k", "dsift")[:2] == (0, ["pytest -k dsift"])
    assert run_tests_copy("-x", PHOW_BASELINE_LINT="0")[:2] == (0, ["pytest -x"])
    rc, calls, err = run_tests_copy("--no-lint", "-x", CI="true")
    assert (rc, calls) == (0, ["lint", "pytest -x"]) and "CI=true: tools/lint runs" in err


@pytest.mark.parametrize("lint,tests,want", [("1", "0", 1), ("1", "5", 5), ("0", "2", 2), ("0", "0", 0)])
def test_run_tests_exit_status(run_tests_copy, lint, tests, want):
    """A failed lint fails the run, after pytest has run; pytest's own status wins when it failed too."""
    rc, calls, err = run_tests_copy(LINT_STATUS=lint, PYTEST_STATUS=tests)
    assert (rc, calls) == (want, ["lint", "pytest "])
    assert ("tools/lint failed" in err) == (lint != "0")


def test_the_test_extra_pins_the_installed_linters():
    """tools/lint here and under CI use the same ruff and mypy: the versions pinned in the test extra."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pins = dict(re.findall(r"^(ruff|mypy)==(\S+)$", cfg["options.extras_require"]["test"], re.M))
    assert set(pins) == {"ruff", "mypy"}, cfg["options.extras_require"]["test"]
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, f'{name}: pip install -e ".[test]"'


# -- one version, the license, the changelog --------------------------------------------------------------------


def test_one_version_everywhere():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["version"] == "attr: phow_baseline._version.__version__"
    assert importlib.metadata.version("phow-baseline") == phow_baseline.__version__, "reinstall: pip install -e ."
    from click.testing import CliRunner

    from phow_baseline.cli import main

    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"phow-baseline, version {phow_baseline.__version__}"


def test_changelog_has_the_current_version_first():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", text, re.M)
    assert releases and releases[0][0] == phow_baseline.__version__, releases
    assert [v for v, _ in releases] == sorted(
        (v for v, _ in releases), key=lambda v: tuple(map(int, v.split("."))), reverse=True
    )


def test_license_is_bsd3_and_declared():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License") and "the phow-baseline developers" in text
    assert "Neither the name of the copyright holder" in text
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["license"] == "BSD-3-Clause" and cfg["metadata"]["license_files"].strip() == "LICENSE"


@pytest.mark.slow
def test_wheel_ships_the_license_and_the_version(tmp_path):
    """A wheel built from a copy of the sources (the working tree is left alone) carries LICENSE and 0.2's version."""
    src = tmp_path / "src"
    src.mkdir()
    for f in ("setup.cfg", "pyproject.toml", "LICENSE", "README.md"):
        shutil.copy(ROOT / f, src / f)
    shutil.copytree(ROOT / "phow_baseline", src / "phow_baseline", ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = (tmp_path / "dist").glob("phow_baseline-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = f"phow_baseline-{phow_baseline.__version__}.dist-info"
        assert f"{info}/licenses/LICENSE" in names, names
        assert z.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        meta = z.read(f"{info}/METADATA").decode()
    assert f"\nVersion: {phow_baseline.__version__}\n" in meta and "\nLicense-File: LICENSE\n" in meta
    assert "phow_baseline/report/templates/report.html" in names
