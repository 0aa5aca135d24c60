"""Package-level promises: torch stays out of the base install, the CLI lists its commands."""

import re
import subprocess
import sys

from click.testing import CliRunner

from phow_baseline.cli import main as cli


def test_base_modules_do_not_import_torch():
    code = (
        "import sys, phow_baseline.cli.commands, phow_baseline.workflow.pipeline, phow_baseline.report.html, "
        "phow_baseline.evaluation.localization, phow_baseline.followup.differences, phow_baseline.data.phantom, "
        "phow_baseline.data.download, phow_baseline.model.directory; "
        "from phow_baseline.cli import main; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help_lists_every_command():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    for cmd in (
        "info",
        "vocab",
        "encode",
        "train",
        "evaluate",
        "predict",
        "run",
        "compare",
        "localize",
        "localize-eval",
        "diff",
        "report",
        "demo",
        "phantom",
        "download",
        "cnn",
    ):
        assert f"  {cmd} " in res.output or f"  {cmd}\n" in res.output, cmd


def test_info_command(sample_dir):
    res = CliRunner().invoke(cli, ["info", str(sample_dir)])
    assert res.exit_code == 0, res.output
    assert re.search(r"^test\s+25596\s+59\s+25537$", res.output, re.M)
    assert "boxes: 9 on 9 present images" in res.output
    bad = CliRunner().invoke(cli, ["info", str(sample_dir / "images")])
    assert bad.exit_code != 0 and "no metadata CSV" in bad.output


# The pipeline's stages, lowest first: one subpackage per stage (io, parallel
# and config are single modules; config holds values only and imports no
# stage); a module may import only subpackages of a lower rank, or modules of
# its own subpackage.  ``cli`` is the top; ``cnn`` sits just below it.
STAGES = [
    ["io", "parallel", "progress", "_compat", "_version", "config"],
    ["data"],
    ["features"],
    ["encoding"],
    ["classification"],
    ["model"],
    ["evaluation"],
    ["followup"],
    ["report"],
    ["workflow"],
    ["cnn"],
    ["cli"],
]


def _package_imports():
    """{module: {imported package modules}} from the source (every import statement, lazy ones included)."""
    import ast
    from pathlib import Path

    import phow_baseline

    root = Path(phow_baseline.__file__).parent
    graph = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mod = ".".join(parts)
        pkg = parts[:-1] if path.name != "__init__.py" else parts
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg[: len(pkg) - (node.level - 1)]
                    target = base + (node.module.split(".") if node.module else [])
                    names = [target + [a.name] for a in node.names] if not node.module else [target]
                elif node.module and node.module.startswith("phow_baseline"):
                    names = [node.module.split(".")[1:]]
                else:
                    continue
                for t in names:
                    deps.add(".".join(t))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("phow_baseline."):
                        deps.add(".".join(a.name.split(".")[1:]))
        graph[mod] = {d for d in deps if d and d != mod}
    return graph


def _stage(mod: str) -> int | None:
    top = mod.split(".")[0]
    for rank, names in enumerate(STAGES):
        if top in names:
            return rank
    return None


def test_every_module_has_a_stage():
    graph = _package_imports()
    unplaced = sorted(m for m in graph if m and _stage(m) is None)
    assert not unplaced, f"modules missing from STAGES: {unplaced}"


def test_imports_point_downwards_only():
    """No module imports a higher stage (lazy imports included), and so no cycle between stages."""
    graph = _package_imports()
    bad = []
    for mod, deps in graph.items():
        if not mod:
            continue  # the package's __init__
        for d in deps:
            if d.split(".")[0] == mod.split(".")[0] or _stage(d) is None:
                continue  # inside one stage (cnn/), or a name from the package root (__version__)
            if _stage(d) > _stage(mod):
                bad.append(f"{mod} -> {d}")
    assert not bad, "imports from a lower stage to a higher one: " + ", ".join(sorted(bad))


def test_no_import_cycle():
    graph = _package_imports()
    mods = {m.split(".")[0] for m in graph if m}
    edges = {m: set() for m in mods}
    for mod, deps in graph.items():
        a = mod.split(".")[0] if mod else None
        for d in deps:
            b = d.split(".")[0]
            if a and b in mods and a != b:
                edges[a].add(b)
    seen, stack = {}, []

    def visit(n):
        seen[n] = 1
        stack.append(n)
        for m in edges[n]:
            if seen.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m) :] + [m]))
            if m not in seen:
                visit(m)
        seen[n] = 2
        stack.pop()

    for n in sorted(mods):
        if n not in seen:
            visit(n)
