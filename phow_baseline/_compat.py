"""The 0.1 import paths, kept working for 0.2 with a :class:`DeprecationWarning`.

In 0.1 every stage was one flat module (``phow_baseline.dsift``,
``phow_baseline.metrics``, ...).  0.2 groups them into stage subpackages.
Importing an old module name gives the new module object itself (so a
``monkeypatch`` of either name patches both) and warns once per name.
An old module that 0.2 splits into several (``metrics``, ``calibration``,
``preprocess``: :data:`SPLIT_MODULES`) is given as a module of its own
holding the names of the new ones, the names its 0.1 module had: a
``monkeypatch`` of that module does not reach the new ones.
Old names that are now subpackages (``data``, ``model``, ``report``,
``followup``, ``cli``) re-export their 0.1 public names directly;
``phow_baseline.features``'s 0.1 names (the feature store) are forwarded by
that package's ``__getattr__``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

#: 0.1 module -> 0.2 module (those whose old name is not a 0.2 subpackage).
MOVED_MODULES: dict[str, str] = {
    "download": "data.download",
    "phantom": "data.phantom",
    "dsift": "features.dsift",
    "phow": "features.phow",
    "postprocess": "features.descriptors",
    "quantize": "encoding.quantize",
    "kmeans": "encoding.kmeans",
    "kmeans_bounds": "encoding.kmeans_bounds",
    "vocabulary": "encoding.vocabulary",
    "gmm": "encoding.gmm",
    "pyramid": "encoding.pyramid",
    "fisher": "encoding.fisher",
    "vlad": "encoding.vlad",
    "kernel_map": "classification.kernel_map",
    "classify": "classification.svm",
    "model_io": "model.directory",
    "attribution": "model.attribution",
    "localize": "evaluation.localization",
    "steps": "workflow.steps",
    "pipeline": "workflow.pipeline",
    "demo": "workflow.demo",
}

#: 0.1 module -> the 0.2 modules its names are in now (where two hold a name, the first gives it).
SPLIT_MODULES: dict[str, tuple[str, ...]] = {
    "metrics": (
        "evaluation.roc",
        "evaluation.bootstrap",
        "evaluation.published",
        "evaluation.plots",
        "evaluation.rundir",
        "evaluation.calibration_metrics",
        "evaluation.decision_metrics",
    ),
    "calibration": (
        "classification.calibration",
        "classification.operating_points",
        "evaluation.bootstrap",
        "evaluation.calibration_metrics",
        "evaluation.decision_metrics",
    ),
    "preprocess": ("data.imread", "data.preprocess", "data.cache"),
}


def _warn(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(
        f"{old} is deprecated since phow-baseline 0.2: import {new} instead", DeprecationWarning, stacklevel=stacklevel
    )


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        _warn(spec.name, self.new, stacklevel=3)
        module = importlib.import_module(self.new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module):
        # The new module is already executed; importlib has just set its
        # ``__spec__`` to the alias's: give it back its own.
        module.__spec__ = self._spec


class _SplitLoader(importlib.abc.Loader):
    """A module of its own holding every name of the 0.2 modules ``parts`` (the first wins a clash)."""

    def __init__(self, parts: tuple[str, ...]):
        self.parts = parts

    def create_module(self, spec):
        _warn(spec.name, "one of " + ", ".join(self.parts), stacklevel=3)
        module = types.ModuleType(spec.name, f"0.1's {spec.name}: the names of " + ", ".join(self.parts) + ".")
        for part in reversed(self.parts):
            names = vars(importlib.import_module(part))
            vars(module).update({k: v for k, v in names.items() if not (k.startswith("__") and k.endswith("__"))})
        return module

    def exec_module(self, module):
        pass  # filled when created


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``phow_baseline.<0.1 name>`` and hands out the 0.2 module (or, for a split one, its names)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, leaf = fullname.rpartition(".")
        if package != "phow_baseline":
            return None
        if leaf in MOVED_MODULES:
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(f"phow_baseline.{MOVED_MODULES[leaf]}"))
        if leaf in SPLIT_MODULES:
            parts = tuple(f"phow_baseline.{m}" for m in SPLIT_MODULES[leaf])
            return importlib.machinery.ModuleSpec(fullname, _SplitLoader(parts))
        return None


def install() -> None:
    """Put the finder on :data:`sys.meta_path` (once)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())


def forward(package: str, names: dict[str, str], name: str):
    """Module ``__getattr__`` helper: ``package.name`` -> ``names[name]`` (``"module:attr"``), warned."""
    if name not in names:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    module, _, attr = names[name].partition(":")
    _warn(f"{package}.{name}", f"{module}.{attr}")
    return getattr(importlib.import_module(module), attr)
