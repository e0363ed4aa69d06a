"""LKCA-ViT and its ViT baselines: timm contract, official parameter counts and checkpoint layout, the two
equivalent LKCA views, patch sizes and other input sizes.

oneDNN is switched off in this module (per-shape kernel setup dominates on tiny models; same math).
"""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

import lsnet.models.lkca  # noqa: F401  (registers the models)
from contract import (
    check_default_cfg,
    check_device_dtype,
    check_features,
    check_forward_backward,
    check_fx,
    check_grad_checkpointing,
    check_state_dict_round_trip,
    check_torchscript,
    count_params,
    onednn,
    random_official_state_dict,
    read_manifest,
)
from lsnet.models.lkca import LKCAViT, checkpoint_filter_fn, lkca_attention_matrix

OFFICIAL = ("lkca_vit", "lkca_vit_05m", "lkca_vit_1m", "lkca_vit_2m", "lkca_vit_4m", "lkca_vit_8m", "lkca_vit_12m",
            "lkca_largevit_cnn", "lkca_largevit_vit")
ALIASES = {"lkca_t": "lkca_vit_1m", "lkca_b": "lkca_vit", "lkca_l": "lkca_vit_12m"}
TINY = "lkca_test"
TINY_INPUT = (3, 32, 32)


@pytest.fixture(autouse=True, scope="module")
def _native_conv():
    with onednn(False):
        yield


def _randomize_kernels(model: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("attn.kernel"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)


# ------------------------------------------------------------------------------------------ parameter counts
@pytest.mark.parametrize("name", OFFICIAL + tuple(ALIASES))
def test_param_count_equals_official_minus_cls_token(name):
    """Official totals to the element; the official module also holds an unused (1, 1, dim) cls_token we drop."""
    model = timm.create_model(name)
    _, total = read_manifest(ALIASES.get(name, name))
    assert count_params(model) + model.embed_dim == total


@pytest.mark.parametrize("name, classes, img, paper_m", [
    ("lkca_t", 10, 32, 1.03), ("lkca_b", 10, 32, 2.69), ("lkca_vit_05m", 10, 32, 0.50), ("lkca_vit_2m", 10, 32, 2.03),
    ("lkca_vit_4m", 10, 32, 4.05), ("lkca_t", 200, 64, 1.07), ("lkca_b", 200, 64, 2.76), ("lkca_l", 200, 64, 12.65),
    ("vit_cifar", 10, 32, 2.69), ("vit_cifar_05m", 10, 32, 0.48), ("vit_cifar_1m", 10, 32, 1.06),
    ("vit_cifar_2m", 10, 32, 1.96), ("vit_cifar_4m", 10, 32, 3.95), ("vit_cifar_8m", 10, 32, 7.85),
    ("vit_cifar_1m", 200, 64, 1.11), ("vit_cifar", 200, 64, 2.76),
])
def test_param_count_matches_paper(name, classes, img, paper_m):
    """Paper Tables I-V (CIFAR-10: 10 classes @32; Tiny-ImageNet: 200 classes @64), counted as the official code
    does (with the LKCA models' unused cls_token)."""
    model = timm.create_model(name, num_classes=classes, img_size=img)
    official = count_params(model) + (0 if model.cls_token is not None else model.embed_dim)
    assert round(official / 1e6, 2) == paper_m


def test_vit_lite_is_one_flag():
    lkca, vit = timm.create_model("lkca_vit_1m"), timm.create_model("vit_lite_1m")
    flipped = timm.create_model("lkca_vit_1m", mixer="mhsa")
    assert count_params(vit) == count_params(flipped)
    assert [n for n, _ in vit.named_parameters()] == [n for n, _ in flipped.named_parameters()]
    assert lkca.embed_dim == vit.embed_dim and len(lkca.blocks) == len(vit.blocks)


# ------------------------------------------------------------------------------------------------- contract
def test_forward_backward():
    check_forward_backward(TINY, TINY_INPUT)
    check_forward_backward(TINY, TINY_INPUT, view="attention", drop_path_rate=0.1)
    check_forward_backward(TINY, TINY_INPUT, mixer="mhsa")
    check_forward_backward(TINY, TINY_INPUT, mixer="mhsa", class_token=True)
    check_forward_backward(TINY, (3, 48, 40))  # other input size: pos embed resampled, same LKCA kernels


def test_features():
    check_features(TINY, TINY_INPUT, out_indices=(0, 1))
    check_features(TINY, (3, 64, 64), out_indices=(1,), img_size=64)
    check_features(TINY, (3, 48, 24), out_indices=(0, 1))  # H != W: heights checked too
    check_features(TINY, TINY_INPUT, out_indices=(0, 1), mixer="mhsa", class_token=True)


def test_state_dict_round_trip(tmp_path):
    check_state_dict_round_trip(TINY, TINY_INPUT, tmp_path)


def test_head_and_intermediates_api():
    model = timm.create_model(TINY, num_classes=5).eval()
    x = torch.randn(2, *TINY_INPUT)
    tokens = model.forward_features(x)
    assert tokens.shape == (2, 8, 8, 24) and model.output_fmt == "NHWC"  # the token grid (no class token)
    assert model.forward_head(tokens, pre_logits=True).shape == (2, model.head_hidden_size)
    _, nlc = model.forward_intermediates(x, indices=1, output_fmt="NLC")
    assert nlc[0].shape == (2, 64, 24)
    model.reset_classifier(0)
    assert model(x).shape == (2, 24)
    model.set_grad_checkpointing(True)
    assert model(x).shape == (2, 24)
    groups = timm.models.group_parameters(model, model.group_matcher())
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))
    assert model.prune_intermediate_layers([0]) == [0] and len(model.blocks) == 1


def test_drop_path_schedules():
    constant = timm.create_model(TINY, drop_path_rate=0.2)
    linear = timm.create_model(TINY, drop_path_rate=0.2, drop_path_schedule="linear")
    assert [b.drop_path1.drop_prob for b in constant.blocks] == [0.2, 0.2, 0.2]  # official: one rate everywhere
    assert isinstance(linear.blocks[0].drop_path1, torch.nn.Identity)
    assert [b.drop_path1.drop_prob for b in linear.blocks[1:]] == [0.1, 0.2]


# ------------------------------------------------------------------------------------------ the two views
def test_attention_matrix_is_algorithm_1():
    """lkca_attention_matrix equals the paper's Algorithm 1 (sliding s x s windows over the (2s-1)^2 kernel)."""
    side = 5
    kernel = torch.randn(2 * side - 1, 2 * side - 1)
    expected = torch.zeros(side * side, side * side)
    for i in range(side):
        for j in range(side):
            window = kernel[side - 1 - i: 2 * side - 1 - i, side - 1 - j: 2 * side - 1 - j]
            expected[i * side + j] = window.flatten()
    torch.testing.assert_close(lkca_attention_matrix(kernel, (side, side)), expected)


@pytest.mark.parametrize("input_size", [(3, 32, 32), (3, 48, 40), (3, 16, 24)])
def test_conv_and_attention_views_agree(input_size):
    """Algorithm 2 (conv) == Algorithm 1 (attention matrix), outputs and gradients, also off the build grid."""
    conv = timm.create_model(TINY, view="conv").double()
    _randomize_kernels(conv)
    attention = timm.create_model(TINY, view="attention").double()
    attention.load_state_dict(conv.state_dict())
    x = torch.randn(2, *input_size, dtype=torch.float64)
    out_conv, out_attention = conv(x), attention(x)
    torch.testing.assert_close(out_conv, out_attention)
    out_conv.square().sum().backward()
    out_attention.square().sum().backward()
    for (name, a), (_, b) in zip(conv.named_parameters(), attention.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    conv.set_view("attention")
    torch.testing.assert_close(conv(x), out_attention)


def test_largevit_names_pick_the_views():
    assert timm.create_model("lkca_largevit_cnn").blocks[0].attn.view == "conv"
    assert timm.create_model("lkca_largevit_vit").blocks[0].attn.view == "attention"


# ------------------------------------------------------------------------------------ official checkpoints
def _official_forward(state: dict[str, torch.Tensor], x: torch.Tensor, depth: int, patch: int) -> torch.Tensor:
    """The official Large_ViT_cnn forward, written against its state dict (einops patterns spelled out)."""
    batch, chans, height, width = x.shape
    x = x.reshape(batch, chans, height // patch, patch, width // patch, patch)
    x = x.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // patch) * (width // patch), patch * patch * chans)
    x = F.linear(x, state["to_patch_embedding.1.weight"], state["to_patch_embedding.1.bias"])
    x = x + state["pos_embedding"]
    side = height // patch
    for i in range(depth):
        p = f"transformer.layers.{i}."
        y = F.layer_norm(x, x.shape[-1:], state[p + "0.norm.weight"], state[p + "0.norm.bias"])
        v = F.linear(y, state[p + "0.fn.to_v.weight"])
        v = v.transpose(1, 2).reshape(-1, 1, side, side)
        v = F.conv2d(v, state[p + "0.fn.dynamicqk"], padding=side - 1)
        v = v.reshape(batch, -1, side * side).transpose(1, 2)
        x = x + F.linear(v, state[p + "0.fn.to_out.0.weight"], state[p + "0.fn.to_out.0.bias"])
        y = F.layer_norm(x, x.shape[-1:], state[p + "1.norm.weight"], state[p + "1.norm.bias"])
        y = F.gelu(F.linear(y, state[p + "1.fn.net.0.weight"], state[p + "1.fn.net.0.bias"]))
        x = x + F.linear(y, state[p + "1.fn.net.3.weight"], state[p + "1.fn.net.3.bias"])
    x = F.layer_norm(x.mean(dim=1), x.shape[-1:], state["mlp_head.0.weight"], state["mlp_head.0.bias"])
    return F.linear(x, state["mlp_head.1.weight"], state["mlp_head.1.bias"])


def test_official_checkpoint_loads_and_matches_official_forward(tmp_path):
    """Official layout (manifest), per-epoch container, through timm's pretrained path; same logits as the
    official forward (this pins the patch-flattening order and the kernel orientation)."""
    state = random_official_state_dict("lkca_vit_05m")
    state = {k: v * 50 if k.endswith("dynamicqk") else v for k, v in state.items()}  # make LKCA matter
    path = tmp_path / "best.pth"
    torch.save({"model_state_dict": state, "epoch": 7, "optimizer_state_dict": {}, "scheduler": {}}, path)
    model = timm.create_model("lkca_vit_05m", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    own = model.state_dict()
    assert "cls_token" not in own  # vestigial official parameter, dropped by checkpoint_filter_fn
    torch.testing.assert_close(own["blocks.3.attn.kernel"], state["transformer.layers.3.0.fn.dynamicqk"][0, 0])
    x = torch.randn(2, *TINY_INPUT)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _official_forward(state, x, depth=8, patch=4), rtol=1e-5, atol=1e-7)
        model.set_view("attention")
        torch.testing.assert_close(model(x), _official_forward(state, x, depth=8, patch=4), rtol=1e-5, atol=1e-7)


def test_container_uses_model_state_dict_and_bare_files_load(tmp_path):
    state, other = random_official_state_dict("lkca_vit_05m", 0), random_official_state_dict("lkca_vit_05m", 1)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model_state_dict": state, "state_dict_ema": other, "epoch": 1}, path)
    model = timm.create_model("lkca_vit_05m", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(model.state_dict()["head.weight"], state["mlp_head.1.weight"])
    torch.save(other, path)  # the final official checkpoint.pth is a bare state dict
    bare = timm.create_model("lkca_vit_05m", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(bare.state_dict()["head.weight"], other["mlp_head.1.weight"])


def test_largevit_vit_checkpoint_loads_into_both_views(tmp_path):
    state = random_official_state_dict("lkca_largevit_vit")
    path = tmp_path / "largevit_vit.pth"
    torch.save(state, path)
    for name in ("lkca_largevit_vit", "lkca_largevit_cnn", "lkca_vit_2m"):
        timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_official_vit_baseline_layout_loads():
    """The official trainer's ViT (to_qkv, cls_token, N+1 position embeddings) maps onto vit_cifar_*."""
    model = timm.create_model("vit_cifar_05m")
    dim, hidden = 120, 240
    state = {"pos_embedding": torch.randn(1, 65, dim), "cls_token": torch.randn(1, 1, dim),
             "to_patch_embedding.1.weight": torch.randn(dim, 48), "to_patch_embedding.1.bias": torch.randn(dim),
             "mlp_head.0.weight": torch.randn(dim), "mlp_head.0.bias": torch.randn(dim),
             "mlp_head.1.weight": torch.randn(100, dim), "mlp_head.1.bias": torch.randn(100)}
    for i in range(4):
        p = f"transformer.layers.{i}."
        state.update({p + "0.norm.weight": torch.randn(dim), p + "0.norm.bias": torch.randn(dim),
                      p + "0.fn.to_qkv.weight": torch.randn(3 * dim, dim),
                      p + "0.fn.to_out.0.weight": torch.randn(dim, dim), p + "0.fn.to_out.0.bias": torch.randn(dim),
                      p + "1.norm.weight": torch.randn(dim), p + "1.norm.bias": torch.randn(dim),
                      p + "1.fn.net.0.weight": torch.randn(hidden, dim), p + "1.fn.net.0.bias": torch.randn(hidden),
                      p + "1.fn.net.3.weight": torch.randn(dim, hidden), p + "1.fn.net.3.bias": torch.randn(dim)})
    model.load_state_dict(checkpoint_filter_fn(state, model), strict=True)
    torch.testing.assert_close(model.cls_token, state["cls_token"], check_device=False)


def test_checkpoint_on_another_grid_is_adapted():
    """A 32px (8x8 grid) checkpoint into a model built for 48px with patch 4 (12x12): pos embed resampled,
    kernels zero-padded (same weights for every offset the 15x15 kernel covers)."""
    state = random_official_state_dict("lkca_vit_05m")
    model = LKCAViT(img_size=48, patch_size=4, embed_dim=100, depth=8, num_heads=4)
    mapped = checkpoint_filter_fn(state, model)
    model.load_state_dict(mapped, strict=True)
    kernel = model.blocks[0].attn.kernel
    assert kernel.shape == (23, 23)
    torch.testing.assert_close(kernel[4:-4, 4:-4], state["transformer.layers.0.0.fn.dynamicqk"][0, 0])
    assert kernel[:4].abs().sum() == 0
    with pytest.raises(ValueError, match="patch_size=4"):
        checkpoint_filter_fn(state, timm.create_model("lkca_vit_05m", img_size=64))


# -------------------------------------------------------------------------------------------------- sizes
def test_patch_size_follows_official_image_sizes():
    assert timm.create_model(TINY, img_size=32).patch_size == 4
    assert timm.create_model(TINY, img_size=64).patch_size == 8
    assert timm.create_model(TINY, img_size=256).patch_size == 32
    assert timm.create_model(TINY, img_size=48, patch_size=6).grid_size == (8, 8)
    with pytest.raises(ValueError, match="32 \\(patch 4\\), 64 \\(patch 8\\), 256 \\(patch 32\\)"):
        timm.create_model(TINY, img_size=48)
    with pytest.raises(ValueError, match="multiples of the patch size 4"):
        timm.create_model(TINY)(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="class_token=True needs mixer='mhsa'"):
        timm.create_model(TINY, class_token=True)


def test_pretrained_without_file_is_explained():
    with pytest.raises(RuntimeError, match="pretrained_cfg_overlay=dict\\(file="):
        timm.create_model(TINY, pretrained=True)


def test_default_cfgs():
    for name in OFFICIAL + tuple(ALIASES) + ("vit_lite", "vit_cifar", TINY):
        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        assert cfg["input_size"] == (3, 32, 32) and cfg["num_classes"] == 100
        assert cfg["mean"] == (0.5070, 0.4865, 0.4409) and cfg["std"] == (0.2673, 0.2564, 0.2762)
    assert timm.create_model(TINY).num_classes == 100


# ---------------------------------------------------------------------- timm's model-suite contract (contract.py)
TOKEN_MODEL = dict(mixer="mhsa", class_token=True)  # the vit_cifar layout: (B, 1 + N, D) tokens, token pooling


def test_default_cfg():
    check_default_cfg(TINY)
    check_default_cfg(TINY, view="attention")
    check_default_cfg(TINY, **TOKEN_MODEL)


def test_fx():
    check_fx(TINY, TINY_INPUT)
    check_fx(TINY, (3, 48, 40), view="attention")  # off the build grid: resampled position embedding
    check_fx(TINY, TINY_INPUT, **TOKEN_MODEL)


def test_torchscript(tmp_path):
    check_torchscript(TINY, TINY_INPUT, tmp_path)
    check_torchscript(TINY, (3, 48, 40), view="attention")
    check_torchscript(TINY, TINY_INPUT, **TOKEN_MODEL)


def test_device_dtype():
    check_device_dtype(TINY)
    check_device_dtype(TINY, **TOKEN_MODEL)


def test_grad_checkpointing_recomputes_each_block_once():
    check_grad_checkpointing(TINY, TINY_INPUT)
