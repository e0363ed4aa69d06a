"""Conv/Linear + BatchNorm pairs that fold into one layer for deployment."""
from __future__ import annotations

import torch
from torch import nn


class ConvBN(nn.Sequential):
    """Conv2d (no bias) followed by BatchNorm2d; `fuse()` folds them into one biased Conv2d.

    x: (B, in_chs, H, W) -> (B, out_chs, H', W').
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bn_weight_init: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False, **dd)
        self.bn = nn.BatchNorm2d(out_chs, **dd)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv, bn = self.conv, self.bn
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype,
        )
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        return fused


class BNLinear(nn.Sequential):
    """BatchNorm1d followed by Linear (the LeViT-style classifier); `fuse()` folds them into one Linear.

    x: (B, in_features) -> (B, out_features).
    """

    def __init__(self, in_features: int, out_features: int, std: float = 0.02,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.norm = nn.BatchNorm1d(in_features, **dd)
        self.fc = nn.Linear(in_features, out_features, **dd)
        nn.init.trunc_normal_(self.fc.weight, std=std)
        nn.init.zeros_(self.fc.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        bn, fc = self.norm, self.fc
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        shift = bn.bias - bn.running_mean * scale
        fused = nn.Linear(fc.in_features, fc.out_features, device=fc.weight.device, dtype=fc.weight.dtype)
        fused.weight.copy_(fc.weight * scale[None, :])
        fused.bias.copy_(fc.bias + fc.weight @ shift)
        return fused


def _onednn_pointwise():
    """oneDNN's conv with fused post-op (what inductor uses on CPU), or None where this torch build lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._convolution_pointwise.default
    except (AttributeError, RuntimeError):
        return None


class Conv2dReLU(nn.Conv2d):
    """relu(conv(x)) in one oneDNN call on CPU for inference (the ReLU fused as a post-op).

    Only channels_last inputs take the fused call (where it measured faster); others, autograd, tracing/export,
    torch.compile, non-float32 and non-CPU inputs run conv then ReLU, so
    exported graphs and gradients are the standard ones. Built by `lsnet.deploy.fuse` from a fused conv and
    the ReLU after it; same parameters and state-dict keys as the conv.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> Conv2dReLU:
        fused = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            fused.weight.copy_(conv.weight)
            if conv.bias is not None:
                fused.bias.copy_(conv.bias)
        return fused

    def _fast_path_ok(self, x: torch.Tensor) -> bool:
        if _POINTWISE is None or not torch.backends.mkldnn.enabled:  # respect torch.backends.mkldnn.flags()
            return False
        if x.device.type != "cpu" or x.dtype != torch.float32:
            return False
        if not x.is_contiguous(memory_format=torch.channels_last):  # measured faster in channels_last only
            return False
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
            return False
        if torch.compiler.is_compiling() or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return False
        return not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast_path_ok(x):
            return _POINTWISE(x, self.weight, self.bias, list(self.padding), list(self.stride), list(self.dilation),
                              self.groups, "relu", [None], "")
        return torch.relu(super().forward(x))


_POINTWISE = _onednn_pointwise()
if _POINTWISE is not None:
    from torch.utils.flop_counter import register_flop_formula

    @register_flop_formula(_POINTWISE.overloadpacket)
    def _pointwise_conv_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        """Same count as a plain conv (2 per multiply-add), so FLOP counts see fused models unchanged."""
        out_elements = 1
        for dim in out_shape:
            out_elements *= dim
        return 2 * out_elements * w_shape[1] * w_shape[2] * w_shape[3]
