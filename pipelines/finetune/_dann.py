"""Adversarial domain adaptation (DANN, Ganin et al. 2016): features a domain classifier cannot tell apart.

Beside the task head, a small classifier learns to tell source features (the labelled training
images) from target features (unlabelled images of where the model will be used). Its gradient
reaches the backbone reversed, so the backbone learns features that serve the task and hide the
domain. The reversal's weight ramps from 0 to ``weight`` over training, as in the paper
(``2 / (1 + exp(-10 p)) - 1`` of progress ``p``), so the first epochs are not driven by a
classifier that knows nothing yet.
"""

from __future__ import annotations

import math

DANN_WEIGHT = 1.0  # the domain loss's weight at the end of training (Ganin et al.'s lambda)
DANN_HIDDEN = 256


def reversal_weight(progress: float, weight: float = DANN_WEIGHT) -> float:
    """Ganin et al.'s ramp: 0 at the start of training, ``weight`` at the end."""
    return weight * (2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0)


def _reverse():
    import torch

    class GradientReversal(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight: float):
            ctx.weight = weight
            return x.view_as(x)

        @staticmethod
        def backward(ctx, grad):
            return -ctx.weight * grad, None

    return GradientReversal


def domain_classifier(dim: int):
    """A two-layer classifier of the domain (one logit: target) over ``dim`` features."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(dim, DANN_HIDDEN), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(DANN_HIDDEN, 1)
    )


def domain_loss(classifier, source, target, weight: float):
    """The domain classifier's loss on a batch of source and of target features, its gradient into
    the features reversed and scaled by ``weight``."""
    import torch

    reverse = _reverse()
    features = torch.cat([source, target])
    labels = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(features.device)
    logits = classifier(reverse.apply(features, weight)).squeeze(1)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
