"""DCNv3 layer as used by UniConvNet (InternImage's DCNv3 without the softmax and without LN/GELU on the offset branch).

The sampling itself is `lsnet.ops.dcnv3.dcnv3`; this module holds the projections around it.
"""

import torch
from torch import nn

from ..ops.dcnv3 import dcnv3
from ._fx import fx_tracing

__all__ = ["DCNv3"]


class DCNv3(nn.Module):
    """Deformable convolution v3 (UniConvNet variant), channels-last, stride 1, 'same' output size.

    x: (B, H, W, dim) -> (B, H, W, dim).
        value  = input_proj(x)                                   Linear(dim, dim)
        f      = dw_conv(x)                                      depthwise k_dw x k_dw conv on the *input* x
        offset = offset_proj(f)  (B, H, W, group * k*k * 2)      (x, y) per sampling point, in pixels
        mask   = mask_proj(f)    (B, H, W, group * k*k)          used raw (no softmax)
        out    = output_proj(dcnv3(value, offset, mask))         Linear(dim, dim)
    Each of the `group` groups (dim // group channels) has its own offsets and mask. Official key names:
    `dw_conv.0`, `offset`, `mask`, `input_proj`, `output_proj` (UniConvNet's checkpoint filter maps them).
    Init (`reset_parameters`, as official): offset/mask projections zero (so the layer starts as a regular k x k
    sampling with zero mask), input/output projections xavier-uniform, biases zero; dw_conv PyTorch default.
    """

    def __init__(self, dim: int, group: int, kernel_size: int = 3, dilation: int = 1, offset_scale: float = 1.0,
                 dw_kernel_size: int | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if group < 1 or dim % group:
            raise ValueError(f"DCNv3: dim ({dim}) must be divisible by group ({group}); pick group = dim // width")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"DCNv3: kernel_size must be odd for a 'same'-size output; got {kernel_size}")
        dw_kernel_size = kernel_size if dw_kernel_size is None else dw_kernel_size
        self.dim = dim
        self.group = group
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.pad = dilation * (kernel_size - 1) // 2
        self.offset_scale = offset_scale
        points = kernel_size * kernel_size
        self.input_proj = nn.Linear(dim, dim, **dd)
        self.dw_conv = nn.Conv2d(dim, dim, dw_kernel_size, padding=(dw_kernel_size - 1) // 2, groups=dim, **dd)
        self.offset_proj = nn.Linear(dim, group * points * 2, **dd)
        self.mask_proj = nn.Linear(dim, group * points, **dd)
        self.output_proj = nn.Linear(dim, dim, **dd)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Official init of the four linear layers (dw_conv is left as is)."""
        for layer in (self.offset_proj, self.mask_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        for layer in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # noqa: SIM102  (TorchScript skips only a bare is_scripting() branch)
            if not fx_tracing() and (x.dim() != 4 or x.shape[-1] != self.dim):
                raise ValueError(f"DCNv3: expected channels-last input (B, H, W, {self.dim}); got {tuple(x.shape)}")
        value = self.input_proj(x)
        features = self.dw_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        out = _sample(value, self.offset_proj(features), self.mask_proj(features), self.kernel_size, self.pad,
                      self.dilation, self.group, self.offset_scale)
        return self.output_proj(out)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, group={self.group}, kernel_size={self.kernel_size}, dilation={self.dilation}"


@torch.jit.ignore
def _sample(value: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: int, pad: int, dilation: int,
            group: int, offset_scale: float) -> torch.Tensor:
    """The sampling op (stride 1). A leaf for torch.fx (its shape checks cannot trace) and a Python call under
    TorchScript (the op is not scriptable), so a scripted model runs in-process but cannot be `torch.jit.save`d."""
    return dcnv3(value, offset, mask, kernel_size=kernel_size, stride=1, pad=pad, dilation=dilation, group=group,
                 offset_scale=offset_scale)


torch.fx.wrap("_sample")
