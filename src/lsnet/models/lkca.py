"""LKCA-ViT: Interpreting and Improving Attention From the Perspective of Large Kernel Convolution (Li et al.,
arXiv 2401.05738), plus the plain-ViT baselines it is compared with, for timm.

Architecture as the official trainer implements it (CatworldLee/LKCA-MiniViTsTrainer-Pytorch-CIFAR-TinyImageNet
@ 7b9370a; not the URL printed in the paper): p x p patches -> linear embedding + learned absolute position
embedding (no class token) -> `depth` pre-norm blocks
[x + drop_path(LKCA(LN(x))), x + drop_path(FFN(LN(x)))] -> mean over tokens -> LayerNorm -> linear classifier.

LKCA (paper §III-B) on an s x s token grid, x: (B, N = s*s, C):
    v = W_v x;  out_i = sum_j K[s-1 - row_i + row_j, s-1 - col_i + col_j] v_j;  LKCA(x) = W_o out
with ONE learnable (2s-1) x (2s-1) kernel K per layer, shared by every channel and head (initialised to zero).
Two equivalent views, selected with `view=`:
  * 'conv' (Algorithm 2): v as a (B*C, 1, s, s) image, cross-correlated with K, zero padding s-1;
  * 'attention' (Algorithm 1): the N x N "attention" matrix whose rows are the s x s sliding windows of K,
    multiplied with v (no softmax, no q/k).
`heads` / `dim_head` only set the width of v (heads * dim_head), as in the official code.

`mixer='mhsa'` swaps LKCA for standard multi-head softmax self-attention with the same heads / dim_head (qkv
without bias), everything else unchanged: `vit_lite_*` are the LKCA configs with that one flag flipped.
`vit_cifar*` are the official trainer's own ViT baselines (the paper's "ViT", "ViT/0.5M".."ViT/8M", and
"ViT-Lite" = vit_cifar_1m): a class token, position embeddings for N+1 tokens and class-token pooling.

Patch size follows the official trainer from the image size: 32 -> 4 (CIFAR, SVHN), 64 -> 8 (Tiny-ImageNet),
256 -> 32; other sizes need an explicit `patch_size=`. Any input whose sides are multiples of the patch size
runs: the position embedding is resampled (bicubic) to the token grid and LKCA keeps its kernel (radius s-1 of
the build grid; farther token pairs get zero weight, exactly what zero padding gives).

    import lsnet, timm
    model = timm.create_model('lkca_vit', pretrained=True, pretrained_cfg_overlay=dict(file='checkpoint.pth'))
    model = timm.create_model('lkca_vit', img_size=64, num_classes=200)  # Tiny-ImageNet layout (patch 8)

Official per-epoch containers {'model_state_dict': ...} and the final bare state dict both load. The official
state dict's `cls_token` is unused by the LKCA models; `checkpoint_filter_fn` drops it (our LKCA models therefore
have `embed_dim` fewer parameters than the official module).
"""
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, resample_abs_pos_embed, to_2tuple
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers._fx import fx_tracing
from ._builder import build_model
from ._helpers import check_weight_source, drop_path_rates, rename_key

__all__ = ["LKCAViT", "LKCAttention", "Attention", "checkpoint_filter_fn", "lkca_attention_matrix"]

# official trainer (models/create_model.py): image size -> patch size
OFFICIAL_PATCH_SIZES = {32: 4, 64: 8, 256: 32}
# official trainer (utils/dataloader.py) normalisation
CIFAR100_MEAN, CIFAR100_STD = (0.5070, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
TINY_IMAGENET_MEAN, TINY_IMAGENET_STD = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)

VIEWS = ("conv", "attention")
MIXERS = ("lkca", "mhsa")
_Device = torch.device | str | None


def lkca_attention_matrix(kernel: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, N) matrix of LKCA's attention view (Algorithm 1) for an h x w token grid, N = h*w (row-major).

    A[(ri, ci), (rj, cj)] = kernel[pr + rj - ri, pc + cj - ci] with (pr, pc) the kernel's centre, and 0 where that
    offset falls outside the kernel. kernel: (kh, kw), odd sides.
    """
    height, width = grid
    kh, kw = kernel.shape
    pad_r, pad_c = kh // 2, kw // 2
    reach_r, reach_c = max(pad_r, height - 1), max(pad_c, width - 1)
    padded = F.pad(kernel, (reach_c - pad_c, reach_c - pad_c, reach_r - pad_r, reach_r - pad_r))
    rows = torch.arange(height, device=kernel.device)
    cols = torch.arange(width, device=kernel.device)
    d_row = rows[None, :] - rows[:, None] + reach_r  # [ri, rj]
    d_col = cols[None, :] - cols[:, None] + reach_c  # [ci, cj]
    matrix = padded[d_row[:, None, :, None], d_col[None, :, None, :]]  # (ri, ci, rj, cj)
    return matrix.reshape(height * width, height * width)


def grid_position_embedding(pos_embed: torch.Tensor, grid: tuple[int, int], build_grid: tuple[int, int],
                            num_prefix_tokens: int) -> torch.Tensor:
    """(1, prefix + gh*gw, D) embedding of the build grid -> the one for `grid` (bicubic resampling if it differs)."""
    if grid[0] == build_grid[0] and grid[1] == build_grid[1]:
        return pos_embed
    return resample_abs_pos_embed(pos_embed, [grid[0], grid[1]], old_size=[build_grid[0], build_grid[1]],
                                  num_prefix_tokens=num_prefix_tokens)


# torch.fx leaves: both branch on the token grid, which is only known when the traced graph runs
torch.fx.wrap("lkca_attention_matrix")
torch.fx.wrap("grid_position_embedding")


class LKCAttention(nn.Module):
    """Large Kernel Convolutional Attention: x (B, N, dim), grid (h, w) with h*w = N -> (B, N, dim).

    kernel: one (2*gh-1, 2*gw-1) parameter for the build grid (gh, gw), shared by all heads and channels.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int,
        grid_size: tuple[int, int],
        view: str = "conv",
        proj_drop: float = 0.0,
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if view not in VIEWS:
            raise ValueError(f"LKCAttention: view must be one of {VIEWS}; got {view!r}")
        self.view = view
        inner = num_heads * head_dim
        self.v = nn.Linear(dim, inner, bias=False, **dd)
        self.kernel = nn.Parameter(torch.zeros(2 * grid_size[0] - 1, 2 * grid_size[1] - 1, **dd))
        # the official module skips the output projection when it would be square-identity-shaped (1 head of dim)
        self.proj = nn.Linear(inner, dim, **dd) if not (num_heads == 1 and head_dim == dim) else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        batch, num_tokens, _ = x.shape
        v = self.v(x)
        if self.view == "conv":
            channels = v.shape[-1]
            image = v.transpose(1, 2).reshape(batch * channels, 1, grid[0], grid[1])
            kh, kw = self.kernel.shape
            out = F.conv2d(image, self.kernel[None, None].to(image.dtype), padding=(kh // 2, kw // 2))
            out = out.reshape(batch, channels, num_tokens).transpose(1, 2)
        else:
            out = lkca_attention_matrix(self.kernel.to(v.dtype), grid) @ v
        return self.proj_drop(self.proj(out))


class Attention(nn.Module):
    """Multi-head softmax self-attention (qkv without bias, scale head_dim**-0.5), x: (B, N, dim)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 device: _Device = None, dtype: torch.dtype | None = None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=False, **dd)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(inner, dim, **dd) if not (num_heads == 1 and head_dim == dim) else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        batch, num_tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, num_tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], dropout_p=self.attn_drop if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(batch, num_tokens, -1)
        return self.proj_drop(self.proj(out))


class Block(nn.Module):
    """Pre-norm transformer block: x + drop_path(mixer(LN(x))), then x + drop_path(FFN(LN(x)))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int,
        mlp_ratio: float,
        grid_size: tuple[int, int],
        mixer: str = "lkca",
        view: str = "conv",
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, **dd)
        if mixer == "lkca":
            self.attn = LKCAttention(dim, num_heads, head_dim, grid_size, view=view, proj_drop=proj_drop, **dd)
        else:
            self.attn = Attention(dim, num_heads, head_dim, attn_drop=attn_drop, proj_drop=proj_drop, **dd)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), grid))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> linear embedding, as a stride-p conv: (B, C, H, W) -> (B, D, H/p, W/p).

    The official Linear over patches flattened as (row, column, channel) is this conv with its weight reshaped
    (see checkpoint_filter_fn).
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, device: _Device = None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def _official_patch_size(img_size: tuple[int, int]) -> int:
    if img_size[0] != img_size[1] or img_size[0] not in OFFICIAL_PATCH_SIZES:
        supported = ", ".join(f"{s} (patch {p})" for s, p in OFFICIAL_PATCH_SIZES.items())
        raise ValueError(
            f"LKCA-ViT: img_size {img_size} has no official patch size; the official trainer supports {supported}. "
            "Pass patch_size= explicitly to build for another size"
        )
    return OFFICIAL_PATCH_SIZES[img_size[0]]


class LKCAViT(nn.Module):
    """LKCA-ViT (and its plain-ViT baselines with `mixer='mhsa'`).

    Args:
        img_size: build image size (int or (h, w)); sets the token grid, the position embedding and LKCA kernels.
        patch_size: None -> the official choice for img_size (32 -> 4, 64 -> 8, 256 -> 32).
        embed_dim, depth, num_heads, head_dim, mlp_ratio: width, blocks, heads, per-head width (None ->
            embed_dim // num_heads, as the official configs), FFN expansion.
        mixer: 'lkca' | 'mhsa' (standard softmax attention, the ViT baseline).
        view: LKCA's 'conv' (Algorithm 2) or 'attention' (Algorithm 1) computation; identical results.
        class_token: prepend a class token (official ViT baselines; not with mixer='lkca').
        global_pool: 'avg' (mean over tokens, LKCA) | 'token' (class token) | '' (no pooling).
        drop_path_rate, drop_path_schedule: stochastic depth; 'constant' applies the rate to every residual branch
            as the official code (one shared DropPath), 'linear' ramps 0 -> rate over blocks as timm does.
        drop_rate, proj_drop_rate, attn_drop_rate, pos_drop_rate: dropouts (all 0 officially).
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 32,
        patch_size: int | None = None,
        in_chans: int = 3,
        num_classes: int = 100,
        global_pool: str | None = None,
        embed_dim: int = 192,
        depth: int = 9,
        num_heads: int = 12,
        head_dim: int | None = None,
        mlp_ratio: float = 2.0,
        mixer: str = "lkca",
        view: str = "conv",
        class_token: bool = False,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        drop_path_schedule: str = "constant",
        device: _Device = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if mixer not in MIXERS:
            raise ValueError(f"LKCA-ViT: mixer must be one of {MIXERS}; got {mixer!r}")
        if view not in VIEWS:
            raise ValueError(f"LKCA-ViT: view must be one of {VIEWS}; got {view!r}")
        if class_token and mixer == "lkca":
            raise ValueError("LKCA-ViT: class_token=True needs mixer='mhsa' (LKCA convolves the token grid only)")
        global_pool = ("token" if class_token else "avg") if global_pool is None else global_pool
        if global_pool not in ("avg", "token", ""):
            raise ValueError(f"LKCA-ViT: global_pool must be 'avg', 'token' or ''; got {global_pool!r}")
        if global_pool == "token" and not class_token:
            raise ValueError("LKCA-ViT: global_pool='token' needs class_token=True")
        if drop_path_schedule not in ("constant", "linear"):
            raise ValueError(f"LKCA-ViT: drop_path_schedule must be 'constant' or 'linear'; got {drop_path_schedule!r}")
        img_size = to_2tuple(img_size)
        patch_size = _official_patch_size(img_size) if patch_size is None else patch_size
        if img_size[0] % patch_size or img_size[1] % patch_size:
            raise ValueError(f"LKCA-ViT: img_size {img_size} is not a multiple of patch_size {patch_size}")
        head_dim = embed_dim // num_heads if head_dim is None else head_dim

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.img_size = img_size
        self.grid_size = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.num_prefix_tokens = 1 if class_token else 0
        # forward_features returns the token grid (B, h, w, D) without a class token, else (B, 1 + h*w, D)
        self.output_fmt = "NLC" if class_token else "NHWC"
        self.feature_dim = -1  # channels are last in both (timm's non-standard models declare it so)
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size, **dd)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim, **dd)) if class_token else None
        num_tokens = self.grid_size[0] * self.grid_size[1] + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.randn(1, num_tokens, embed_dim, **dd))
        self.pos_drop = nn.Dropout(pos_drop_rate)
        dpr = [drop_path_rate] * depth if drop_path_schedule == "constant" else drop_path_rates(drop_path_rate, depth)
        # a ModuleList, not a Sequential: blocks take (x, grid)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, head_dim, mlp_ratio, self.grid_size, mixer=mixer, view=view,
                  proj_drop=proj_drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i], **dd)
            for i in range(depth)
        )
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size, module=f"blocks.{i}") for i in range(depth)]
        self.fc_norm = nn.LayerNorm(embed_dim, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """Official init: xavier_normal_ for every linear weight (the patch embedding as the Linear it is
        officially), zero biases, LKCA kernels 0, position embedding / class token ~ N(0, 1)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        proj = self.patch_embed.proj
        fan_in, fan_out = proj.weight[0].numel(), proj.weight.shape[0]
        nn.init.normal_(proj.weight, std=math.sqrt(2.0 / (fan_in + fan_out)))
        nn.init.zeros_(proj.bias)

    def set_view(self, view: str) -> None:
        """Switch every LKCA layer between the 'conv' and 'attention' computation (same weights, same outputs)."""
        if view not in VIEWS:
            raise ValueError(f"LKCA-ViT: view must be one of {VIEWS}; got {view!r}")
        for module in self.modules():
            if isinstance(module, LKCAttention):
                module.view = view

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^cls_token|^pos_embed|^patch_embed", blocks=[(r"^blocks\.(\d+)", None),
                                                                      (r"^fc_norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("avg", "token", "") or (global_pool == "token" and self.cls_token is None):
                raise ValueError(f"LKCA-ViT: cannot use global_pool={global_pool!r} with this model")
            self.global_pool = global_pool
        dd = dict(device=self.pos_embed.device, dtype=self.pos_embed.dtype)
        self.head = nn.Linear(self.embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()

    # ------------------------------------------------------------------------------------------------ forward
    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, C, H, W) -> tokens (B, prefix + h*w, D) with position embedding, and the grid (h, w)."""
        if not torch.jit.is_scripting():
            self._check_input(x)
        x = self.patch_embed(x)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        pos_embed = grid_position_embedding(self.pos_embed, grid, self.grid_size, self.num_prefix_tokens)
        return self.pos_drop(x + pos_embed), grid

    def _check_input(self, x: torch.Tensor) -> None:
        """A clear error for a wrong input; skipped under torch.fx tracing (shapes are proxies there)."""
        if fx_tracing():
            return
        if x.ndim != 4 or x.shape[-1] % self.patch_size or x.shape[-2] % self.patch_size:
            raise ValueError(
                f"LKCA-ViT: input must be (B, {self.in_chans}, H, W) with H and W multiples of the patch size "
                f"{self.patch_size}; got {tuple(x.shape)}"
            )

    def _output(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Tokens after the last block -> forward_features' format: (B, h, w, D) grid, or (B, 1 + h*w, D)."""
        if self.num_prefix_tokens:
            return x
        return x.reshape(x.shape[0], grid[0], grid[1], x.shape[-1])

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Block outputs selected by `indices` (last n if int, all if None).

        output_fmt 'NCHW' reshapes the patch tokens to (B, D, h, w) (class token dropped); 'NLC' returns
        (B, h*w, D). `norm` has no effect: the model's only final norm is applied after pooling.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"LKCA-ViT.forward_intermediates: output_fmt must be 'NCHW' or 'NLC'; got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        blocks = self.blocks if torch.jit.is_scripting() or not stop_early else self.blocks[: max_index + 1]
        x, grid = self._embed(x)
        intermediates = []
        for i, block in enumerate(blocks):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x, grid, use_reentrant=False)
            else:
                x = block(x, grid)
            if i in take_indices:
                tokens = x[:, self.num_prefix_tokens:]
                if output_fmt == "NCHW":
                    tokens = tokens.transpose(1, 2).reshape(x.shape[0], -1, grid[0], grid[1])
                intermediates.append(tokens)
        if intermediates_only:
            return intermediates
        return self._output(x, grid), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the blocks (and head) not needed for `indices`; returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: max_index + 1]
        if prune_head:
            self.fc_norm = nn.Identity()
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> after the last block (no final norm, as officially): the token grid (B, h, w, D), or
        the tokens (B, 1 + h*w, D) of a model with a class token (`output_fmt` 'NHWC' / 'NLC')."""
        x, grid = self._embed(x)
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x, grid, use_reentrant=False)
            else:
                x = block(x, grid)
        return self._output(x, grid)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens:].mean(dim=1) if self.num_prefix_tokens else x.mean(dim=(1, 2))
        elif self.global_pool == "token":
            x = x[:, 0]
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------- official checkpoints
_RENAMES = (
    (r"^pos_embedding$", "pos_embed"),
    (r"^to_patch_embedding\.1\.", "patch_embed.proj."),
    (r"^transformer\.layers\.(\d+)\.0\.norm\.", r"blocks.\1.norm1."),
    (r"^transformer\.layers\.(\d+)\.0\.fn\.dynamicqk$", r"blocks.\1.attn.kernel"),
    (r"^transformer\.layers\.(\d+)\.0\.fn\.to_v\.", r"blocks.\1.attn.v."),
    (r"^transformer\.layers\.(\d+)\.0\.fn\.to_qkv\.", r"blocks.\1.attn.qkv."),
    (r"^transformer\.layers\.(\d+)\.0\.fn\.to_out\.0\.", r"blocks.\1.attn.proj."),
    (r"^transformer\.layers\.(\d+)\.1\.norm\.", r"blocks.\1.norm2."),
    (r"^transformer\.layers\.(\d+)\.1\.fn\.net\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^transformer\.layers\.(\d+)\.1\.fn\.net\.3\.", r"blocks.\1.mlp.fc2."),
    (r"^mlp_head\.0\.", "fc_norm."),
    (r"^mlp_head\.1\.", "head."),
)


def _fit_kernel(kernel: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Centre-crop or zero-pad an LKCA kernel to `shape` (both odd): same weights for every offset both cover."""
    for dim, size in ((0, shape[0]), (1, shape[1])):
        diff = kernel.shape[dim] - size
        if diff > 0:
            kernel = kernel.narrow(dim, diff // 2, size)
        elif diff < 0:
            pad = [0, 0, 0, 0]
            pad[2 * (1 - dim)] = pad[2 * (1 - dim) + 1] = -diff // 2
            kernel = F.pad(kernel, pad)
    return kernel


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: LKCAViT) -> dict[str, torch.Tensor]:
    """Official LKCA / trainer-ViT state dict (or ours) -> this model's keys.

    Official -> ours: pos_embedding -> pos_embed; to_patch_embedding.1 (Linear over (row, col, channel) patches)
    -> patch_embed.proj (conv weight); transformer.layers.i.0.norm / .0.fn.{dynamicqk,to_v,to_qkv,to_out.0} ->
    blocks.i.norm1 / attn.{kernel,v,qkv,proj}; transformer.layers.i.1.norm / .1.fn.net.{0,3} -> blocks.i.norm2 /
    mlp.{fc1,fc2}; mlp_head.{0,1} -> fc_norm / head. The unused `cls_token` of the LKCA models is dropped.
    Position embeddings are resampled and LKCA kernels centre-cropped / zero-padded when the token grid differs.
    """
    if isinstance(state_dict.get("model_state_dict"), Mapping):  # an official per-epoch container passed directly
        state_dict = state_dict["model_state_dict"]
    own = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        key = key if key in own else rename_key(key, _RENAMES)
        if key == "cls_token" and key not in own:
            continue  # vestigial in the official LKCA models (never used in forward)
        if key == "patch_embed.proj.weight" and value.ndim == 2:
            channels = value.shape[1] // model.patch_size**2
            if value.shape[1] % model.patch_size**2 or channels not in (3, model.in_chans):
                patch = int(round(math.sqrt(value.shape[1] / 3)))
                raise ValueError(
                    f"checkpoint patch embedding is for {patch}x{patch} patches but the model uses "
                    f"{model.patch_size}x{model.patch_size}; create it with patch_size={patch} (or the img_size "
                    "the checkpoint was trained at)"
                )
            patch = model.patch_size
            value = value.reshape(value.shape[0], patch, patch, channels).permute(0, 3, 1, 2)
        elif key.endswith("attn.kernel") and key in own:
            value = _fit_kernel(value.reshape(value.shape[-2:]), tuple(own[key].shape))
        elif key == "pos_embed" and value.shape != own[key].shape:
            prefix = model.num_prefix_tokens
            old_side = int(round(math.sqrt(value.shape[1] - prefix)))
            value = resample_abs_pos_embed(value, list(model.grid_size), old_size=[old_side, old_side],
                                           num_prefix_tokens=prefix)
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------------------- cfgs
def _cfg(**kwargs) -> dict:
    """timm cfg. `license`: the official trainer repository ships no LICENSE file and its README names none
    ("unknown"); no official weights are published."""
    return {
        "num_classes": 100,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),  # token grid at 32 px (patch 4)
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "fixed_input_size": False,
        # official trainer normalisation for CIFAR-100 (utils/dataloader.py); see CIFAR10_* / TINY_IMAGENET_* above
        "mean": CIFAR100_MEAN,
        "std": CIFAR100_STD,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "unknown",
        "paper_ids": "arXiv:2401.05738",
        "paper_name": "Interpreting and Improving Attention From the Perspective of Large Kernel Convolution",
        "origin_url": "https://github.com/CatworldLee/LKCA-MiniViTsTrainer-Pytorch-CIFAR-TinyImageNet",
        **kwargs,
    }


# official create_model.py configs (dim, depth, heads, dim_head = dim // heads, mlp_dim_ratio)
_LKCA_CONFIGS = {
    "lkca_vit": dict(embed_dim=210, depth=10, num_heads=10, mlp_ratio=2),
    "lkca_vit_05m": dict(embed_dim=100, depth=8, num_heads=4, mlp_ratio=2),
    "lkca_vit_1m": dict(embed_dim=136, depth=9, num_heads=8, mlp_ratio=2),
    "lkca_vit_2m": dict(embed_dim=192, depth=9, num_heads=12, mlp_ratio=2),
    "lkca_vit_4m": dict(embed_dim=246, depth=11, num_heads=6, mlp_ratio=2),
    "lkca_vit_8m": dict(embed_dim=306, depth=14, num_heads=6, mlp_ratio=2),
    "lkca_vit_12m": dict(embed_dim=360, depth=12, num_heads=8, mlp_ratio=3),
}
_VIT_CIFAR_CONFIGS = {
    "vit_cifar": dict(embed_dim=192, depth=9, num_heads=12, mlp_ratio=2),
    "vit_cifar_05m": dict(embed_dim=120, depth=4, num_heads=4, mlp_ratio=2),
    "vit_cifar_1m": dict(embed_dim=136, depth=7, num_heads=8, mlp_ratio=2),
    "vit_cifar_2m": dict(embed_dim=200, depth=6, num_heads=8, mlp_ratio=2),
    "vit_cifar_4m": dict(embed_dim=264, depth=7, num_heads=8, mlp_ratio=2),
    "vit_cifar_8m": dict(embed_dim=312, depth=10, num_heads=8, mlp_ratio=2),
}
_MHSA = dict(mixer="mhsa")
_VIT_TOKEN = dict(mixer="mhsa", class_token=True, global_pool="token")
MODEL_ARGS = {
    **_LKCA_CONFIGS,
    "lkca_largevit_cnn": dict(_LKCA_CONFIGS["lkca_vit_2m"], view="conv"),
    "lkca_largevit_vit": dict(_LKCA_CONFIGS["lkca_vit_2m"], view="attention"),
    # paper names (Tables I, V): LKCA-T = ViT/1M-LKCA, LKCA-B = ViT-LKCA, LKCA-L = the 12M model
    "lkca_t": _LKCA_CONFIGS["lkca_vit_1m"],
    "lkca_b": _LKCA_CONFIGS["lkca_vit"],
    "lkca_l": _LKCA_CONFIGS["lkca_vit_12m"],
    **{name.replace("lkca_vit", "vit_lite"): dict(cfg, **_MHSA) for name, cfg in _LKCA_CONFIGS.items()},
    **{name: dict(cfg, **_VIT_TOKEN) for name, cfg in _VIT_CIFAR_CONFIGS.items()},
    "lkca_test": dict(embed_dim=24, depth=3, num_heads=2, mlp_ratio=2),  # 3 blocks: timm wants >= 3 feature maps
}

default_cfgs = generate_default_cfgs({f"{name}.untrained": _cfg() for name in MODEL_ARGS})


def _create_lkca(variant: str, pretrained: bool = False, **kwargs) -> LKCAViT:
    check_weight_source(variant, pretrained, kwargs)
    depth = kwargs.get("depth", MODEL_ARGS[variant]["depth"])
    out_indices = kwargs.pop("out_indices", min(4, depth))  # last blocks, as timm's ViTs
    return build_model(
        LKCAViT, variant, pretrained, checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=out_indices),
        **dict(MODEL_ARGS[variant], **kwargs),
    )


@register_model
def lkca_vit(pretrained: bool = False, **kwargs) -> LKCAViT:
    """Official 'vit-lkca' (2.71M @ CIFAR-100), the paper's ViT-LKCA / LKCA-B."""
    return _create_lkca("lkca_vit", pretrained, **kwargs)


@register_model
def lkca_vit_05m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("lkca_vit_05m", pretrained, **kwargs)


@register_model
def lkca_vit_1m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("lkca_vit_1m", pretrained, **kwargs)


@register_model
def lkca_vit_2m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("lkca_vit_2m", pretrained, **kwargs)


@register_model
def lkca_vit_4m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("lkca_vit_4m", pretrained, **kwargs)


@register_model
def lkca_vit_8m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("lkca_vit_8m", pretrained, **kwargs)


@register_model
def lkca_vit_12m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("lkca_vit_12m", pretrained, **kwargs)


@register_model
def lkca_largevit_cnn(pretrained: bool = False, **kwargs) -> LKCAViT:
    """Official 'largevit-cnn': the 2M config in the convolution view."""
    return _create_lkca("lkca_largevit_cnn", pretrained, **kwargs)


@register_model
def lkca_largevit_vit(pretrained: bool = False, **kwargs) -> LKCAViT:
    """Official 'largevit-vit': the 2M config in the attention-matrix view."""
    return _create_lkca("lkca_largevit_vit", pretrained, **kwargs)


@register_model
def lkca_t(pretrained: bool = False, **kwargs) -> LKCAViT:
    """Paper's LKCA-T (= lkca_vit_1m)."""
    return _create_lkca("lkca_t", pretrained, **kwargs)


@register_model
def lkca_b(pretrained: bool = False, **kwargs) -> LKCAViT:
    """Paper's LKCA-B (= lkca_vit)."""
    return _create_lkca("lkca_b", pretrained, **kwargs)


@register_model
def lkca_l(pretrained: bool = False, **kwargs) -> LKCAViT:
    """Paper's LKCA-L (= lkca_vit_12m)."""
    return _create_lkca("lkca_l", pretrained, **kwargs)


@register_model
def vit_lite(pretrained: bool = False, **kwargs) -> LKCAViT:
    """lkca_vit's config with softmax multi-head attention instead of LKCA."""
    return _create_lkca("vit_lite", pretrained, **kwargs)


@register_model
def vit_lite_05m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("vit_lite_05m", pretrained, **kwargs)


@register_model
def vit_lite_1m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("vit_lite_1m", pretrained, **kwargs)


@register_model
def vit_lite_2m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("vit_lite_2m", pretrained, **kwargs)


@register_model
def vit_lite_4m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("vit_lite_4m", pretrained, **kwargs)


@register_model
def vit_lite_8m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("vit_lite_8m", pretrained, **kwargs)


@register_model
def vit_lite_12m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("vit_lite_12m", pretrained, **kwargs)


@register_model
def vit_cifar(pretrained: bool = False, **kwargs) -> LKCAViT:
    """Official trainer 'vit' (paper's ViT / ViT-Small baseline, 2.69M @ CIFAR-10): class token, token pooling."""
    return _create_lkca("vit_cifar", pretrained, **kwargs)


@register_model
def vit_cifar_05m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("vit_cifar_05m", pretrained, **kwargs)


@register_model
def vit_cifar_1m(pretrained: bool = False, **kwargs) -> LKCAViT:
    """Official trainer 'vit-1m' (paper's ViT/1M and ViT-Lite, 1.06M @ CIFAR-10)."""
    return _create_lkca("vit_cifar_1m", pretrained, **kwargs)


@register_model
def vit_cifar_2m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("vit_cifar_2m", pretrained, **kwargs)


@register_model
def vit_cifar_4m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("vit_cifar_4m", pretrained, **kwargs)


@register_model
def vit_cifar_8m(pretrained: bool = False, **kwargs) -> LKCAViT:
    return _create_lkca("vit_cifar_8m", pretrained, **kwargs)


@register_model
def lkca_test(pretrained: bool = False, **kwargs) -> LKCAViT:
    """Tiny model for fast tests."""
    return _create_lkca("lkca_test", pretrained, **kwargs)
