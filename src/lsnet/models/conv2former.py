"""Conv2Former: A Simple Transformer-Style ConvNet for Visual Recognition (Hou et al., TPAMI 2024), for timm.

Architecture as the official PyTorch code implements it (HVision-NKU/Conv2Former @ 94fd1c4): a stride-4 stem
(conv3x3 s2 -> GELU -> BN -> conv3x3 -> GELU -> BN -> conv2x2 s2), four stages of convolutional-modulation blocks
behind LayerNorm + 2x2 stride-2 downsamplers, and a 1x1 conv head (C4 -> 1280) -> GELU -> LayerNorm -> global
average pool -> linear classifier. Every LayerNorm is channels-first with eps 1e-6.

Block (paper §3.2, Eqs. 3-5), x: (B, C, H, W):
    x = x + drop_path(ls1 * ConvMod(LN(x))),  ConvMod(x) = proj(A ⊙ V),  A = DWConv_kxk(GELU(W1 x)),  V = W2 x
    x = x + drop_path(ls2 * MLP(LN(x))),      MLP = fc1 -> GELU -> (+ GELU(DWConv3x3)) -> fc2
with layer scales initialised to 1e-6 and a linear drop-path schedule over all blocks.

Variants: `conv2former_n/t/s/b/l` and `conv2former_b_22k` are the official entrypoints (N and B-22k use 7x7
kernels, T/S/B/L 11x11; discrepancy 7). `conv2former_is` / `conv2former_ib` are the isotropic (ViT-style) models
of the paper's Table 7, which the official code does not contain: they are defined here from the paper's text
(18 blocks, 16x16 patch embedding; widths 320 / 640 chosen so that params and FLOPs match the table) and have
no released weights. `conv2former_test` is a tiny model for tests.

Released weights (Baidu Pan links in the official README) are timm CheckpointSaver files; load one with

    import lsnet, timm
    model = timm.create_model('conv2former_t', pretrained=True, pretrained_cfg_overlay=dict(file='conv2former_t.pth'))

which reads the non-EMA 'state_dict' entry (pass `checkpoint_entry='state_dict_ema'` for the EMA weights).
Pre-processing: the official model cfg (and so timm's train/validate scripts) uses mean = std = 0.5, while the
official README tells users to normalise with ImageNet mean/std; which one the released weights expect is not
documented (discrepancy 9). The cfgs here follow the code (0.5); override `mean`/`std` if accuracy looks low.
"""
from collections import OrderedDict
from collections.abc import Mapping

import torch
from timm.layers import DropPath, LayerNorm2d, LayerScale2d, SelectAdaptivePool2d, trunc_normal_
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from torch import nn

from ._builder import build_model
from ._features import stage_intermediates
from ._helpers import check_weight_source, drop_path_rates, rename_key

__all__ = ["Conv2Former", "Conv2FormerIsotropic", "checkpoint_filter_fn"]

FUSION_MODES = ("hadamard", "sum", "sigmoid")
LN_EPS = 1e-6
_Device = torch.device | str | None


# ----------------------------------------------------------------------------------------------------- blocks
class ConvMod(nn.Module):
    """Convolutional modulation (paper §3.2): Z = proj(A ⊙ V), A = DWConv_kxk(GELU(W1 x)), V = W2 x.

    `fusion` selects how A and V are combined, for the paper's ablation (§4.3, Fig. 4b and Table 6, Conv2Former-T
    top-1): 'hadamard' A ⊙ V (the model, 83.2%), 'sum' A + V (82.7%), 'sigmoid' sigmoid(A) ⊙ V (82.3%).
    x: (B, dim, H, W) -> (B, dim, H, W).
    """

    def __init__(self, dim: int, kernel_size: int = 11, fusion: str = "hadamard", device: _Device = None,
                 dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if fusion not in FUSION_MODES:
            raise ValueError(f"ConvMod: fusion must be one of {FUSION_MODES}; got {fusion!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"ConvMod: kernel_size must be odd (same-size padding); got {kernel_size}")
        self.fusion = fusion
        self.norm = LayerNorm2d(dim, eps=LN_EPS, **dd)
        self.a_proj = nn.Conv2d(dim, dim, 1, **dd)  # W1
        self.a_act = nn.GELU()
        self.a_conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, **dd)  # DWConv k x k
        self.v_proj = nn.Conv2d(dim, dim, 1, **dd)  # W2
        self.proj = nn.Conv2d(dim, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        a = self.a_conv(self.a_act(self.a_proj(x)))
        v = self.v_proj(x)
        if self.fusion == "hadamard":
            x = a * v
        elif self.fusion == "sum":
            x = a + v
        else:
            x = torch.sigmoid(a) * v
        return self.proj(x)


class ConvMlp(nn.Module):
    """LN -> fc1 (1x1) -> GELU -> y + GELU(DWConv3x3(y)) -> fc2 (1x1). x: (B, dim, H, W)."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, device: _Device = None, dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm = LayerNorm2d(dim, eps=LN_EPS, **dd)
        self.fc1 = nn.Conv2d(dim, hidden, 1, **dd)
        self.act = nn.GELU()
        self.pos_conv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, **dd)
        self.fc2 = nn.Conv2d(hidden, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(self.norm(x)))
        x = x + self.act(self.pos_conv(x))
        return self.fc2(x)


class Conv2FormerBlock(nn.Module):
    """x + drop_path(ls1 * ConvMod(x)), then x + drop_path(ls2 * MLP(x)); pre-norm lives in ConvMod and MLP."""

    def __init__(
        self,
        dim: int,
        kernel_size: int = 11,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        fusion: str = "hadamard",
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.mixer = ConvMod(dim, kernel_size, fusion, **dd)
        self.ls1 = LayerScale2d(dim, layer_scale_init_value, **dd)
        self.mlp = ConvMlp(dim, mlp_ratio, **dd)
        self.ls2 = LayerScale2d(dim, layer_scale_init_value, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.mixer(x)))
        return x + self.drop_path(self.ls2(self.mlp(x)))


def conv_stem(in_chans: int, out_chs: int, device: _Device = None, dtype: torch.dtype | None = None) -> nn.Sequential:
    """Stride-4 stem: conv3x3 s2 -> GELU -> BN -> conv3x3 -> GELU -> BN -> conv2x2 s2 (activation before BN)."""
    dd = dict(device=device, dtype=dtype)
    mid = out_chs // 2
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(in_chans, mid, 3, stride=2, padding=1, bias=False, **dd)),
        ("act1", nn.GELU()),
        ("norm1", nn.BatchNorm2d(mid, **dd)),
        ("conv2", nn.Conv2d(mid, mid, 3, padding=1, bias=False, **dd)),
        ("act2", nn.GELU()),
        ("norm2", nn.BatchNorm2d(mid, **dd)),
        ("conv3", nn.Conv2d(mid, out_chs, 2, stride=2, bias=False, **dd)),
    ]))


class Downsample(nn.Module):
    """LayerNorm (channels-first) -> 2x2 stride-2 conv."""

    def __init__(self, in_chs: int, out_chs: int, device: _Device = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.norm = LayerNorm2d(in_chs, eps=LN_EPS, device=device, dtype=dtype)
        self.conv = nn.Conv2d(in_chs, out_chs, 2, stride=2, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


class Conv2FormerStage(nn.Module):
    """Optional downsampler followed by `depth` blocks."""

    def __init__(self, in_chs: int, out_chs: int, depth: int, downsample: bool, drop_path: list[float],
                 device: _Device = None, dtype: torch.dtype | None = None, **block_kw):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = Downsample(in_chs, out_chs, **dd) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[Conv2FormerBlock(out_chs, drop_path=drop_path[i], **dd, **block_kw)
                                      for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class ConvHead(nn.Module):
    """conv1x1 (in -> hidden) -> GELU -> LayerNorm -> global pool -> dropout -> fc, on the final feature map.

    `pre_logits=True` returns the pooled (B, hidden) features. `hidden=0` drops the conv/LN part (pool -> fc).
    """

    def __init__(self, in_chs: int, hidden: int, num_classes: int, global_pool: str = "avg", drop_rate: float = 0.0,
                 device: _Device = None, dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if hidden > 0:
            self.conv = nn.Conv2d(in_chs, hidden, 1, **dd)
            self.act = nn.GELU()
            self.norm = LayerNorm2d(hidden, eps=LN_EPS, **dd)
        else:
            self.conv, self.act, self.norm = nn.Identity(), nn.Identity(), nn.Identity()
        self.hidden_size = hidden if hidden > 0 else in_chs
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.hidden_size, num_classes, **dd) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        param = next(self.parameters(), None)
        dd = dict(device=param.device, dtype=param.dtype) if param is not None else {}
        self.fc = nn.Linear(self.hidden_size, num_classes, **dd) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(self.norm(self.act(self.conv(x))))
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


def _init_weights(module: nn.Module) -> None:
    """Official init: trunc_normal(.02) for every conv / linear weight, zero biases (LN, BN keep 1 / 0)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _check_fusion(fusion: str) -> None:
    if fusion not in FUSION_MODES:
        raise ValueError(f"Conv2Former: fusion must be one of {FUSION_MODES}; got {fusion!r}")


# ---------------------------------------------------------------------------------------------- hierarchical
class Conv2Former(nn.Module):
    """Hierarchical Conv2Former (paper Fig. 2, Table 1).

    Args:
        in_chans, num_classes, global_pool: timm conventions.
        dims, depths: per-stage widths and block counts.
        kernel_size: depthwise kernel of ConvMod (official: 7 for N and B-22k, 11 otherwise).
        mlp_ratio: MLP expansion (4).
        head_hidden_dim: width of the 1x1 conv head (1280; 0 = plain pool + linear head).
        drop_rate: dropout before the classifier (unused officially, 0).
        drop_path_rate: stochastic depth, linear 0 -> rate over all blocks.
        layer_scale_init_value: initial layer scale (1e-6; the official code hard-codes it).
        fusion: 'hadamard' (the model) | 'sum' | 'sigmoid', for the paper's fusion ablation (see ConvMod).
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        dims: tuple[int, ...] = (64, 128, 256, 512),
        depths: tuple[int, ...] = (2, 2, 8, 2),
        kernel_size: int = 11,
        mlp_ratio: float = 4.0,
        head_hidden_dim: int = 1280,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        fusion: str = "hadamard",
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if len(dims) != len(depths):
            raise ValueError(f"Conv2Former: dims and depths need one entry per stage; got {dims} and {depths}")
        _check_fusion(fusion)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        self.stem = conv_stem(in_chans, dims[0], **dd)
        dpr = drop_path_rates(drop_path_rate, depths)
        stages, self.feature_info = [], []
        in_chs = dims[0]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            stages.append(Conv2FormerStage(
                in_chs, dim, depth, downsample=i > 0, drop_path=dpr[i], kernel_size=kernel_size,
                mlp_ratio=mlp_ratio, layer_scale_init_value=layer_scale_init_value, fusion=fusion, **dd,
            ))
            self.feature_info.append(dict(num_chs=dim, reduction=4 * 2**i, module=f"stages.{i}"))
            in_chs = dim
        self.stages = nn.Sequential(*stages)
        self.num_features = dims[-1]
        self.head = ConvHead(dims[-1], head_hidden_dim, num_classes, global_pool, drop_rate, **dd)
        self.head_hidden_size = self.head.hidden_size
        self.apply(_init_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^stem",
            blocks=r"^stages\.(\d+)" if coarse else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (stride 4, 8, 16, 32) selected by `indices` (last n if int, all if None).

        `norm` has no effect: the only final norm sits inside the head, after its 1x1 conv.
        """
        return stage_intermediates(x, self.stem, self.stages, indices, stop_early, intermediates_only, output_fmt,
                                   "Conv2Former")

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages (and head) not needed for `indices`; returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        if max_index < len(self.feature_info) - 1:
            self.num_features = self.feature_info[max_index]["num_chs"]
            prune_head = True
        if prune_head:
            self.head = ConvHead(self.num_features, 0, 0, "")
            self.head_hidden_size = self.num_features
            self.num_classes = 0
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # gradient checkpointing lives in the stages (per block); checkpointing here too would recompute twice
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------------------- isotropic
class Conv2FormerIsotropic(nn.Module):
    """Isotropic (ViT-style) Conv2Former, paper §4.4 / Table 7; not in the official code (discrepancy 11).

    A patch embedding to a stride-16 map, `depth` identical Conv2Former blocks, and the same 1x1-conv head as the
    hierarchical models. `stem_type`:
      * 'patch' (default): one 16x16 stride-16 conv ("1 Conv" rows of Table 7);
      * 'conv3': three convolutions then an 8x8 stride-8 projection, following the token-labeling / DeepViT
        stems the paper cites ([43], [99]): conv7x7 s2 -> BN -> ReLU -> 2 x (conv3x3 -> BN -> ReLU), 64 wide.
        The paper does not give this stem's exact form; its "3 Convs" params / FLOPs are not reproduced.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        dim: int = 320,
        depth: int = 18,
        kernel_size: int = 11,
        mlp_ratio: float = 4.0,
        patch_size: int = 16,
        stem_type: str = "patch",
        stem_width: int = 64,
        head_hidden_dim: int = 1280,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        fusion: str = "hadamard",
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        _check_fusion(fusion)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        if stem_type == "patch":
            self.stem = nn.Sequential(OrderedDict([
                ("proj", nn.Conv2d(in_chans, dim, patch_size, stride=patch_size, **dd)),
            ]))
        elif stem_type == "conv3":
            if patch_size % 2:
                raise ValueError(f"Conv2FormerIsotropic: stem_type='conv3' needs an even patch_size; got {patch_size}")
            self.stem = nn.Sequential(OrderedDict([
                ("conv1", nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False, **dd)),
                ("norm1", nn.BatchNorm2d(stem_width, **dd)),
                ("act1", nn.ReLU()),
                ("conv2", nn.Conv2d(stem_width, stem_width, 3, padding=1, bias=False, **dd)),
                ("norm2", nn.BatchNorm2d(stem_width, **dd)),
                ("act2", nn.ReLU()),
                ("conv3", nn.Conv2d(stem_width, stem_width, 3, padding=1, bias=False, **dd)),
                ("norm3", nn.BatchNorm2d(stem_width, **dd)),
                ("act3", nn.ReLU()),
                ("proj", nn.Conv2d(stem_width, dim, patch_size // 2, stride=patch_size // 2, **dd)),
            ]))
        else:
            raise ValueError(f"Conv2FormerIsotropic: stem_type must be 'patch' or 'conv3'; got {stem_type!r}")
        dpr = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.Sequential(*[
            Conv2FormerBlock(dim, kernel_size, mlp_ratio, dpr[i], layer_scale_init_value, fusion, **dd)
            for i in range(depth)
        ])
        self.feature_info = [dict(num_chs=dim, reduction=patch_size, module=f"blocks.{i}") for i in range(depth)]
        self.num_features = dim
        self.head = ConvHead(dim, head_hidden_dim, num_classes, global_pool, drop_rate, **dd)
        self.head_hidden_size = self.head.hidden_size
        self.apply(_init_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^stem", blocks=r"^blocks\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Block outputs (all stride `patch_size`) selected by `indices`; `norm` has no effect (see Conv2Former)."""
        return stage_intermediates(x, self.stem, self.blocks, indices, stop_early, intermediates_only, output_fmt,
                                   "Conv2FormerIsotropic")

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: max_index + 1]
        if prune_head or max_index < len(self.feature_info) - 1:
            self.head = ConvHead(self.num_features, 0, 0, "")
            self.head_hidden_size = self.num_features
            self.num_classes = 0
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------- official checkpoints
_STEM_RENAMES = {"0": "conv1", "2": "norm1", "3": "conv2", "5": "norm2", "6": "conv3"}
_RENAMES = (
    (r"^downsample_layers\.0\.(\d)\.", lambda m: f"stem.{_STEM_RENAMES[m.group(1)]}."),
    (r"^downsample_layers\.(\d+)\.0\.", r"stages.\1.downsample.norm."),
    (r"^downsample_layers\.(\d+)\.1\.", r"stages.\1.downsample.conv."),
    (r"^stages\.(\d+)\.(\d+)\.layer_scale_1$", r"stages.\1.blocks.\2.ls1.gamma"),
    (r"^stages\.(\d+)\.(\d+)\.layer_scale_2$", r"stages.\1.blocks.\2.ls2.gamma"),
    (r"^stages\.(\d+)\.(\d+)\.attn\.att\.0\.", r"stages.\1.blocks.\2.mixer.a_proj."),
    (r"^stages\.(\d+)\.(\d+)\.attn\.att\.2\.", r"stages.\1.blocks.\2.mixer.a_conv."),
    (r"^stages\.(\d+)\.(\d+)\.attn\.v\.", r"stages.\1.blocks.\2.mixer.v_proj."),
    (r"^stages\.(\d+)\.(\d+)\.attn\.", r"stages.\1.blocks.\2.mixer."),
    (r"^stages\.(\d+)\.(\d+)\.mlp\.pos\.", r"stages.\1.blocks.\2.mlp.pos_conv."),
    (r"^stages\.(\d+)\.(\d+)\.mlp\.", r"stages.\1.blocks.\2.mlp."),
    (r"^head\.0\.", "head.conv."),
    (r"^head\.2\.", "head.norm."),
    (r"^pred\.", "head.fc."),
)


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Official Conv2Former state dict (or ours) -> this model's keys.

    Official -> ours: downsample_layers.0.{0,2,3,5,6} -> stem.{conv1,norm1,conv2,norm2,conv3};
    downsample_layers.i.{0,1} -> stages.i.downsample.{norm,conv}; stages.i.j -> stages.i.blocks.j with
    layer_scale_{1,2} -> ls{1,2}.gamma, attn.att.0 / att.2 / v -> mixer.a_proj / a_conv / v_proj, attn.* -> mixer.*,
    mlp.pos -> mlp.pos_conv; head.0 / head.2 / pred -> head.conv / head.norm / head.fc.
    A checkpoint whose depthwise kernels differ from the model's kernel_size is refused with the fix.
    """
    if isinstance(state_dict.get("state_dict"), Mapping):  # a CheckpointSaver container passed directly
        state_dict = state_dict["state_dict"]
    own = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        key = key if key in own else rename_key(key, _RENAMES)
        if key.endswith("mixer.a_conv.weight") and key in own and value.shape != own[key].shape:
            raise ValueError(
                f"checkpoint {key} has {tuple(value.shape[-2:])} kernels but the model uses "
                f"{tuple(own[key].shape[-2:])}; create the model with kernel_size={value.shape[-1]} "
                "(official conv2former_n and conv2former_b_22k use 7, T/S/B/L use 11)"
            )
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------------------- cfgs
def _cfg(**kwargs) -> dict:
    """timm pretrained cfg; `license` is that of the official code and weights (HVision-NKU/Conv2Former: MIT)."""
    return {
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "fixed_input_size": False,
        # official model cfg (timm ViT _cfg): 0.5 / 0.5. The official README says ImageNet mean/std instead;
        # which one the released weights expect is ambiguous (docs/models/conv2former.md).
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "first_conv": "stem.conv1",
        "classifier": "head.fc",
        "license": "mit",
        "paper_ids": "arXiv:2211.11943",
        "paper_name": "Conv2Former: A Simple Transformer-Style ConvNet for Visual Recognition",
        "origin_url": "https://github.com/HVision-NKU/Conv2Former",
        **kwargs,
    }


# No hub ids are known for the released weights (Baidu Pan only): load files with pretrained_cfg_overlay=dict(file=...)
default_cfgs = generate_default_cfgs({
    "conv2former_n.in1k": _cfg(),
    "conv2former_t.in1k": _cfg(),
    "conv2former_s.in1k": _cfg(),
    "conv2former_s.in22k_ft_in1k": _cfg(),
    "conv2former_b.in1k": _cfg(),
    "conv2former_b.in22k_ft_in1k": _cfg(),
    "conv2former_b.in22k_ft_in1k_384": _cfg(input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0),
    "conv2former_b_22k.in22k_ft_in1k": _cfg(),
    "conv2former_l.in22k_ft_in1k": _cfg(),
    "conv2former_l.in22k_ft_in1k_384": _cfg(input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0),
    # isotropic models of the paper's Table 7: defined from the paper's text, no official code or weights
    "conv2former_is.untrained": _cfg(pool_size=(14, 14), first_conv="stem.proj"),
    "conv2former_ib.untrained": _cfg(pool_size=(14, 14), first_conv="stem.proj"),
    "conv2former_test.untrained": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
})

MODEL_ARGS = {
    "conv2former_n": dict(dims=(64, 128, 256, 512), depths=(2, 2, 8, 2), kernel_size=7),
    "conv2former_t": dict(dims=(72, 144, 288, 576), depths=(3, 3, 12, 3), kernel_size=11),
    "conv2former_s": dict(dims=(72, 144, 288, 576), depths=(4, 4, 32, 4), kernel_size=11),
    "conv2former_b": dict(dims=(96, 192, 384, 768), depths=(4, 4, 34, 4), kernel_size=11),
    "conv2former_b_22k": dict(dims=(96, 192, 384, 768), depths=(4, 4, 34, 4), kernel_size=7),
    "conv2former_l": dict(dims=(128, 256, 512, 1024), depths=(4, 4, 48, 4), kernel_size=11),
    "conv2former_is": dict(dim=320, depth=18, kernel_size=11, patch_size=16),
    "conv2former_ib": dict(dim=640, depth=18, kernel_size=11, patch_size=16),
    "conv2former_test": dict(dims=(16, 24, 32, 48), depths=(1, 1, 2, 1), kernel_size=7, head_hidden_dim=64),
}


def _create_conv2former(variant: str, pretrained: bool = False, **kwargs) -> nn.Module:
    check_weight_source(variant, pretrained, kwargs)
    if variant in ("conv2former_is", "conv2former_ib"):
        depth = kwargs.get("depth", MODEL_ARGS[variant]["depth"])
        return build_model(
            Conv2FormerIsotropic, variant, pretrained, checkpoint_filter_fn,
            feature_cfg=dict(feature_cls="getter", out_indices=(depth - 4, depth - 3, depth - 2, depth - 1)),
            **dict(MODEL_ARGS[variant], **kwargs),
        )
    return build_model(Conv2Former, variant, pretrained, checkpoint_filter_fn, **dict(MODEL_ARGS[variant], **kwargs))


@register_model
def conv2former_n(pretrained: bool = False, **kwargs) -> Conv2Former:
    return _create_conv2former("conv2former_n", pretrained, **kwargs)


@register_model
def conv2former_t(pretrained: bool = False, **kwargs) -> Conv2Former:
    return _create_conv2former("conv2former_t", pretrained, **kwargs)


@register_model
def conv2former_s(pretrained: bool = False, **kwargs) -> Conv2Former:
    return _create_conv2former("conv2former_s", pretrained, **kwargs)


@register_model
def conv2former_b(pretrained: bool = False, **kwargs) -> Conv2Former:
    return _create_conv2former("conv2former_b", pretrained, **kwargs)


@register_model
def conv2former_b_22k(pretrained: bool = False, **kwargs) -> Conv2Former:
    """Conv2Former-B with 7x7 kernels (official entrypoint name; paper Table 5 lists B-7x7 at 89M / 15.6G)."""
    return _create_conv2former("conv2former_b_22k", pretrained, **kwargs)


@register_model
def conv2former_l(pretrained: bool = False, **kwargs) -> Conv2Former:
    return _create_conv2former("conv2former_l", pretrained, **kwargs)


@register_model
def conv2former_is(pretrained: bool = False, **kwargs) -> Conv2FormerIsotropic:
    """Conv2Former-IS (paper Table 7: 23M, 4.3G): width 320, 18 blocks, 16x16 patch embed. No official weights."""
    return _create_conv2former("conv2former_is", pretrained, **kwargs)


@register_model
def conv2former_ib(pretrained: bool = False, **kwargs) -> Conv2FormerIsotropic:
    """Conv2Former-IB (paper Table 7: 86M, 16.5G): width 640, 18 blocks, 16x16 patch embed. No official weights."""
    return _create_conv2former("conv2former_ib", pretrained, **kwargs)


@register_model
def conv2former_test(pretrained: bool = False, **kwargs) -> Conv2Former:
    """Tiny model for fast tests."""
    return _create_conv2former("conv2former_test", pretrained, **kwargs)
