"""UniConvNet (Wang et al., ICCV 2025, arXiv:2508.09000) as a timm model family.

Architecture as the official code implements it (ai-paperwithcode/UniConvNet @ 5d66e89): a stride-4 two-conv stem,
four stages of blocks [RFA -> DCNv3 -> MLP] (three layer-scaled residuals), LayerNorm + 3x3 stride-2 conv
downsamplers, and a pool -> LayerNorm -> Linear head. The DCNv3 op is pure PyTorch (`lsnet.ops.dcnv3`), so the
models run on CPU and GPU without compiling anything. Variants A-P2 use 8 channels per DCN group, N0-XL 16
(the two official model files differ only in that).

Beyond the official code: timm's features/intermediates API, gradient checkpointing, `in_chans`/`num_classes` of
any value, head dropout (`drop_rate`), and loading of official checkpoint files (non-EMA 'model' entry):

    import lsnet, timm
    model = timm.create_model('uniconvnet_t', pretrained=True,
                              pretrained_cfg_overlay=dict(file='uniconvnet_t_1k_224_ema.pth'))
"""
import re
from collections.abc import Sequence
from functools import partial

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm2d, NormMlpClassifierHead, trunc_normal_
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from torch import nn

from ..layers._fx import fx_tracing
from ..layers.dcnv3 import DCNv3
from ..layers.rfa import ReceptiveFieldAggregator
from ._builder import build_model
from ._features import stage_intermediates
from ._helpers import drop_path_rates

__all__ = ["UniConvNet", "UniConvNetBlock", "UniConvNetStage", "checkpoint_filter_fn"]

_Device = torch.device | str | None


class ChannelMlp(nn.Module):
    """Linear(dim, hidden) -> GELU -> Linear(hidden, dim) over the last dim (state-dict keys fc1 / fc2 as timm's Mlp).

    Not timm's `Mlp`: its Identity `norm` child (qualified name `...mlp.norm`) collides with the block's
    `mlp_norm` in torchvision's FX node naming, which breaks `create_feature_extractor`.
    """

    def __init__(self, dim: int, hidden: int, device: _Device = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, device=device, dtype=dtype)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class UniConvNetBlock(nn.Module):
    """Basic block (paper Appendix, Fig. 7; official `Block`). x: (B, dim, H, W) -> (B, dim, H, W).

        x = x + drop_path(rfa_scale * RFA(x))                          NCHW; the RFA normalises its own input
        x = x + drop_path(dcn_scale * DCNv3(LayerNorm(x)))             NHWC
        x = x + drop_path(mlp_scale * MLP(LayerNorm(x)))               NHWC, Linear(dim, 4 dim) -> GELU -> Linear
    The three layer scales start at `layer_scale_init_value` (1e-6 as in the official model). One drop-path rate
    serves all three residuals. The DCN has dim // dcn_group_width groups.
    """

    def __init__(self, dim: int, dcn_group_width: int = 16, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-6, kernel_sizes: Sequence[int] = (7, 9, 11),
                 device: _Device = None, dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if dim % dcn_group_width:
            raise ValueError(f"UniConvNetBlock: dim ({dim}) must be a multiple of dcn_group_width ({dcn_group_width})")
        self.rfa = ReceptiveFieldAggregator(dim, kernel_sizes, **dd)
        self.rfa_scale = nn.Parameter(torch.full((dim,), float(layer_scale_init_value), **dd))
        self.dcn_norm = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.dcn = DCNv3(dim, group=dim // dcn_group_width, kernel_size=3, **dd)
        self.dcn_scale = nn.Parameter(torch.full((dim,), float(layer_scale_init_value), **dd))
        self.mlp_norm = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.mlp = ChannelMlp(dim, int(dim * mlp_ratio), **dd)
        self.mlp_scale = nn.Parameter(torch.full((dim,), float(layer_scale_init_value), **dd))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.rfa_scale.view(-1, 1, 1) * self.rfa(x))
        x = x.permute(0, 2, 3, 1)
        x = x + self.drop_path(self.dcn_scale * self.dcn(self.dcn_norm(x)))
        x = x + self.drop_path(self.mlp_scale * self.mlp(self.mlp_norm(x)))
        return x.permute(0, 3, 1, 2)


class UniConvNetStage(nn.Module):
    """Optional downsampler (LayerNorm2d -> Conv 3x3 stride 2, in_chs -> out_chs) followed by `depth` blocks."""

    def __init__(self, in_chs: int, out_chs: int, depth: int, downsample: bool = True,
                 drop_path_rates: Sequence[float] | None = None, device: _Device = None,
                 dtype: torch.dtype | None = None, **block_kwargs):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if downsample:
            self.downsample = nn.Sequential(LayerNorm2d(in_chs, eps=1e-6, **dd),
                                            nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1, **dd))
        elif in_chs != out_chs:
            raise ValueError(f"UniConvNetStage: without downsampling in_chs ({in_chs}) must equal out_chs ({out_chs})")
        else:
            self.downsample = nn.Identity()
        drop_path_rates = list(drop_path_rates) if drop_path_rates is not None else [0.0] * depth
        self.blocks = nn.Sequential(*[UniConvNetBlock(out_chs, drop_path=rate, **dd, **block_kwargs)
                                      for rate in drop_path_rates])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class UniConvNet(nn.Module):
    """UniConvNet. x: (B, in_chans, H, W), any H, W -> logits (B, num_classes).

    Args:
        dims: channels of the four stages.
        depths: blocks per stage.
        dcn_group_width: channels per DCNv3 group (8 for A-P2, 16 for N0-XL).
        kernel_sizes: large kernels of the three RFA layers.
        mlp_ratio: MLP hidden width / dim.
        drop_rate: dropout before the classifier (0, none in the official code).
        drop_path_rate: stochastic depth, linear 0 -> rate over all blocks.
        layer_scale_init_value: initial value of the per-channel residual scales (1e-6 official).
        head_init_scale: classifier weight and bias are multiplied by it at init (0.001 in official fine-tuning).
        global_pool: 'avg' (official) or any timm SelectAdaptivePool2d type; '' keeps the map.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        dims: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (3, 3, 15, 3),
        dcn_group_width: int = 16,
        kernel_sizes: Sequence[int] = (7, 9, 11),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        head_init_scale: float = 1.0,
        global_pool: str = "avg",
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if len(dims) != 4 or len(depths) != 4:
            raise ValueError(f"UniConvNet: dims and depths need 4 entries; got dims={dims}, depths={depths}")
        if dims[0] % 2:
            raise ValueError(f"UniConvNet: dims[0] must be even (the stem first outputs dims[0] // 2); got {dims[0]}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.num_features = self.head_hidden_size = dims[-1]

        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0] // 2, 3, stride=2, padding=1, **dd),
            LayerNorm2d(dims[0] // 2, eps=1e-6, **dd),
            nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], 3, stride=2, padding=1, **dd),
            LayerNorm2d(dims[0], eps=1e-6, **dd),
        )
        rates = drop_path_rates(drop_path_rate, depths)
        stages, self.feature_info, reduction = [], [], 4
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:
                reduction *= 2
            stages.append(UniConvNetStage(
                dims[max(i - 1, 0)], dim, depth, downsample=i > 0, drop_path_rates=rates[i],
                dcn_group_width=dcn_group_width, mlp_ratio=mlp_ratio, layer_scale_init_value=layer_scale_init_value,
                kernel_sizes=kernel_sizes, **dd,
            ))
            self.feature_info.append(dict(num_chs=dim, reduction=reduction, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        # pool -> LayerNorm over channels (LayerNorm2d on the pooled (B, C, 1, 1) map) -> dropout -> Linear
        self.head = NormMlpClassifierHead(dims[-1], num_classes, pool_type=global_pool, drop_rate=drop_rate,
                                          norm_layer=partial(LayerNorm2d, eps=1e-6), **dd)
        self._init_weights(head_init_scale)

    @torch.no_grad()
    def _init_weights(self, head_init_scale: float) -> None:
        """Official init: trunc_normal(.02) conv/linear weights, zero biases, then DCNv3's own reset; head scaled."""
        if self.head.norm.weight.is_meta:
            return  # built on the meta device (e.g. to count parameters): there is nothing to initialise
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, DCNv3):
                module.reset_parameters()
        if isinstance(self.head.fc, nn.Linear):
            self.head.fc.weight.mul_(head_init_scale)
            self.head.fc.bias.mul_(head_init_scale)

    # ------------------------------------------------------------------------------------------- timm API
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Nothing beyond timm's defaults: biases, norms and the 1-D layer scales are already excluded by ndim."""
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
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs at `indices` (int: last n; None: all). There is no per-stage norm, so `norm` is a no-op."""
        if not torch.jit.is_scripting():
            self._check_input(x)
        return stage_intermediates(x, self.stem, self.stages, indices, stop_early, intermediates_only, output_fmt,
                                   "UniConvNet")

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages (and head) not needed for `indices`; returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[:max_index + 1]
        if max_index < len(self.feature_info) - 1:  # the head norm is sized for the last stage
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            prune_head = prune_norm = True
        if prune_norm:
            self.head.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def _check_input(self, x: torch.Tensor) -> None:
        """A clear error for a wrong input; skipped under torch.fx tracing (shapes are proxies there)."""
        if fx_tracing():
            return
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"UniConvNet: expected input (B, {self.in_chans}, H, W); got {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check_input(x)
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# --------------------------------------------------------------------------------------- official checkpoints
# official ConvMod (RFA) names -> ours, per layer n: norm{n}, a{n}.*, v{n}, v{n}1, v{n}2, proj{n}, conv3_{n}
_RFA_PATTERNS = (
    (re.compile(r"^norm1\.(.*)"), lambda m: f"norm.{m[1]}"),
    (re.compile(r"^norm(\d)\.(.*)"), lambda m: f"layers.{int(m[1]) - 1}.norm.{m[2]}"),
    (re.compile(r"^a(\d)\.(.*)"), lambda m: f"layers.{int(m[1]) - 1}.large_kernel.{m[2]}"),
    (re.compile(r"^v(\d)\.(.*)"), lambda m: f"layers.{int(m[1]) - 1}.value.{m[2]}"),
    (re.compile(r"^v(\d)1\.(.*)"), lambda m: f"layers.{int(m[1]) - 1}.amp_proj.{m[2]}"),
    (re.compile(r"^v(\d)2\.(.*)"), lambda m: f"layers.{int(m[1]) - 1}.head_proj.{m[2]}"),
    (re.compile(r"^proj(\d)\.(.*)"), lambda m: f"layers.{int(m[1]) - 1}.context_proj.{m[2]}"),
    (re.compile(r"^conv3_(\d)\.(.*)"), lambda m: f"layers.{int(m[1]) - 1}.small_kernel.{m[2]}"),
)
_BLOCK_RENAMES = (
    ("layer_scale", "rfa_scale"),
    ("gamma1", "dcn_scale"),
    ("gamma2", "mlp_scale"),
    ("norm1.0.", "dcn_norm."),
    ("norm2.0.", "mlp_norm."),
    ("dcn.dw_conv.0.", "dcn.dw_conv."),
    ("dcn.offset.", "dcn.offset_proj."),
    ("dcn.mask.", "dcn.mask_proj."),
)


def _official_to_ours(key: str) -> str:
    """Map one official UniConvNet key (models_*/UniConvNet.py names) to this module's names."""
    if key.startswith("downsample_layers."):
        _, index, rest = key.split(".", 2)
        return f"stem.{rest}" if index == "0" else f"stages.{index}.downsample.{rest}"
    if key.startswith("norm."):
        return "head." + key
    if key.startswith("head."):
        return "head.fc." + key[len("head."):]
    if key.startswith("stages."):
        _, stage, block, rest = key.split(".", 3)
        if rest.startswith("attn."):
            inner = rest[len("attn."):]
            for pattern, rename in _RFA_PATTERNS:
                match = pattern.match(inner)
                if match:
                    inner = rename(match)
                    break
            rest = "rfa." + inner
        else:
            for old, new in _BLOCK_RENAMES:
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
        return f"stages.{stage}.blocks.{block}.{rest}"
    return key


def checkpoint_filter_fn(state_dict: dict, model: UniConvNet) -> dict[str, torch.Tensor]:
    """Official UniConvNet state dict (or a {'model': ...} container, or our own layout) -> this model's keys."""
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    own = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        out[key if key in own else _official_to_ours(key)] = value
    return out


# --------------------------------------------------------------------------------------------- configs
_WEIGHTS = "https://huggingface.co/ai-modelwithcode/UniConvNet/resolve/main/"


def _cfg(weights: str = "", **kwargs) -> dict:
    """timm pretrained cfg; `license` is that of the official code and weights (ai-paperwithcode/UniConvNet: MIT)."""
    notes = (f"official weights (not fetched automatically): {_WEIGHTS}{weights}; load the downloaded file with "
             "pretrained_cfg_overlay=dict(file=PATH)",) if weights else None
    return {
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 224 / 256,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.0",
        "classifier": "head.fc",
        "license": "mit",
        "paper_ids": "arXiv:2508.09000",
        "paper_name": "UniConvNet: Expanding Effective Receptive Field while Maintaining Asymptotically Gaussian "
                      "Distribution for ConvNets of Any Scale",
        "origin_url": "https://github.com/ai-paperwithcode/UniConvNet",
        "notes": notes,
        **kwargs,
    }


# at >= 384 the official evaluation resizes straight to the input size (no crop): crop_pct 1.0, 'squash'
_384 = dict(input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0, crop_mode="squash")

default_cfgs = generate_default_cfgs({
    "uniconvnet_a.in1k": _cfg("uniconvnet_a_1k_224.pth"),
    "uniconvnet_p0.in1k": _cfg("uniconvnet_p0_1k_224_ema.pth"),
    "uniconvnet_p1.in1k": _cfg("uniconvnet_p1_1k_224_ema.pth"),
    "uniconvnet_p2.in1k": _cfg("uniconvnet_p2_1k_224_ema.pth"),
    "uniconvnet_n0.in1k": _cfg("uniconvnet_n0_1k_224_ema.pth"),
    "uniconvnet_n1.in1k": _cfg("uniconvnet_n1_1k_224.pth"),
    "uniconvnet_n2.in1k": _cfg("uniconvnet_n2_1k_224_ema.pth"),
    "uniconvnet_n3.in1k": _cfg("uniconvnet_n3_1k_224_ema.pth"),
    "uniconvnet_t.in1k": _cfg("uniconvnet_t_1k_224_ema.pth"),
    "uniconvnet_t.in1k_384": _cfg("uniconvnet_t_1k_384.pth", **_384),
    "uniconvnet_s.in1k": _cfg("uniconvnet_s_1k_224_ema.pth"),
    "uniconvnet_s.in1k_384": _cfg("uniconvnet_s_1k_384.pth", **_384),
    "uniconvnet_b.in1k": _cfg("uniconvnet_b_1k_224_ema.pth"),
    "uniconvnet_b.in1k_384": _cfg("uniconvnet_b_1k_384.pth", **_384),
    # L / XL: pre-trained on ImageNet-22k (21841 classes) at 224, fine-tuned on ImageNet-1k at 384
    "uniconvnet_l.in22k_ft_in1k_384": _cfg("uniconvnet_l_22k_1k_384.pth", **_384),
    "uniconvnet_l.in22k": _cfg("uniconvnet_l_22k_224.pth", num_classes=21841),
    "uniconvnet_xl.in22k_ft_in1k_384": _cfg("uniconvnet_xl_22k_1k_384.pth", **_384),
    "uniconvnet_xl.in22k": _cfg("uniconvnet_xl_22k_224.pth", num_classes=21841),
    "uniconvnet_test.untrained": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
})


def _create_uniconvnet(variant: str, pretrained: bool = False, **kwargs) -> UniConvNet:
    return build_model(UniConvNet, variant, pretrained, checkpoint_filter_fn, **kwargs)


@register_model
def uniconvnet_a(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(24, 48, 96, 192), depths=(2, 3, 9, 2), dcn_group_width=8)
    return _create_uniconvnet("uniconvnet_a", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_p0(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(32, 64, 128, 256), depths=(2, 2, 7, 2), dcn_group_width=8)
    return _create_uniconvnet("uniconvnet_p0", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_p1(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(32, 64, 128, 256), depths=(2, 3, 6, 3), dcn_group_width=8)
    return _create_uniconvnet("uniconvnet_p1", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_p2(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(32, 64, 128, 256), depths=(3, 3, 11, 3), dcn_group_width=8)
    return _create_uniconvnet("uniconvnet_p2", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_n0(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(48, 96, 192, 384), depths=(2, 2, 7, 2), dcn_group_width=16)
    return _create_uniconvnet("uniconvnet_n0", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_n1(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(48, 96, 192, 384), depths=(2, 2, 8, 3), dcn_group_width=16)
    return _create_uniconvnet("uniconvnet_n1", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_n2(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(48, 96, 192, 384), depths=(3, 3, 11, 3), dcn_group_width=16)
    return _create_uniconvnet("uniconvnet_n2", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_n3(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(48, 96, 192, 384), depths=(3, 3, 19, 3), dcn_group_width=16)
    return _create_uniconvnet("uniconvnet_n3", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_t(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(64, 128, 256, 512), depths=(3, 3, 15, 3), dcn_group_width=16)
    return _create_uniconvnet("uniconvnet_t", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_s(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(80, 160, 320, 640), depths=(3, 3, 17, 3), dcn_group_width=16)
    return _create_uniconvnet("uniconvnet_s", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_b(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(112, 224, 448, 896), depths=(4, 4, 13, 4), dcn_group_width=16)
    return _create_uniconvnet("uniconvnet_b", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_l(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(160, 320, 640, 1280), depths=(3, 3, 18, 3), dcn_group_width=16)
    return _create_uniconvnet("uniconvnet_l", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_xl(pretrained: bool = False, **kwargs) -> UniConvNet:
    model_args = dict(dims=(160, 320, 640, 1280), depths=(3, 3, 22, 3), dcn_group_width=16)
    return _create_uniconvnet("uniconvnet_xl", pretrained, **dict(model_args, **kwargs))


@register_model
def uniconvnet_test(pretrained: bool = False, **kwargs) -> UniConvNet:
    """Tiny variant for fast tests (not a paper model): every block type, two DCN groups per stage."""
    model_args = dict(dims=(16, 32, 32, 48), depths=(1, 1, 2, 1), dcn_group_width=8)
    return _create_uniconvnet("uniconvnet_test", pretrained, **dict(model_args, **kwargs))
