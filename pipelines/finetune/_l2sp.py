"""L2-SP (Li, Grandvalet and Davoine, 2018): fine-tuned weights pulled toward where they started.

Plain weight decay pulls every weight toward zero, which on a pretrained network means toward
forgetting what it knew. L2-SP replaces it, for the backbone, by ``alpha / 2 * ||w - w0||^2``
over the weights being trained, ``w0`` the pretrained values; the new head keeps ordinary weight
decay. Only trainable parameters count, so a frozen stage adds nothing and costs nothing.
"""

from __future__ import annotations

REGULARIZERS = ("none", "l2sp")
L2SP_ALPHA = 0.01  # the pull toward the start: tllib's default trade-off for L2-SP


class StartingPoint:
    """The backbone's parameters as training found them, and the L2-SP penalty of a step."""

    def __init__(self, network, alpha: float = L2SP_ALPHA):
        self.alpha = alpha
        self.named = dict(network.named_parameters())
        self.start = {name: p.detach().clone() for name, p in self.named.items()}

    def penalty(self):
        """``alpha / 2`` times the squared distance of the trainable parameters from their start."""
        total = None
        for name, p in self.named.items():
            if p.requires_grad:
                term = (p - self.start[name]).pow(2).sum()
                total = term if total is None else total + term
        return 0.0 if total is None else self.alpha / 2 * total
