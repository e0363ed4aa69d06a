"""An LS convolution as a compact inference graph: SKA as one gather conv + mul + reduce, BN and GN affine folded.

    from lsnet.deploy.ska_graph import with_compact_ska
    deployed = with_compact_ska(model)   # a copy, every LSConv replaced; model untouched

`LSConv` computes out = x + BN(SKA(x, gamma * n + beta)) with n = GroupNorm's normalised LKP logits (per weight
channel j, over its k*k taps and all pixels), gamma / beta GroupNorm's affine per tap channel and BN in eval
mode (scale s, shift b per channel). Channel c = g * CW + j uses weight channel j. Expanding SKA's sum over taps t:

    out[c] = sum_t n[j, t] * (s[c] gamma[j, t] * x[c] shifted by t)      dynamic: gather conv, mul, reduce-sum
           + sum_t (s[c] beta[j, t] + [t is the centre]) * x[c] shifted by t + b[c]     static depthwise conv

The gather conv is a depthwise conv with k*k outputs per channel whose kernels are one-hot at tap t, scaled by
s * gamma; the static conv carries beta, the BN shift and the residual. GroupNorm's mean and variance are per
sample, so they stay (as one affine-free layer norm over each weight channel's taps x pixels). Exported to ONNX
each LS conv's SKA + BN + GroupNorm is LayerNormalization, two Convs, Mul, ReduceSum, Add and a few Reshapes,
instead of k*k Slices + Muls + Adds, Pads and a BatchNormalization. Inference only: no drop path.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..layers.lsconv import LSConv
from .fuse import fuse

__all__ = ["CompactLSConv", "with_compact_ska"]


class CompactLSConv(nn.Module):
    """An eval-mode LSConv rewritten for export: same outputs, standard ops only. Build with `from_lsconv`.

    x: (B, dim, H, W) -> (B, dim, H, W).
    """

    def __init__(self, dim: int, weight_chs: int, small_kernel: int, perceive: nn.Module, norm_eps: float,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.weight_chs = weight_chs
        self.taps = small_kernel * small_kernel
        self.norm_eps = norm_eps
        self.perceive = perceive  # LKP up to its GroupNorm: (B, dim, H, W) -> logits (B, weight_chs * taps, H, W)
        padding = small_kernel // 2
        # output channel c * taps + t: channel c shifted by tap t, scaled by s[c] * gamma[c % weight_chs, t]
        self.gather = nn.Conv2d(dim, dim * self.taps, small_kernel, padding=padding, groups=dim, bias=False, **dd)
        self.static = nn.Conv2d(dim, dim, small_kernel, padding=padding, groups=dim, **dd)

    @classmethod
    @torch.no_grad()
    def from_lsconv(cls, lsconv: LSConv) -> CompactLSConv:
        """Fold `lsconv`'s BN (after SKA) and GroupNorm affine into the two convs; `lsconv` must be in eval mode."""
        if lsconv.training:
            raise ValueError("CompactLSConv.from_lsconv: the LSConv is in training mode (BN uses batch statistics); "
                             "call model.eval() first")
        lkp, bn = fuse(lsconv.lkp), lsconv.norm
        group_norm = lkp.norm
        param = lkp.to_weights.weight
        dim, weight_chs, taps, k = bn.num_features, lkp.weight_chs, lkp.taps, lkp.small_kernel
        perceive = nn.Sequential(lkp.pw_in, lkp.act_in, lkp.dw_large, lkp.pw_mid, lkp.act_mid, lkp.to_weights)
        compact = cls(dim, weight_chs, k, perceive, group_norm.eps, device=param.device, dtype=param.dtype)

        f64 = dict(dtype=torch.float64, device=param.device)
        scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()  # (dim,)
        shift = bn.bias.double() - bn.running_mean.double() * scale
        gamma = group_norm.weight.double() if group_norm.affine else torch.ones(weight_chs * taps, **f64)
        beta = group_norm.bias.double() if group_norm.affine else torch.zeros(weight_chs * taps, **f64)
        weight_of_channel = torch.arange(dim, device=param.device) % weight_chs
        gamma = gamma.view(weight_chs, taps)[weight_of_channel] * scale[:, None]  # (dim, taps)
        beta = beta.view(weight_chs, taps)[weight_of_channel] * scale[:, None]
        one_hot = torch.eye(taps, **f64).view(1, taps, k, k)
        compact.gather.weight.copy_((gamma[:, :, None, None] * one_hot).reshape(dim * taps, 1, k, k))
        static = beta.clone()
        static[:, taps // 2] += 1.0  # the residual x
        compact.static.weight.copy_(static.view(dim, 1, k, k))
        compact.static.bias.copy_(shift)
        return compact.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        logits = self.perceive(x).reshape(-1, 1, self.weight_chs, self.taps, height, width)
        # GroupNorm(weight_chs groups) without affine: normalise each weight channel over taps x pixels
        weights = nn.functional.layer_norm(logits, (self.taps, height, width), eps=self.norm_eps)
        groups = self.gather.in_channels // self.weight_chs
        shifted = self.gather(x).reshape(-1, groups, self.weight_chs, self.taps, height, width)
        mixed = (shifted * weights).sum(3).flatten(1, 2)  # (B, dim, H, W)
        return mixed + self.static(x)


def with_compact_ska(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) with every LSConv replaced by its CompactLSConv; `model` is untouched."""
    model = copy.deepcopy(model).eval()
    if isinstance(model, LSConv):
        return CompactLSConv.from_lsconv(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, LSConv):
            model.set_submodule(name, CompactLSConv.from_lsconv(module))
    return model
