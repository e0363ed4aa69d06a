"""Fold every fusable layer of a model for inference.

    from lsnet.deploy import fuse
    fused = fuse(model)   # a fused copy in eval mode; model is untouched

Folds Conv-BN pairs into biased convs, BN-Linear heads into Linear, and RepVGG-DW branches (3x3 + 1x1 +
identity) into one 3x3 depthwise conv, through the same `fuse()` hooks that `timm.utils.reparameterize_model`
walks, so either entry point gives the same outputs. `fuse` additionally turns declared conv -> ReLU pairs into
one oneDNN call (faster channels_last inference on CPU). Fusing an already-fused model changes nothing.
"""
from __future__ import annotations

import copy

from timm.utils import reparameterize_model
from torch import nn

from ..layers.conv_bn import Conv2dReLU

__all__ = ["fuse", "fuse_activations", "is_fused"]


def is_fused(model: nn.Module) -> bool:
    """True when no submodule has anything left to fold."""
    return not any(hasattr(m, "fuse") for m in model.modules())


def fuse(model: nn.Module, inplace: bool = False, activations: bool = True) -> nn.Module:
    """Return `model` with every Conv-BN / BN-Linear / RepVGG-DW folded, in eval mode (dtype and device kept).

    With `activations`, conv -> ReLU pairs that blocks declare in `conv_act_pairs` also become one
    `Conv2dReLU` (oneDNN post-op fusion on CPU inference; standard ops for autograd and export).
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    model = reparameterize_model(model, inplace=True)
    return fuse_activations(model) if activations else model


def fuse_activations(model: nn.Module) -> nn.Module:
    """In place: replace each declared (conv, ReLU) pair of plain modules by Conv2dReLU and Identity.

    Blocks declare pairs as dotted paths relative to themselves: `conv_act_pairs = (("pw1", "act"),)`.
    Pairs whose conv is not (yet) a plain nn.Conv2d, e.g. an unfused ConvBN, are left alone.
    """
    for module in list(model.modules()):
        for conv_path, act_path in getattr(module, "conv_act_pairs", ()):
            conv, act = module.get_submodule(conv_path), module.get_submodule(act_path)
            if type(conv) is not nn.Conv2d or not isinstance(act, nn.ReLU):
                continue
            module.set_submodule(conv_path, Conv2dReLU.from_conv(conv))
            module.set_submodule(act_path, nn.Identity())
    return model
