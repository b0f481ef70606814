"""LoRA adapters (Hu et al. 2021) through peft, merged back so the saved backbone needs no peft.

A low-rank update ``B A`` (rank ``r``) is trained beside each frozen weight it targets; at the end
it is added into the weight and the adapter layers removed, so the tuned folder is an ordinary
backbone with the base model's parameter names. Images: the 1x1 convolutions and linear layers of
the stages being tuned (peft's Conv2d LoRA; depthwise convolutions are left out, their weights are
tiny already). Texts: the attention's query, key and value projections.
"""

from __future__ import annotations

from featurizer import FeaturizerError

ADAPTERS = ("none", "lora")
LORA_RANK = 8
TEXT_TARGETS = ("query", "key", "value")


def _config(rank: int, targets: list[str]):
    try:
        from peft import LoraConfig
    except ImportError:
        raise FeaturizerError("--adapter lora needs peft: pip install 'featurizer[tune]'") from None
    return LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets, bias="none")


def image_targets(network, stages: list[list[str]]) -> list[str]:
    """Names of the modules LoRA adapts in ``stages``: their 1x1 convolutions (groups 1) and linear layers."""
    import torch

    owned = {name.rsplit(".", 1)[0] for stage in stages for name in stage}
    targets = []
    for name, module in network.named_modules():
        if name not in owned:
            continue
        if isinstance(module, torch.nn.Linear) or (
            isinstance(module, torch.nn.Conv2d) and module.groups == 1 and module.kernel_size == (1, 1)
        ):
            targets.append(name)
    return targets


def add_image_lora(network, stages: list[list[str]], rank: int = LORA_RANK) -> list[list[str]]:
    """Inject LoRA into the image ``network`` (in place); the stages as lists of their LoRA parameters'
    names, top first, for gradual unfreezing. Base weights stay frozen for good."""
    from peft import inject_adapter_in_model

    targets = image_targets(network, stages)
    owner = {name.rsplit(".", 1)[0]: k for k, stage in enumerate(stages) for name in stage}
    inject_adapter_in_model(_config(rank, targets), network)
    adapted = [[] for _ in stages]
    for name, _ in network.named_parameters():
        if ".lora_" in name:
            adapted[owner[name.split(".lora_")[0]]].append(name)
    return adapted


def merge_lora(network):
    """Add every LoRA update into its base weight and put the base layer back in place (in place)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(network.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = network.get_submodule(parent_name) if parent_name else network
            setattr(parent, child, module.get_base_layer())
    return network


def add_text_lora(encoder, rank: int = LORA_RANK):
    """A peft model over the text ``encoder`` with LoRA on attention's query, key and value."""
    from peft import get_peft_model

    return get_peft_model(encoder, _config(rank, list(TEXT_TARGETS)))


def trainable_parameters(*modules) -> int:
    """How many parameters of ``modules`` train (requires_grad)."""
    return int(sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad))
