"""Packages whose names are imported on first use (PEP 562), as ``pneumonia_cnn`` itself is:
``from pneumonia_cnn.estimator import check_settings`` must not load TensorFlow, which only
the modules that build or run a network need."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

__all__ = ["guarded_imports", "lazy_exports"]


def lazy_exports(package: str):
    """``__getattr__`` and ``__dir__`` for ``package``: each name that its
    ``if TYPE_CHECKING:`` block imports from one of its modules (``from ._module import
    name``) is imported from that module when first asked for, then kept in the package.
    That block is the one list of the package's names: documentation and type checkers read
    it too.

    Examples
    --------
    At the end of a package's ``__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__)

        if TYPE_CHECKING:
            from ._classifier import PneumoniaCNN
    """
    exports = guarded_imports(sys.modules[package].__file__)

    def __getattr__(name):
        if name in exports:
            value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__


def guarded_imports(path) -> dict[str, str]:
    """``{name: "_module"}`` of the ``from ._module import name`` lines in the top-level
    ``if TYPE_CHECKING:`` block of the Python file ``path``."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    return {alias.asname or alias.name: node.module
            for block in tree.body if isinstance(block, ast.If)
            and getattr(block.test, "id", None) == "TYPE_CHECKING"
            for node in block.body if isinstance(node, ast.ImportFrom) and node.level == 1
            for alias in node.names}
