"""Deployment: fold every fusable layer of a model for inference.

    from lsnet.deploy import fuse
    fused = fuse(model)          # a fused copy in eval mode; model is untouched

Folds Conv-BN pairs into biased convs, BN-Linear heads into Linear, and RepVGG-DW branches (3x3 + 1x1 +
identity) into one 3x3 depthwise conv, through the same `fuse()` hooks that `timm.utils.reparameterize_model`
walks, so either entry point gives the same model. Fusing an already-fused model changes nothing.
"""
from __future__ import annotations

import copy

from timm.utils import reparameterize_model
from torch import nn

__all__ = ["fuse", "is_fused"]


def is_fused(model: nn.Module) -> bool:
    """True when no submodule has anything left to fold."""
    return not any(hasattr(m, "fuse") for m in model.modules())


def fuse(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return `model` with every Conv-BN / BN-Linear / RepVGG-DW folded, in eval mode (dtype and device kept)."""
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    return reparameterize_model(model, inplace=True)
