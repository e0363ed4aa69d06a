"""LSNet: See Large, Focus Small (Wang et al., CVPR 2025), as a timm model family.

Architecture as the official code implements it (jameslahm/lsnet @ cbe737c): a stride-8 conv stem, four
stages whose blocks alternate [RepVGG-DW + SE, LS conv] (stage 4: [RepVGG-DW + SE, attention]), each followed by
a residual FFN, and a BN-Linear head (plus a distillation head in the `_distilled` variants).

Beyond the official code: any input size (the stage-4 attention-bias table is resized LeViT-style to the token
grid), stochastic depth on every residual branch (`drop_path_rate`, 0 by default as officially), timm's
features/intermediates API, `in_chans`/`num_classes` of any value, and deploy fusion (`lsnet.deploy.fuse`).

    import lsnet, timm
    model = timm.create_model('lsnet_t', pretrained=True, pretrained_cfg_overlay=dict(file='lsnet_t.pth'))
"""
import math

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, SEModule
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq
from torch import nn

from ..layers import BNLinear, ConvBN, LSConv
from ..layers._fx import fx_tracing
from ._builder import build_model
from ._features import stage_intermediates
from ._helpers import drop_path_rates

__all__ = ["LSNet", "checkpoint_filter_fn"]

STEM_STRIDE = 8
_Device = torch.device | str | None


def resize_bias_table(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(heads, r*r) table indexed by |drow|*r + |dcol| -> (heads, h*w) table for an h x w grid (bicubic)."""
    heads, length = table.shape[0], table.shape[1]
    side = int(math.sqrt(length) + 0.5)
    if side == grid[0] and side == grid[1]:
        return table
    square = table.reshape(1, heads, side, side).float()
    resized = F.interpolate(square, size=grid, mode="bicubic", align_corners=False)
    return resized.reshape(heads, grid[0] * grid[1]).to(table.dtype)


def relative_offset_index(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """(N, N) index |row_i - row_j| * width + |col_i - col_j| over the row-major points of an h x w grid."""
    rows = torch.arange(height, device=device).repeat_interleave(width)
    cols = torch.arange(width, device=device).repeat(height)
    return (rows[:, None] - rows[None, :]).abs() * width + (cols[:, None] - cols[None, :]).abs()


def grid_attention_bias(table: torch.Tensor, height: int, width: int, resize: str = "table") -> torch.Tensor:
    """(heads, r*r) table -> (heads, N, N) additive biases for an h x w token grid, N = h*w.

    resize: "table" resizes the table to the grid, then gathers (geometrically consistent, the default);
        "matrix" gathers the r x r grid's (heads, r*r, r*r) biases and resizes that matrix bicubically to
        (N, N), as the official detection/segmentation copy of LSNet does (`detection/model/lsnet.py`) -- what
        its trained detectors expect.
    A torch.fx leaf (`torch.fx.wrap` below): traced graphs call it with the runtime grid size.
    """
    if resize == "matrix":
        side = int(math.sqrt(table.shape[1]) + 0.5)
        matrix = table[:, relative_offset_index(side, side, table.device)]
        tokens = height * width
        return F.interpolate(matrix[None].float(), size=(tokens, tokens), mode="bicubic",
                             align_corners=False)[0].to(table.dtype)
    return resize_bias_table(table, (height, width))[:, relative_offset_index(height, width, table.device)]


torch.fx.wrap("grid_attention_bias")


class RepVGGDW(nn.Module):
    """x + drop_path(DW3x3-BN(x) + DW1x1-BN(x)); `fuse()` folds all three into one 3x3 depthwise conv."""

    def __init__(self, dim: int, drop_path: float = 0.0, device: _Device = None, dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.conv3x3 = ConvBN(dim, dim, 3, groups=dim, **dd)
        self.conv1x1 = ConvBN(dim, dim, 1, groups=dim, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.conv3x3(x) + self.conv1x1(x))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv = self.conv3x3.fuse()
        point = self.conv1x1.fuse()
        conv.weight += F.pad(point.weight, (1, 1, 1, 1))
        conv.weight[:, 0, 1, 1] += 1.0  # the identity
        conv.bias += point.bias
        return conv


class Attention(nn.Module):
    """Stage-4 multi-head self-attention with a depthwise conv on q and relative-position biases.

    Returns x + drop_path(attention(x)); x: (B, dim, H, W). The (heads, r*r) bias table is learnt for an
    r x r token grid (r = 4 at 224) and resized bicubically for any other grid; the gathered (heads, N, N)
    biases are cached per grid, device and table version in eval mode. bias_resize: "table" or "matrix" (the
    official detection copy's way), see `grid_attention_bias`.
    """

    BIAS_RESIZE = ("table", "matrix")

    def __init__(
        self,
        dim: int,
        key_dim: int = 16,
        num_heads: int = 4,
        attn_ratio: float = 4.0,
        resolution: int = 4,
        drop_path: float = 0.0,
        bias_resize: str = "table",
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if bias_resize not in self.BIAS_RESIZE:
            raise ValueError(f"Attention: bias_resize must be one of {self.BIAS_RESIZE}; got {bias_resize!r}")
        self.bias_resize = bias_resize
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.scale = key_dim**-0.5
        qk_dim = key_dim * num_heads
        self.qkv = ConvBN(dim, 2 * qk_dim + self.val_dim * num_heads, **dd)
        self.q_dw = ConvBN(qk_dim, qk_dim, 3, groups=qk_dim, **dd)
        self.proj_act = nn.ReLU()
        self.proj = ConvBN(self.val_dim * num_heads, dim, bn_weight_init=0.0, **dd)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution, **dd))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self._bias_cache: dict[tuple, torch.Tensor] = {}

    @torch.jit.ignore
    def train(self, mode: bool = True) -> "Attention":
        self._bias_cache.clear()
        return super().train(mode)

    def attention_bias(self, height: int, width: int) -> torch.Tensor:
        """(heads, N, N) additive biases for an h x w token grid."""
        if torch.jit.is_scripting():
            return grid_attention_bias(self.attention_biases, height, width, self.bias_resize)
        return self._cached_attention_bias(height, width)

    @torch.jit.unused
    def _cached_attention_bias(self, height: int, width: int) -> torch.Tensor:
        table = self.attention_biases
        if fx_tracing():
            # recorded as one call (height/width are proxies)
            return grid_attention_bias(table, height, width, self.bias_resize)
        # compiling/tracing first (is_inference() breaks dynamo graphs); inference tensors (made under
        # torch.inference_mode) have no version counter to key the cache on
        cacheable = not (torch.compiler.is_compiling() or torch.jit.is_tracing() or self.training
                         or table.is_inference())
        key = (height, width, table.device, table.dtype, table._version) if cacheable else None
        if cacheable and key in self._bias_cache:
            return self._bias_cache[key]
        bias = grid_attention_bias(table, height, width, self.bias_resize)
        if cacheable:
            self._bias_cache.clear()
            self._bias_cache[key] = bias
        return bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        tokens = height * width
        qk_dim = self.key_dim * self.num_heads
        q, k, v = self.qkv(x).split([qk_dim, qk_dim, self.val_dim * self.num_heads], dim=1)
        q = self.q_dw(q).reshape(batch, self.num_heads, self.key_dim, tokens)
        k = k.reshape(batch, self.num_heads, self.key_dim, tokens)
        v = v.reshape(batch, self.num_heads, self.val_dim, tokens)
        attn = (q.transpose(-2, -1) @ k) * self.scale + self.attention_bias(height, width)
        out = v @ attn.softmax(dim=-1).transpose(-2, -1)  # (B, heads, val_dim, N)
        out = out.reshape(batch, self.num_heads * self.val_dim, height, width)
        return x + self.drop_path(self.proj(self.proj_act(out)))


class StaticDWConv(nn.Module):
    """x + drop_path(BN(DWConv_kxk(x))): LS convolution with SKA's per-pixel kernels replaced by one static depthwise
    k x k kernel per channel, the "no dynamic aggregation" ablation (mixer "dw"). LKP goes too: it only predicts SKA's
    kernels. x: (B, dim, H, W) -> (B, dim, H, W)."""

    def __init__(self, dim: int, kernel_size: int = 3, drop_path: float = 0.0, device: _Device = None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        self.conv = ConvBN(dim, dim, kernel_size, groups=dim, device=device, dtype=dtype)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.conv(x))


class FFN(nn.Module):
    """1x1 conv-BN expansion, ReLU, 1x1 conv-BN projection (BN weight 0 at init). x: (B, dim, H, W)."""

    conv_act_pairs = (("pw1", "act"),)  # fused into one call by lsnet.deploy.fuse

    def __init__(self, dim: int, hidden_dim: int, device: _Device = None, dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.pw1 = ConvBN(dim, hidden_dim, **dd)
        self.act = nn.ReLU()
        self.pw2 = ConvBN(hidden_dim, dim, bn_weight_init=0.0, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


MIXERS = ("repdw", "ls", "dw", "attn")


class LSBlock(nn.Module):
    """One LSNet block: token mixer (residual inside) -> SE (RepVGG-DW blocks only) -> residual FFN.

    mixer: "repdw" (RepVGG depthwise + SE), "ls" (LS convolution), "dw" (a static depthwise ska_kernel_size conv in
    place of the LS convolution: the "no dynamic aggregation" ablation) or "attn" (self-attention).
    """

    def __init__(
        self,
        dim: int,
        mixer: str,
        key_dim: int = 16,
        num_heads: int = 4,
        resolution: int = 4,
        lkp_kernel_size: int = 7,
        ska_kernel_size: int = 3,
        kernel_groups: int = 8,
        mlp_ratio: float = 2.0,
        drop_path: float = 0.0,
        attn_bias_resize: str = "table",
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if mixer == "repdw":
            self.mixer = RepVGGDW(dim, drop_path, **dd)
            self.se = SEModule(dim, rd_ratio=0.25, **dd)
        elif mixer == "ls":
            self.mixer = LSConv(dim, lkp_kernel_size, ska_kernel_size, kernel_groups, drop_path, **dd)
            self.se = nn.Identity()
        elif mixer == "dw":
            self.mixer = StaticDWConv(dim, ska_kernel_size, drop_path, **dd)
            self.se = nn.Identity()
        elif mixer == "attn":
            self.mixer = Attention(dim, key_dim, num_heads, dim / (key_dim * num_heads), resolution, drop_path,
                                   attn_bias_resize, **dd)
            self.se = nn.Identity()
        else:
            raise ValueError(f"LSBlock: mixer must be one of {MIXERS}; got {mixer!r}")
        self.ffn = FFN(dim, int(dim * mlp_ratio), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.mixer(x))
        return x + self.drop_path(self.ffn(x))


class LSNetStage(nn.Module):
    """Optional stride-2 downsampler (DW3x3-BN, 1x1-BN) then `depth` blocks.

    Even block indices use RepVGG-DW + SE, odd ones the stage's `mixer` ("ls", "dw" or "attn").
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        mixer: str,
        downsample: bool,
        drop_path: list[float],
        device: _Device = None,
        dtype: torch.dtype | None = None,
        **block_kwargs,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if downsample:
            self.downsample = nn.Sequential(
                ConvBN(in_chs, in_chs, 3, 2, groups=in_chs, **dd), ConvBN(in_chs, out_chs, **dd))
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[
            LSBlock(out_chs, "repdw" if i % 2 == 0 else mixer, drop_path=drop_path[i], **dd, **block_kwargs)
            for i in range(depth)
        ])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class LSNet(nn.Module):
    """LSNet classifier. x: (B, in_chans, H, W) with H, W >= 8 -> logits (B, num_classes).

    Args:
        embed_dim: channels of the four stages.
        depth: blocks per stage (stage 1 may be empty).
        num_heads: attention heads per stage (used where the stage's mixer is "attn").
        mixers: odd-block mixer of each stage, "ls" or "attn" ("dw": a static depthwise conv in place of LS conv,
            the "no dynamic aggregation" ablation, e.g. mixers=("dw", "dw", "dw", "attn")).
        img_size: training resolution; sets the size of the stage-4 attention-bias table (any input size runs).
        distilled: add a distillation head (eval output averages both heads).
        lkp_kernel_size: large depthwise kernel of LKP (0 = "w/o LKP" ablation).
        ska_kernel_size / kernel_groups: SKA kernel size and how many channels share each dynamic kernel.
        attn_bias_resize: how attention biases meet other token grids, "table" or "matrix" (the official detection
            backbone's way, which its trained detectors expect); see `grid_attention_bias`.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: tuple[int, ...] = (64, 128, 256, 384),
        depth: tuple[int, ...] = (0, 2, 8, 10),
        num_heads: tuple[int, ...] = (3, 3, 3, 4),
        mixers: tuple[str, ...] = ("ls", "ls", "ls", "attn"),
        key_dim: int = 16,
        img_size: int = 224,
        global_pool: str = "avg",
        distilled: bool = False,
        lkp_kernel_size: int = 7,
        ska_kernel_size: int = 3,
        kernel_groups: int = 8,
        mlp_ratio: float = 2.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        attn_bias_resize: str = "table",
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.conv_act_pairs = (("stem.0", "stem.1"), ("stem.2", "stem.3"))  # for lsnet.deploy.fuse
        if not len(embed_dim) == len(depth) == len(num_heads) == len(mixers):
            raise ValueError(
                f"LSNet: embed_dim, depth, num_heads and mixers need one entry per stage; got {len(embed_dim)}, "
                f"{len(depth)}, {len(num_heads)}, {len(mixers)}"
            )
        if global_pool not in ("avg", ""):
            raise ValueError(f"LSNet: global_pool must be 'avg' or '' (none); got {global_pool!r}")
        if any(m not in MIXERS[1:] for m in mixers):
            raise ValueError(f"LSNet: mixers must be one of {MIXERS[1:]} per stage; got {tuple(mixers)}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.drop_rate = drop_rate
        self.distilled = distilled
        self.distilled_training = False
        self.grad_checkpointing = False

        stem_chs = embed_dim[0]
        self.stem = nn.Sequential(
            ConvBN(in_chans, stem_chs // 4, 3, 2, **dd), nn.ReLU(),
            ConvBN(stem_chs // 4, stem_chs // 2, 3, 2, **dd), nn.ReLU(),
            ConvBN(stem_chs // 2, stem_chs, 3, 2, **dd),
        )
        resolution = img_size // STEM_STRIDE
        rates = drop_path_rates(drop_path_rate, depth)
        stages, self.feature_info = [], []
        in_chs, reduction = stem_chs, STEM_STRIDE
        for i, (out_chs, stage_depth) in enumerate(zip(embed_dim, depth)):
            if i > 0:
                resolution = (resolution - 1) // 2 + 1
                reduction *= 2
            stages.append(LSNetStage(
                in_chs, out_chs, stage_depth, mixers[i], downsample=i > 0,
                drop_path=rates[i], key_dim=key_dim, num_heads=num_heads[i],
                resolution=resolution, lkp_kernel_size=lkp_kernel_size, ska_kernel_size=ska_kernel_size,
                kernel_groups=kernel_groups, mlp_ratio=mlp_ratio, attn_bias_resize=attn_bias_resize, **dd,
            ))
            self.feature_info.append(dict(num_chs=out_chs, reduction=reduction, module=f"stages.{i}"))
            in_chs = out_chs
        self.stages = nn.Sequential(*stages)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = BNLinear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.head_dist = None
        if distilled:
            self.head_dist = BNLinear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()

    # ----------------------------------------------------------------------------------------------- timm API
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {name for name, _ in self.named_parameters() if "attention_biases" in name}

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
    def set_distilled_training(self, enable: bool = True) -> None:
        """With a distillation head: make training-mode forward return (head, head_dist) logits."""
        self.distilled_training = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module | tuple[nn.Module, nn.Module]:
        return (self.head, self.head_dist) if self.distilled else self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"LSNet: global_pool must be 'avg' or ''; got {global_pool!r}")
            self.global_pool = global_pool
        dd = dict(device=self.stem[0].conv.weight.device, dtype=self.stem[0].conv.weight.dtype)
        make = lambda: BNLinear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.head = make()
        if self.distilled:
            self.head_dist = make()

    # ----------------------------------------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        """Clear errors for wrong inputs; skipped under torch.fx tracing (shapes are proxies there)."""
        if fx_tracing():
            return
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"LSNet expects a torch.Tensor (B, {self.in_chans}, H, W); got {type(x).__name__}")
        if x.dim() != 4:
            hint = " (add a batch dim with x.unsqueeze(0))" if x.dim() == 3 else ""
            raise ValueError(f"LSNet expects a 4-D input (B, {self.in_chans}, H, W); got shape {tuple(x.shape)}{hint}")
        if not x.is_floating_point():
            raise TypeError(f"LSNet expects a floating-point input; got {x.dtype} (convert with x.float() / 255)")
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"LSNet expects {self.in_chans} input channels; got {x.shape[1]} (shape {tuple(x.shape)}); "
                f"create the model with in_chans={x.shape[1]}"
            )
        if min(x.shape[-2:]) < STEM_STRIDE:
            raise ValueError(f"LSNet input is too small for the stride-8 stem: {tuple(x.shape[-2:])}; need H, W >= 8")

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (stride 8, 16, 32, 64) selected by `indices` (last n if int, all if None)."""
        if not torch.jit.is_scripting():
            self._check_input(x)
        return stage_intermediates(x, self.stem, self.stages, indices, stop_early, intermediates_only, output_fmt,
                                   "LSNet")

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages (and head) not needed for `indices`; returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        if max_index < len(self.feature_info) - 1:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            prune_head = True
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check_input(x)
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False):
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        if pre_logits:
            return x
        if self.head_dist is None:
            return self.head(x)
        logits, logits_dist = self.head(x), self.head_dist(x)
        if self.distilled_training and self.training and not torch.jit.is_scripting():
            return logits, logits_dist
        return (logits + logits_dist) / 2

    def forward(self, x: torch.Tensor):
        return self.forward_head(self.forward_features(x))


# --------------------------------------------------------------------------------------- official checkpoints
_BLOCK_RENAMES = (
    ("mixer.m.", "mixer."),  # Residual(Attention) wrapper
    ("ffn.m.", "ffn."),  # Residual(FFN) wrapper
    ("mixer.conv1.", "mixer.conv1x1."),
    ("mixer.conv.", "mixer.conv3x3."),
    ("mixer.lkp.cv1.", "mixer.lkp.pw_in."),
    ("mixer.lkp.cv2.", "mixer.lkp.dw_large."),
    ("mixer.lkp.cv3.", "mixer.lkp.pw_mid."),
    ("mixer.lkp.cv4.", "mixer.lkp.to_weights."),
    ("mixer.bn.", "mixer.norm."),
    ("mixer.dw.", "mixer.q_dw."),
    ("mixer.proj.1.", "mixer.proj."),
)


def _official_to_ours(key: str) -> str:
    """Map one official LSNet key (model/lsnet.py names) to this module's names."""
    key = key.replace(".c.", ".conv.")
    if key.startswith("patch_embed."):
        return "stem." + key[len("patch_embed."):]
    if key.startswith(("head.", "head_dist.")):
        return key.replace(".bn.", ".norm.").replace(".l.", ".fc.")
    if key.startswith("blocks"):
        stage_name, index, rest = key.split(".", 2)
        stage, index = int(stage_name[len("blocks"):]) - 1, int(index)
        if stage > 0 and index < 2:
            return f"stages.{stage}.downsample.{index}.{rest}"
        for old, new in _BLOCK_RENAMES:
            if rest.startswith(old):
                rest = new + rest[len(old):]
        return f"stages.{stage}.blocks.{index - 2 if stage > 0 else index}.{rest}"
    return key


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: LSNet) -> dict[str, torch.Tensor]:
    """Official LSNet state dict (or ours) -> this model's keys; bias tables resized to the model's grid."""
    own = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        if key.endswith("attention_bias_idxs"):
            continue  # recomputed for every grid
        key = key if key in own else _official_to_ours(key)
        if key.startswith("head_dist.") and model.head_dist is None:
            continue  # a distilled checkpoint loaded into a plain model keeps only the main head
        if key.endswith("attention_biases") and key in own and value.shape != own[key].shape:
            side = math.isqrt(own[key].shape[1])
            value = resize_bias_table(value, (side, side))
        out[key] = value
    return out


# --------------------------------------------------------------------------------------------- configs
def _cfg(hf_hub_id: str = "", distilled: bool = False, **kwargs) -> dict:
    """timm pretrained cfg. `license`: THU-MIG/lsnet ships no LICENSE file and its README names none, so the
    terms of the official weights are not established ("unknown")."""
    return {
        "hf_hub_id": hf_hub_id,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (4, 4),
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.0.conv",
        "classifier": ("head.fc", "head_dist.fc") if distilled else "head.fc",
        "license": "unknown",
        "paper_ids": "arXiv:2503.23135",
        "paper_name": "LSNet: See Large, Focus Small",
        "origin_url": "https://github.com/jameslahm/lsnet",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "lsnet_t.in1k": _cfg(hf_hub_id="jameslahm/lsnet_t"),
    "lsnet_s.in1k": _cfg(hf_hub_id="jameslahm/lsnet_s"),
    "lsnet_b.in1k": _cfg(hf_hub_id="jameslahm/lsnet_b"),
    "lsnet_t_distilled.in1k": _cfg(hf_hub_id="jameslahm/lsnet_t_distill", distilled=True),
    "lsnet_s_distilled.in1k": _cfg(hf_hub_id="jameslahm/lsnet_s_distill", distilled=True),
    "lsnet_b_distilled.in1k": _cfg(hf_hub_id="jameslahm/lsnet_b_distill", distilled=True),
    "lsnet_test.untrained": _cfg(input_size=(3, 64, 64), pool_size=(1, 1)),
})

MODEL_ARGS = {
    "lsnet_t": dict(embed_dim=(64, 128, 256, 384), depth=(0, 2, 8, 10), num_heads=(3, 3, 3, 4)),
    "lsnet_s": dict(embed_dim=(96, 192, 320, 448), depth=(1, 2, 8, 10), num_heads=(3, 3, 3, 4)),
    "lsnet_b": dict(embed_dim=(128, 256, 384, 512), depth=(4, 6, 8, 10), num_heads=(3, 3, 3, 4)),
    # tiny, for fast tests of the whole contract: every block type appears once
    "lsnet_test": dict(embed_dim=(16, 32, 48, 64), depth=(1, 2, 1, 2), num_heads=(1, 1, 1, 2), img_size=128),
}


def _create_lsnet(variant: str, pretrained: bool = False, **kwargs) -> LSNet:
    base = variant.removesuffix("_distilled")
    if variant != base:
        kwargs.setdefault("distilled", True)
    return build_model(LSNet, variant, pretrained, checkpoint_filter_fn, **dict(MODEL_ARGS[base], **kwargs))


@register_model
def lsnet_t(pretrained: bool = False, **kwargs) -> LSNet:
    return _create_lsnet("lsnet_t", pretrained, **kwargs)


@register_model
def lsnet_s(pretrained: bool = False, **kwargs) -> LSNet:
    return _create_lsnet("lsnet_s", pretrained, **kwargs)


@register_model
def lsnet_b(pretrained: bool = False, **kwargs) -> LSNet:
    return _create_lsnet("lsnet_b", pretrained, **kwargs)


@register_model
def lsnet_t_distilled(pretrained: bool = False, **kwargs) -> LSNet:
    return _create_lsnet("lsnet_t_distilled", pretrained, **kwargs)


@register_model
def lsnet_s_distilled(pretrained: bool = False, **kwargs) -> LSNet:
    return _create_lsnet("lsnet_s_distilled", pretrained, **kwargs)


@register_model
def lsnet_b_distilled(pretrained: bool = False, **kwargs) -> LSNet:
    return _create_lsnet("lsnet_b_distilled", pretrained, **kwargs)


@register_model
def lsnet_test(pretrained: bool = False, **kwargs) -> LSNet:
    return _create_lsnet("lsnet_test", pretrained, **kwargs)

