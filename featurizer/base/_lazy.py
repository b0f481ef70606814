"""Heavy third-party libraries imported when first used, so that importing featurizer stays fast.

A cached run never needs torch: modules that use it hold ``torch = lazy_module("torch")`` and
torch is imported at the first attribute asked of it.
"""

from __future__ import annotations

import importlib
import types


class _LazyModule(types.ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)

    def __getattr__(self, attr: str):
        module = importlib.import_module(self.__name__)
        return getattr(module, attr)


def lazy_module(name: str) -> types.ModuleType:
    """A stand-in for the module ``name`` that imports it at the first attribute asked of it."""
    return _LazyModule(name)
