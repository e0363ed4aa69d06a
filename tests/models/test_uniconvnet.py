"""UniConvNet: the timm contract, official parameter counts and checkpoint layout, a golden output of the official
code, the standalone RFA layer, and errors."""
from __future__ import annotations

import pytest
import timm
import torch

import lsnet.models.uniconvnet  # noqa: F401  (registers the models before the package wires them)
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
    read_manifest,
)
from lsnet.layers.dcnv3 import DCNv3
from lsnet.layers.rfa import ReceptiveFieldAggregator
from lsnet.models.uniconvnet import checkpoint_filter_fn
from lsnet.ops.dcnv3 import set_dcnv3_backend

VARIANTS = ["a", "p0", "p1", "p2", "n0", "n1", "n2", "n3", "t", "s", "b", "l", "xl"]
TINY = "uniconvnet_test"
SIZE = (3, 64, 64)


def test_forward_backward():
    check_forward_backward(TINY, SIZE, drop_path_rate=0.1)
    check_forward_backward(TINY, (3, 37, 50), in_chans=3)


def test_features_and_intermediates():
    check_features(TINY, SIZE)
    check_features(TINY, (3, 45, 71), out_indices=(1, 3))
    model = timm.create_model(TINY, features_only=True)
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [16, 32, 32, 48]


def test_state_dict_round_trip_and_fuse(tmp_path):
    check_state_dict_round_trip(TINY, SIZE, tmp_path)
    check_fuse(TINY, SIZE)  # nothing to fuse: reparameterize_model must leave outputs unchanged


def test_head_api():
    model = timm.create_model(TINY, num_classes=10).eval()
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 48, 2, 2)
        assert model.forward_head(features, pre_logits=True).shape == (2, model.head_hidden_size)
        assert model.num_features == model.head_hidden_size == 48 and model.in_chans == 3
        model.reset_classifier(5)
        assert model(x).shape == (2, 5) and model.get_classifier().out_features == 5
        model.reset_classifier(0, "")
        assert model(x).shape == (2, 48, 2, 2) and model.num_classes == 0
    pruned = timm.create_model(TINY)
    assert pruned.prune_intermediate_layers([1]) == [1]
    assert len(pruned.stages) == 2 and pruned.num_features == 32
    assert pruned.forward_intermediates(x, intermediates_only=True, indices=[1])[0].shape == (2, 32, 8, 8)


def test_grad_checkpointing_matches():
    model = timm.create_model(TINY, num_classes=3)
    x = torch.randn(2, *SIZE)
    expected = model(x)
    model.set_grad_checkpointing(True)
    got = model(x)
    torch.testing.assert_close(got, expected)
    got.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    groups = model.group_matcher()
    assert set(groups) == {"stem", "blocks"} and model.no_weight_decay() == set()


def test_init_and_constructor_args():
    model = timm.create_model(TINY, layer_scale_init_value=0.5, head_init_scale=0.001)
    block = model.stages[0].blocks[0]
    for scale in (block.rfa_scale, block.dcn_scale, block.mlp_scale):
        assert torch.all(scale == 0.5)
    assert model.head.fc.weight.std() < 1e-4
    assert not block.dcn.offset_proj.weight.any() and not block.dcn.mask_proj.bias.any()
    assert 0.015 < model.stages[2].blocks[0].mlp.fc1.weight.std() < 0.025  # trunc_normal(.02)
    assert timm.create_model(TINY).stages[0].blocks[0].rfa_scale[0] == 1e-6
    assert model.stages[1].blocks[0].dcn.group == 32 // 8
    assert timm.create_model("uniconvnet_n0", pretrained=False).stages[0].blocks[0].dcn.group == 48 // 16


def test_default_cfgs():
    for name in VARIANTS:
        cfg = timm.models.get_pretrained_cfg(f"uniconvnet_{name}")
        assert cfg.interpolation == "bicubic" and cfg.mean == (0.485, 0.456, 0.406) and cfg.license == "mit"
        assert cfg.first_conv == "stem.0" and cfg.classifier == "head.fc" and not cfg.hf_hub_id
        if name in ("l", "xl"):
            assert cfg.input_size == (3, 384, 384) and cfg.crop_pct == 1.0 and cfg.crop_mode == "squash"
        else:
            assert cfg.input_size == (3, 224, 224) and cfg.crop_pct == 224 / 256
    assert timm.models.get_pretrained_cfg("uniconvnet_xl.in22k").num_classes == 21841


@pytest.mark.parametrize("name", VARIANTS)
def test_params_and_official_layout(name):
    """Every variant: parameter total equals the official manifest, every official key maps to one of ours."""
    shapes, total = read_manifest(f"uniconvnet_{name}")
    with torch.device("meta"):
        model = timm.create_model(f"uniconvnet_{name}")
    assert count_params(model) == total, (count_params(model), total)
    mapped = checkpoint_filter_fn({k: torch.empty(s, device="meta") for k, s in shapes.items()}, model)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in mapped.items()} == own


@pytest.mark.parametrize("name", ["uniconvnet_a", "uniconvnet_n0"])
def test_official_checkpoint_loads(name, tmp_path):
    check_official_checkpoint(name, name, tmp_path, input_size=SIZE)


def test_container_uses_non_ema_entry(tmp_path):
    plain = random_official_state_dict("uniconvnet_a", seed=1)
    ema = random_official_state_dict("uniconvnet_a", seed=2)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": plain, "model_ema": ema, "epoch": 300}, path)
    for entry, expected in ((None, plain), ("model_ema", ema)):
        extra = {} if entry is None else dict(checkpoint_entry=entry)
        model = timm.create_model("uniconvnet_a", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                                  **extra)
        torch.testing.assert_close(model.head.fc.weight, expected["head.weight"])
        torch.testing.assert_close(model.stages[2].blocks[4].dcn.offset_proj.bias,
                                   expected["stages.2.4.dcn.offset.bias"])
    # timm's adaptation still applies after the key mapping: new classifier size, single-channel stem
    model = timm.create_model("uniconvnet_a", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                              num_classes=10, in_chans=1)
    assert model.head.fc.out_features == 10 and model.stem[0].weight.shape[1] == 1
    torch.testing.assert_close(model.stem[0].weight[:, 0], plain["downsample_layers.0.0.weight"].sum(1))


def _fill(model: torch.nn.Module) -> None:
    """Deterministic non-trivial parameters: N(0, 0.2), norm weights 1 + N(0, 0.1), layer scales 0.5 + N(0, 0.1)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            noise = torch.randn(tensor.shape, generator=gen, dtype=torch.float64)
            if name.endswith("_scale"):
                tensor.copy_(0.5 + 0.1 * noise)
            elif name.endswith("weight") and ("norm" in name or name.startswith(("stem.1.", "stem.4."))
                                              or name.endswith("downsample.0.weight")):
                tensor.copy_(1 + 0.1 * noise)
            else:
                tensor.copy_(0.2 * noise)


# logits of the official models_A-P2 code (commit 5d66e89), UniConvNet(depths=[1, 1, 2, 1], dims=[16, 32, 32, 48],
# num_classes=5) in float64 with its PyTorch DCNv3 core (reference grid built in float64), loaded with _fill's
# tensors through checkpoint_filter_fn's key mapping, on the seed-1 input below
GOLDEN = [[0.3962344095807566, 0.9027996049671443, 0.8439631941975894, 1.0100662990349636, 1.1592264740659708],
          [0.4491277893496802, 1.4115376571297695, 0.4171935279583223, -0.09899159260977528, 0.9556199275486256]]


@pytest.mark.parametrize("backend", ["grid_sample", "reference"])
def test_golden_output_of_official_code(backend):
    model = timm.create_model(TINY, num_classes=5).double().eval()
    _fill(model)
    x = torch.randn(2, 3, 40, 48, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    set_dcnv3_backend(backend)
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        set_dcnv3_backend(None)
    torch.testing.assert_close(out, torch.tensor(GOLDEN, dtype=torch.float64), rtol=1e-10, atol=1e-10,
                               msg=lambda m: f"{m}\nregenerate GOLDEN by running the official code as described "
                                             "above the GOLDEN constant")


def test_rfa_standalone():
    layer = ReceptiveFieldAggregator(32)
    x = torch.randn(2, 32, 13, 17, requires_grad=True)
    out = layer(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in layer.parameters())
    assert [op.large_kernel[2].kernel_size for op in layer.layers] == [(7, 7), (9, 9), (11, 11)]
    two_layer = ReceptiveFieldAggregator(12, kernel_sizes=(5, 7))
    assert two_layer(torch.randn(1, 12, 6, 6)).shape == (1, 12, 6, 6)
    with pytest.raises(ValueError, match="divisible by len"):
        ReceptiveFieldAggregator(30)
    with pytest.raises(ValueError, match="must be odd"):
        ReceptiveFieldAggregator(32, kernel_sizes=(7, 8, 11))


def test_errors():
    model = timm.create_model(TINY)
    with pytest.raises(ValueError, match=r"expected input \(B, 3, H, W\)"):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="multiple of dcn_group_width"):
        timm.create_model(TINY, dims=(16, 32, 36, 48))
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(torch.randn(1, *SIZE), output_fmt="NHWC")
    with pytest.raises(ValueError, match="divisible by group"):
        DCNv3(10, group=4)


# ---------------------------------------------------------------------- timm's model-suite contract (contract.py)
def test_default_cfg():
    check_default_cfg(TINY)


def test_fx():
    check_fx(TINY, SIZE)


def test_torchscript(tmp_path):
    check_torchscript(TINY, SIZE, tmp_path)  # runs scripted; not saved (JIT_SAVE_EXCLUDE: DCNv3 is a Python call)


def test_device_dtype():
    check_device_dtype(TINY)


def test_grad_checkpointing_recomputes_each_block_once():
    check_grad_checkpointing(TINY, SIZE)
