"""Packages whose names are imported on first use (PEP 562), as ``pneumonia_cnn`` itself is:
``from pneumonia_cnn.estimator import check_settings`` must not load TensorFlow, which only
the modules that build or run a network need."""

from __future__ import annotations

import importlib
import sys

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package``: each name of ``exports`` (name ->
    private module of the package) is imported from its module when first asked for, then
    kept in the package.

    Examples
    --------
    In a package's ``__init__.py``, beside an ``if TYPE_CHECKING:`` block with the same
    imports written out (for documentation and type checkers)::

        __getattr__, __dir__ = lazy_exports(__name__, {"PneumoniaCNN": "_classifier"})
    """

    def __getattr__(name):
        if name in exports:
            value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
