#!/usr/bin/env python
"""Check numpydoc sections on phow_baseline's public API (numpydoc's own validator).

Every public function, class and method defined in a public module of the
package must have a docstring (GL08), document each parameter (PR01) and no
unknown one (PR02), and have a Returns (or Yields) section when it returns
something (RT01).  Public means: no leading underscore in any part of the
dotted name.  Usage::

    python tools/check_docstrings.py [SUBPACKAGE ...]   # e.g. encoding classification

Prints one line per problem and exits 1 when there is any.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import warnings
from pathlib import Path

from numpydoc.validate import validate

# The tree this script sits in (tools/..), not an installed copy of the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CODES = {"GL08", "PR01", "PR02", "RT01"}


def public_modules(package: str = "phow_baseline"):
    """Yield the dotted names of the package and its public submodules (no ``_`` part)."""
    pkg = importlib.import_module(package)
    yield pkg.__name__
    for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        yield info.name


def public_objects(module_name: str):
    """Yield the qualified names of the public functions, classes and methods defined in a module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = importlib.import_module(module_name)
    for name, obj in sorted(vars(mod).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue
        if inspect.isfunction(obj):
            yield f"{module_name}.{name}"
        elif inspect.isclass(obj):
            yield f"{module_name}.{name}"
            for mname, meth in vars(obj).items():
                if mname.startswith("_"):
                    continue
                if isinstance(meth, (staticmethod, classmethod)):
                    meth = meth.__func__
                if inspect.isfunction(meth):
                    yield f"{module_name}.{name}.{mname}"


def problems(subpackages=()):
    """List ``"name: CODE message"`` for every docstring problem (all subpackages, or those given)."""
    out = []
    for module_name in public_modules():
        if subpackages and not any(module_name.startswith(f"phow_baseline.{s}") for s in subpackages):
            continue
        for qual in public_objects(module_name):
            try:
                res = validate(qual)
            except Exception as exc:  # noqa: BLE001 - a docstring numpydoc cannot parse is a problem too
                out.append(f"{qual}: cannot validate ({type(exc).__name__}: {exc})")
                continue
            for code, msg in res["errors"]:
                if code in CODES:
                    out.append(f"{qual}: {code} {msg}")
    return out


if __name__ == "__main__":
    found = problems(sys.argv[1:])
    for line in found:
        print(line)
    print(f"{len(found)} docstring problem(s)", file=sys.stderr)
    sys.exit(1 if found else 0)
