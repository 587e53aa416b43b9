"""Old import paths: the modules of pneumonia-cnn 0.1 before the subpackages.

``from pneumonia_cnn.calibration import calibrate`` and friends keep working: each old module
name is answered by a read-only alias module that looks names up in the subpackage(s) that
now hold them. Models logged to MLflow before the move name their pyfunc class as
``pneumonia_cnn.serving.PneumoniaPyfunc``; they load through the same alias. New code should
import from the subpackages (see the docs' API reference).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

__all__ = ["MOVED", "install"]

#: old module (under ``pneumonia_cnn.``) -> the subpackages that now hold its names
MOVED = {
    "adaptation": ("analysis",), "calibration": ("analysis",), "explain": ("analysis",),
    "evaluation": ("analysis", "metrics"), "robustness": ("analysis",),
    "wrappers": ("analysis",), "search": ("tracking",), "registry": ("tracking",),
    "serving": ("tracking",), "fit_run": ("tracking",), "sources": ("data",),
    "synthetic": ("data",), "streaming": ("data",), "dicom": ("data",), "batches": ("data",),
    "limits": ("data",), "model": ("network",), "augmentation": ("network",),
    "preprocessing": ("network",), "plots": ("metrics",), "scores": ("metrics",),
    "folders": ("estimator",), "quiet": ("utils",), "dask_plugin": ("cluster",),
}


class _Alias(types.ModuleType):
    def __getattr__(self, name):
        for target in self.__targets__:
            module = importlib.import_module(target)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"{self.__name__} (moved to {', '.join(self.__targets__)}) has "
                             f"no attribute {name!r}")


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, package: str):
        self.package = package

    def find_spec(self, fullname, path=None, target=None):
        head, _, old = fullname.rpartition(".")
        if head != self.package or old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = _Alias(spec.name, __doc__)
        old = spec.name.rpartition(".")[2]
        module.__targets__ = tuple(f"{self.package}.{t}" for t in MOVED[old])
        return module

    def exec_module(self, module):
        pass


def install(package: str) -> None:
    """Answer ``<package>.<old name>`` imports with alias modules (once)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder(package))
