"""Module paths from before the rooms still import, as the modules they became.

Saved models name their classes by module path (``featurizer._spec.FeatureSpec``), and scripts may
import the old private modules; both keep working. New code imports the rooms' public names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, moved: dict[str, str]) -> None:
        self.moved = moved

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in self.moved else None

    def create_module(self, spec):
        return importlib.import_module(self.moved[spec.name])

    def exec_module(self, module) -> None:
        pass  # the module it became is imported already


def alias_moved_modules(moved: dict[str, str]) -> None:
    """Let each old module name in ``moved`` import as the module it maps to."""
    sys.meta_path.append(_MovedModules(moved))


MOVED = {
    f"featurizer.{old}": f"featurizer.{new}"
    for old, new in {
        "_errors": "base._errors",
        "_storage": "storage._storage",
        "_hashing": "storage._hashing",
        "_atomic": "storage._atomic",
        "_guard": "storage._guard",
        "_csvout": "storage._csvout",
        "_h5": "storage._h5",
        "_registry": "spec._registry",
        "_spec": "spec._spec",
        "_modes": "spec._modes",
        "_weights": "spec._weights",
        "_network": "spec._network",
        "_store": "cache._store",
        "_featurefile": "cache._featurefile",
        "_remote_cache": "cache._remote_cache",
        "_parquet": "cache._parquet",
        "_inputs": "inputs._inputs",
        "_keys": "inputs._keys",
        "_decode": "inputs._decode",
        "_preprocess": "inputs._preprocess",
        "_augment": "inputs._augment",
        "_pooling": "backbones._pooling",
        "_runtime": "backbones._runtime",
        "_clip": "backbones._clip",
        "_backbones": "backbones",
        "_onnx": "backbones._onnx",
        "_resolve": "backbones._resolve",
        "_memory": "engine._memory",
        "_extract": "engine._extract",
        "_shards": "engine._shards",
        "_ray_read": "engine._ray_read",
        "_ray_engine": "engine._ray_engine",
        "_transformer": "transformer",
    }.items()
}
MOVED |= {
    f"pipelines.{old}": f"pipelines.{room}.{old}"
    for room, olds in {
        "report": ("_plots", "_report"),
        "heads": ("_linalg", "_prototype", "_heads", "_calibration", "_targets", "_transferability"),
        "models": ("_saved",),
        "adapt": ("_adapt",),
        "fit": ("_fit", "_tasks", "_fewshot", "_rank", "_zeroshot"),
        "evaluate": ("_slices", "_evalfiles", "_evaluate", "_shift", "_suggest"),
        "audit": ("_audit",),
        "index": ("_index", "_export"),
        "finetune": ("_finetune",),
    }.items()
    for old in olds
}
