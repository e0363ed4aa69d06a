"""LSNet: the timm contract, official parameter counts and checkpoint layout, any input size, fusion, errors."""
from __future__ import annotations

import time

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.utils import reparameterize_model

from contract import (
    check_default_cfg,
    check_device_dtype,
    check_features,
    check_forward_backward,
    check_fuse,
    check_fx,
    check_grad_checkpointing,
    check_official_checkpoint,
    check_state_dict_round_trip,
    check_torchscript,
    count_params,
    random_official_state_dict,
    randomize_batchnorm,
    read_manifest,
)
from lsnet.deploy import fuse, is_fused
from lsnet.models.lsnet import checkpoint_filter_fn, relative_offset_index
from lsnet.ops import ska_backend

OFFICIAL = {  # our name -> official manifest
    "lsnet_t": "lsnet_t",
    "lsnet_s": "lsnet_s",
    "lsnet_b": "lsnet_b",
    "lsnet_t_distilled": "lsnet_t_distill",
    "lsnet_s_distilled": "lsnet_s_distill",
    "lsnet_b_distilled": "lsnet_b_distill",
}
# BN-fused counts of the official flops.py (@ cbe737c), which the paper rounds to 11.4M / 16.1M / 23.2M
FUSED_PARAMS = {"lsnet_t": 11_370_000, "lsnet_s": 16_098_000, "lsnet_b": 23_249_000}
TINY = "lsnet_test"
TINY_INPUT = (3, 64, 64)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_param_count_equals_official(name):
    _, total = read_manifest(OFFICIAL[name])
    assert count_params(timm.create_model(name)) == total


@pytest.mark.parametrize("name", sorted(FUSED_PARAMS))
def test_fused_param_count_matches_paper(name):
    fused = fuse(timm.create_model(name))
    assert abs(count_params(fused) - FUSED_PARAMS[name]) < 1000


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_keys_map_one_to_one(name):
    """Every official key (the manifest) lands on exactly one of our keys, with the same shape."""
    model = timm.create_model(name)
    official = random_official_state_dict(OFFICIAL[name])
    mapped = checkpoint_filter_fn(official, model)
    own = model.state_dict()
    assert set(mapped) == set(own), (set(mapped) ^ set(own))
    for key, value in mapped.items():
        assert value.shape == own[key].shape, key
    assert len(mapped) == len(official) - sum(k.endswith("attention_bias_idxs") for k in official)


@pytest.mark.parametrize("name", ["lsnet_t", "lsnet_b_distilled"])
def test_official_checkpoint_loads_through_timm(name, tmp_path):
    check_official_checkpoint(name, OFFICIAL[name], tmp_path)


def test_training_container_uses_model_entry_unless_told(tmp_path):
    model_sd, ema_sd = random_official_state_dict("lsnet_t", 0), random_official_state_dict("lsnet_t", 1)
    path = tmp_path / "lsnet_t.pth"
    torch.save({"model": model_sd, "model_ema": ema_sd, "epoch": 299}, path)
    overlay = dict(file=str(path))
    key = "patch_embed.0.c.weight"
    plain = timm.create_model("lsnet_t", pretrained=True, pretrained_cfg_overlay=overlay)
    torch.testing.assert_close(plain.stem[0].conv.weight, model_sd[key])
    ema = timm.create_model("lsnet_t", pretrained=True, pretrained_cfg_overlay=overlay, checkpoint_entry="model_ema")
    torch.testing.assert_close(ema.stem[0].conv.weight, ema_sd[key])


def test_pretrained_adapts_classes_and_channels(tmp_path):
    path = tmp_path / "lsnet_t.pth"
    torch.save(random_official_state_dict("lsnet_t"), path)
    model = timm.create_model(
        "lsnet_t", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), num_classes=10, in_chans=1
    ).eval()
    assert model(torch.randn(1, 1, 96, 96)).shape == (1, 10)


def test_distilled_checkpoint_into_plain_model(tmp_path):
    path = tmp_path / "lsnet_t_distill.pth"
    torch.save({"model": random_official_state_dict("lsnet_t_distill")}, path)
    model = timm.create_model("lsnet_t", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert model.head_dist is None


def test_no_network_error_is_fast_and_says_how_to_load_a_file():
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"pretrained_cfg_overlay=dict\(file="):
        timm.create_model("lsnet_t", pretrained=True)
    assert time.perf_counter() - start < 10


def test_pretrained_cfgs():
    cfg = timm.create_model("lsnet_t").pretrained_cfg
    assert cfg["hf_hub_id"] == "jameslahm/lsnet_t"
    assert cfg["classifier"] == "head.fc" and cfg["first_conv"] == "stem.0.conv"
    assert timm.create_model("lsnet_b_distilled").pretrained_cfg["classifier"] == ("head.fc", "head_dist.fc")
    assert {"lsnet_t", "lsnet_s", "lsnet_b", "lsnet_t_distilled"} <= set(timm.list_models("lsnet*"))


def _golden_official_state_dict() -> dict[str, torch.Tensor]:
    """Official-layout tensors (keys and order of `fixtures/manifests/lsnet_golden.txt`), float64, seed 0.

    One N(0, 1) draw per floating tensor in file order: running_var 0.5 + |z|; BN/GroupNorm weights 1 + 0.1 z;
    conv/linear weights z / sqrt(fan_in); attention_biases z; other biases and running_mean 0.1 z. Integer
    buffers (num_batches_tracked, attention_bias_idxs) are zeros and take no draw.
    """
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in read_manifest("lsnet_golden")[0].items():
        if key.endswith(("num_batches_tracked", "_idxs")):
            state[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        z = torch.randn(shape, generator=gen, dtype=torch.float64)
        if key.endswith("running_var"):
            state[key] = 0.5 + z.abs()
        elif key.endswith(("bn.weight", "norm.weight")):
            state[key] = 1 + 0.1 * z
        elif len(shape) > 1 and not key.endswith("attention_biases"):
            state[key] = z / (z[0].numel() ** 0.5)
        else:
            state[key] = z if key.endswith("attention_biases") else 0.1 * z
    return state


# Logits of the official code: github.com/THU-MIG/lsnet (= jameslahm/lsnet) @ cbe737c92b7c, model/lsnet.py run
# unmodified on CPU in float64 (torch.set_default_dtype(torch.float64)) with timm 1.0.31, as
#   LSNet(img_size=224, patch_size=8, num_classes=5, embed_dim=[16, 32, 48, 64], depth=[1, 2, 1, 2],
#         num_heads=[1, 1, 1, 2], distillation=True)
# (every block type, a 4x4 stage-4 grid with its 16-entry bias table, and the averaged distillation head),
# with `_golden_official_state_dict()` loaded by load_state_dict (keys and shapes: that model's state_dict, stored
# as fixtures/manifests/lsnet_golden.txt), then .eval(), on the seed-1 float64 input below. Two things were
# swapped in the throw-away harness, never in the model file: the official SKA is a Triton kernel (model/ska.py),
# replaced by a plain PyTorch module computing the same formula, o[b,c,h,w] = sum_{kh,kw} x[b,c,h+kh-1,w+kw-1] *
# w[b, c mod (C/8), 3 kh + kw, h, w] with zero padding (F.unfold of x times w tiled C/(C/8) times along channels,
# summed over the 9 taps); and timm.models.registry.register_model was made a no-op before the import (the
# file's timm-0.5.4-era cfg dicts do not register in timm 1.x; the test builds the class directly).
GOLDEN = [[-3.7425272663120817, 0.6145381456636891, -1.0701710275186558, 1.2741660586086532, -2.0942374428304595],
          [-2.559777303550595, -0.5313308380491853, -0.9451504632274256, -0.02888567009851939, -2.616104915078644]]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_golden_output_of_official_code(backend):
    model = timm.create_model(TINY, img_size=224, num_classes=5, distilled=True).double()
    model.load_state_dict(checkpoint_filter_fn(_golden_official_state_dict(), model))
    model.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with ska_backend(backend), torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out, torch.tensor(GOLDEN, dtype=torch.float64), rtol=1e-10, atol=1e-12,
                               msg=lambda m: f"{m}\nregenerate GOLDEN by running the official code as described "
                                             "above the GOLDEN constant")


# ------------------------------------------------------------------------------------------- timm contract
@pytest.mark.parametrize("name", [TINY, "lsnet_t_distilled"])
def test_forward_backward(name):
    size = TINY_INPUT if name == TINY else (3, 96, 96)
    check_forward_backward(name, size, drop_path_rate=0.1)


def test_features_and_intermediates():
    check_features(TINY, TINY_INPUT)
    check_features(TINY, (3, 72, 40), out_indices=(1, 3))


def test_features_only_lsnet_b():
    model = timm.create_model("lsnet_b", features_only=True, out_indices=(1, 2, 3)).eval()
    assert model.feature_info.channels() == [256, 384, 512]
    assert model.feature_info.reduction() == [16, 32, 64]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 128, 128))
    assert [tuple(f.shape[1:]) for f in feats] == [(256, 8, 8), (384, 4, 4), (512, 2, 2)]


def test_prune_intermediate_layers():
    model = timm.create_model(TINY).eval()
    kept = model.prune_intermediate_layers(indices=(0, 1))
    assert kept == [0, 1] and len(model.stages) == 2 and model.num_features == 32
    with torch.no_grad():
        assert model(torch.randn(1, *TINY_INPUT)).shape == (1, 32, 4, 4)  # head and pooling pruned


def test_state_dict_round_trip(tmp_path):
    check_state_dict_round_trip(TINY, TINY_INPUT, tmp_path)


@pytest.mark.parametrize("name", [TINY, "lsnet_t_distilled"])
def test_fuse_equivalence(name):
    check_fuse(name, TINY_INPUT if name == TINY else (3, 128, 128))


def test_fuse_entry_points_agree_and_fusing_twice_is_a_no_op():
    model = timm.create_model(TINY).eval().double()
    randomize_batchnorm(model)
    x = torch.randn(2, *TINY_INPUT, dtype=torch.float64)
    once = fuse(model)
    assert is_fused(once) and not is_fused(model)
    twice = fuse(once)
    via_timm = reparameterize_model(model)
    with torch.no_grad():
        expected = once(x)
        torch.testing.assert_close(twice(x), expected)
        torch.testing.assert_close(via_timm(x), expected)
        torch.testing.assert_close(model(x), expected)
    assert all(p.dtype == torch.float64 for p in once.parameters())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in once.modules()) == 1  # only LS conv's BN stays


@pytest.mark.parametrize("size", [(160, 160), (256, 256), (320, 320), (512, 512), (224, 320), (97, 131)])
def test_any_input_size(size):
    model = timm.create_model("lsnet_t", num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 5) and torch.isfinite(out).all()


def test_bias_table_at_224_is_the_official_gather():
    """At the training grid the bias equals table[:, idx] with the official first-appearance offset index."""
    model = timm.create_model("lsnet_t").eval()
    attn = model.stages[3].blocks[1].mixer
    with torch.no_grad():
        attn.attention_biases.normal_()
    points = [(r, c) for r in range(4) for c in range(4)]
    offsets, idx = {}, []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idx.append(offsets.setdefault(offset, len(offsets)))
    official_idx = torch.tensor(idx).view(16, 16)
    torch.testing.assert_close(relative_offset_index(4, 4), official_idx)
    torch.testing.assert_close(attn.attention_bias(4, 4), attn.attention_biases[:, official_idx])
    assert attn.attention_bias(5, 7).shape == (4, 35, 35)


def test_bias_cache_follows_weight_updates():
    """The official model caches biases at .eval() and goes stale when weights load later; ours does not."""
    model = timm.create_model(TINY).eval()
    randomize_batchnorm(model)  # the attention output projection's BN starts at zero
    x = torch.randn(1, 3, 128, 128)  # a 2x2 stage-4 grid (at 64 px the single token ignores its bias)
    with torch.no_grad():
        before = model(x)
        state = model.state_dict()
        for key in state:
            if key.endswith("attention_biases"):
                state[key] = torch.randn_like(state[key]) * 5
        model.load_state_dict(state)
        after = model(x)
        fresh = timm.create_model(TINY).eval()
        fresh.load_state_dict(state)
        torch.testing.assert_close(after, fresh(x))
    assert not torch.allclose(before, after)


def test_bias_table_resized_when_loading_into_another_img_size():
    model = timm.create_model("lsnet_t", img_size=384)
    mapped = checkpoint_filter_fn(random_official_state_dict("lsnet_t"), model)
    model.load_state_dict(mapped)
    assert model.stages[3].blocks[1].mixer.attention_biases.shape == (4, 36)


def test_distilled_heads():
    model = timm.create_model("lsnet_t_distilled", num_classes=4)
    x = torch.randn(2, 3, 64, 64)
    model.set_distilled_training(True)
    logits, logits_dist = model(x)
    model.eval()
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        expected = (model.head(pooled) + model.head_dist(pooled)) / 2
        torch.testing.assert_close(model(x), expected)
    assert logits.shape == logits_dist.shape == (2, 4)


def test_drop_path_is_real():
    model = timm.create_model(TINY, drop_path_rate=0.5).train()
    assert sum(type(m).__name__ == "DropPath" for m in model.modules()) > 0
    x = torch.randn(4, *TINY_INPUT)
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    b = model(x)
    assert not torch.allclose(a, b)
    plain = timm.create_model(TINY)
    assert not any(type(m).__name__ == "DropPath" for m in plain.modules())


def test_channels_last_and_grad_checkpointing_give_the_same_result():
    model = timm.create_model(TINY).eval()
    randomize_batchnorm(model)
    x = torch.randn(2, *TINY_INPUT)
    with torch.no_grad():
        expected = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, expected, rtol=1e-4, atol=1e-5)
    model = timm.create_model(TINY).train()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_without_lkp_ablation_variant():
    model = timm.create_model(TINY, lkp_kernel_size=0)
    assert not any("dw_large.conv" in n for n, _ in model.named_parameters())
    assert model(torch.randn(2, *TINY_INPUT)).shape == (2, 1000)


STATIC = ("dw", "dw", "dw", "attn")  # the "no dynamic aggregation" ablation: a static depthwise conv for each LS conv


def test_static_aggregation_ablation_is_a_plain_depthwise_conv():
    """mixer "dw": x + BN(DWConv_kxk(x)) with that conv's own weights, k = ska_kernel_size; no LKP, no SKA left."""
    torch.manual_seed(0)
    model = timm.create_model(TINY, mixers=STATIC, ska_kernel_size=5).eval()
    randomize_batchnorm(model)
    assert not any("lkp" in n for n, _ in model.named_parameters())
    mixer = model.stages[1].blocks[1].mixer
    x = torch.randn(2, 32, 9, 7)
    conv, bn = mixer.conv.conv, mixer.conv.bn
    assert conv.weight.shape == (32, 1, 5, 5)
    y = F.conv2d(x, conv.weight, padding=2, groups=32)
    want = x + (y - bn.running_mean[:, None, None]) / (bn.running_var[:, None, None] + bn.eps).sqrt() \
        * bn.weight[:, None, None] + bn.bias[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), want)
    attn = model.stages[3].blocks[1].mixer  # the attention stage keeps its mixer
    assert attn.__class__.__name__ == "Attention"


def test_static_aggregation_ablation_trains_and_fuses():
    check_forward_backward(TINY, TINY_INPUT, mixers=STATIC)
    check_fuse(TINY, TINY_INPUT, mixers=STATIC)
    with pytest.raises(ValueError, match="mixers must be one of"):
        timm.create_model(TINY, mixers=("ls", "ls", "static", "attn"))


def test_timm_api_odds_and_ends():
    model = timm.create_model(TINY, num_classes=3)
    assert model.num_features == model.head_hidden_size == 64
    assert all("attention_biases" in n for n in model.no_weight_decay())
    assert len(model.no_weight_decay()) == 1
    model.reset_classifier(7)
    assert model.get_classifier().fc.out_features == 7
    model.reset_classifier(0)
    assert model(torch.randn(2, *TINY_INPUT)).shape == (2, 64)
    groups = timm.models.group_parameters(model, model.group_matcher())
    assert len(groups) > 2


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.randn(1, 1, 64, 64), ValueError, "expects 3 input channels; got 1"),
        (torch.randn(3, 64, 64), ValueError, "4-D input"),
        (torch.randn(1, 3, 4, 64), ValueError, "too small for the stride-8 stem"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, "floating-point input"),
        ([[1.0]], TypeError, "expects a torch.Tensor"),
    ],
)
def test_bad_input_errors(x, error, match):
    model = timm.create_model(TINY)
    with pytest.raises(error, match=match):
        model(x)
    with pytest.raises(error, match=match):
        model.forward_intermediates(x)


def test_macs_match_the_official_count():
    """Fused LSNet-T: 0.317 GMACs in the official fvcore count (SKA as a 3x3 depthwise conv)."""
    from lsnet.analysis.flops import count_macs

    macs = count_macs(fuse(timm.create_model("lsnet_t")), (3, 224, 224))
    assert abs(macs / 1e9 - 0.317) < 0.005


def test_torch_compile_whole_model_without_graph_breaks():
    model = timm.create_model(TINY).eval()
    x = torch.randn(2, 3, 128, 128)
    for candidate in (model, fuse(model)):
        compiled = torch.compile(candidate, backend="eager", fullgraph=True)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), candidate(x))


def test_official_container_with_pickled_args_loads_and_is_not_kept(tmp_path):
    """Official containers pickle an argparse.Namespace; weights_only loading must accept exactly that."""
    import argparse

    path = tmp_path / "lsnet_t.pth"
    torch.save({"model": random_official_state_dict("lsnet_t"), "args": argparse.Namespace(lr=4e-3)}, path)
    model = timm.create_model("lsnet_t", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert "state_dict" not in model.pretrained_cfg
    features = timm.create_model("lsnet_t", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                                 features_only=True).eval()
    assert len(features(torch.randn(1, 3, 64, 64))) == 4


def test_untrusted_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": random_official_state_dict("lsnet_t"), "hook": time.perf_counter}, path)
    with pytest.raises(RuntimeError, match="weights_only=True"):
        timm.create_model("lsnet_t", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


# ---------------------------------------------------------------------- timm's model-suite contract (contract.py)
def test_default_cfg():
    check_default_cfg(TINY)
    check_default_cfg(TINY, distilled=True)


def test_fx():
    check_fx(TINY, TINY_INPUT)
    check_fx(TINY, (3, 80, 48), distilled=True)  # attention biases resized for another grid, inside the graph


def test_torchscript(tmp_path):
    check_torchscript(TINY, TINY_INPUT, tmp_path)
    check_torchscript(TINY, (3, 80, 48), distilled=True)


def test_device_dtype():
    check_device_dtype(TINY)


def test_grad_checkpointing_recomputes_each_block_once():
    check_grad_checkpointing(TINY, TINY_INPUT)
