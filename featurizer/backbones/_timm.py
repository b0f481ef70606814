"""timm image models: their feature stages, the final feature map and the pre-logits vector.

timm's own ``forward_intermediates`` / ``forward_head(pre_logits=True)`` contract gives every
layer from one pass; the layers and preprocessing of a model not in the registry come from a
weightless skeleton and timm's ``resolve_model_data_config``.
"""

from __future__ import annotations

from collections.abc import Sequence

from featurizer.backbones._base import (
    Backbone,
    Family,
    describe_by_skeleton,
    load_checkpoint,
    register_family,
    require,
    torch,
)
from featurizer.base import UnknownModelError
from featurizer.spec import BackboneConfig, WeightsRef, not_cached, offline


class TimmBackbone(Backbone):
    """A timm image model: its feature stages, the final feature map and the pre-logits vector."""

    def _stage_names(self) -> list[str]:
        return [info["module"] for info in self.model.feature_info]

    def _layer_names(self) -> list[str]:
        stages = self._stage_names() if hasattr(self.model, "forward_intermediates") else []
        return [*stages, "features", "pre_logits"]

    def _forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        stages = self._stage_names()
        wanted = sorted(stages.index(name) for name in layers if name in stages)
        need_final = any(name in ("features", "pre_logits") for name in layers)
        out: dict[str, torch.Tensor] = {}
        final = None
        if wanted:
            result = self.model.forward_intermediates(
                x, indices=wanted, intermediates_only=not need_final, stop_early=not need_final
            )
            final, maps = result if need_final else (None, result)
            out.update({stages[i]: t for i, t in zip(wanted, maps)})
        elif need_final:
            final = self.model.forward_features(x)
        if "features" in layers:
            out["features"] = final
        if "pre_logits" in layers:
            out["pre_logits"] = self.model.forward_head(final, pre_logits=True)
        return out


def build_timm(config: BackboneConfig, weights: WeightsRef) -> Backbone:
    pretrained = weights.kind == "pretrained"
    if pretrained:
        offline()  # decided once, before timm reads it; offline, timm reads only its local cache
    timm = require("timm", "timm")
    try:
        model = timm.create_model(config.arch, pretrained=pretrained)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise UnknownModelError(f"timm has no model {config.arch!r} (see timm.list_models())") from None
        raise
    except OSError as err:
        raise not_cached(f"the weights of timm/{config.arch}", err) from None
    if weights.kind == "file":
        load_checkpoint(model, weights.location, by_order=config.extra.get("checkpoint_format") is not None)
    prep = config.preprocessing or _plain(timm.data.resolve_model_data_config(model))
    return TimmBackbone(config, weights, model, prep)


def _plain(data_config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()}


register_family(Family("timm", lambda c: c.library == "timm", build_timm, describe_by_skeleton))
