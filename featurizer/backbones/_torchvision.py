"""torchvision classifiers, which have no layer contract: tapped with forward hooks on their
top-level blocks and on the classifier's input (pre-logits)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from featurizer.backbones._base import (
    Backbone,
    Family,
    describe_by_skeleton,
    load_checkpoint,
    nn,
    register_family,
    torch,
)
from featurizer.base import FeaturizerError, UnknownModelError
from featurizer.spec import BackboneConfig, WeightsRef, not_cached, offline


class TorchvisionBackbone(Backbone):
    """A torchvision classifier tapped with hooks: its top-level blocks and the classifier's input."""

    def __init__(self, config: BackboneConfig, weights: WeightsRef, model: nn.Module, preprocessing: dict):
        self._captured: dict[str, torch.Tensor] = {}
        self._wanted: set[str] = set()
        head_name, self._blocks = _torchvision_blocks(model, config.name)
        for name, module in self._blocks.items():
            module.register_forward_hook(self._capture_output(name))
        head = model.get_submodule(head_name)
        head.register_forward_pre_hook(lambda _m, args: self._keep("pre_logits", args[0].flatten(1)))
        super().__init__(config, weights, model, preprocessing)

    def _layer_names(self) -> list[str]:
        return [*self._blocks, "pre_logits"]

    def _capture_output(self, name: str):
        return lambda _m, _args, output: self._keep(name, output)

    def _keep(self, name: str, value: torch.Tensor) -> None:
        if name in self._wanted:
            self._captured[name] = value

    def _forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        self._wanted, self._captured = set(layers), {}
        try:
            self.model(x)
            return {name: self._captured[name] for name in layers}
        finally:
            self._wanted, self._captured = set(), {}


def _torchvision_blocks(model: nn.Module, name: str) -> tuple[str, dict[str, nn.Module]]:
    """The classifier's name and the blocks before it (children with weights; ``features`` split)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise FeaturizerError(f"{name} has no linear classifier to take pre-logits from")
    head = linears[-1]
    blocks: dict[str, nn.Module] = {}
    for child_name, child in model.named_children():
        if head == child_name or head.startswith(child_name + "."):
            break
        split = child_name == "features" and isinstance(child, nn.Sequential)
        for sub, module in child.named_children() if split else [("", child)]:
            if any(True for _ in module.parameters()):
                blocks[f"{child_name}.{sub}" if sub else child_name] = module
    return head, blocks


def build_torchvision(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    from torchvision import models

    try:
        enum = models.get_model_weights(config.arch)
    except (ValueError, KeyError):
        raise UnknownModelError(
            f"torchvision has no model {config.arch!r} (see torchvision.models.list_models())"
        ) from None
    pretrained = weights.kind == "pretrained"
    if pretrained and offline() and not torch_hub_has(enum.DEFAULT.url):
        raise not_cached(f"the weights of torchvision/{config.arch}")
    try:
        model = models.get_model(config.arch, weights=enum.DEFAULT if pretrained else None)
    except OSError as err:  # urllib errors are OSErrors
        raise not_cached(f"the weights of torchvision/{config.arch}", err) from None
    if weights.kind == "file":
        load_checkpoint(model, weights.location)
    tf = enum.DEFAULT.transforms()
    prep = config.preprocessing or {
        "input_size": [3, tf.crop_size[0], tf.crop_size[0]],
        "resize": tf.resize_size[0],
        "interpolation": tf.interpolation.value,
        "mean": list(tf.mean),
        "std": list(tf.std),
        "weights": str(enum.DEFAULT),
    }
    return TorchvisionBackbone(config, weights, model, prep)


def torch_hub_has(url: str) -> bool:
    """Whether torch.hub already holds the file that ``url`` downloads."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


register_family(Family("torchvision", lambda c: c.library == "torchvision", build_torchvision, describe_by_skeleton))
