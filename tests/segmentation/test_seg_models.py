"""Semantic FPN and UperNet against the official layouts (DOWNSTREAM.md; mmseg 0.30 FPNHead / UPerHead / FCNHead),
their forwards against a functional re-statement of mmseg's, output sizes at odd inputs, frozen BatchNorm, configs."""
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contract import randomize_batchnorm
from lsnet.checkpoints import CheckpointError, load_checkpoint
from lsnet.segmentation import SEGMENTERS, FPNHead, UPerHead, build_segmenter, semantic_fpn, upernet

SMALL_UPER = dict(channels=32, aux_channels=16)  # UperNet's 512 / 256 channels at stride 4 cost ~100 GMACs at 509 px


def _cbr(x: torch.Tensor, block: nn.Module) -> torch.Tensor:
    """mmcv ConvModule (conv without bias, BN in eval, ReLU) from a block's tensors: [0] the conv, [1] the norm."""
    conv, bn = block[0], block[1]
    x = F.conv2d(x, conv.weight, None, padding=conv.kernel_size[0] // 2)
    return F.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))


def _up(x, size=None):
    return F.interpolate(x, size=size, scale_factor=None if size else 2, mode="bilinear", align_corners=False)


def test_semantic_fpn_layout_is_the_official_lsnet_one():
    """LSNet-T: 4 FPN levels (strides 8..64, 256 channels, no extra level); FPNHead 128 channels with 1, 1, 2, 3
    conv-norm-ReLU stages (level i > 0: i conv + 2x upsample pairs), the sum at stride 8; dropout 0.1; a 1x1
    classifier."""
    seg = semantic_fpn("lsnet_t", num_classes=150)
    assert seg.body.feature_info.reduction() == [8, 16, 32, 64]
    assert seg.neck.strides == (8, 16, 32, 64) and seg.neck.num_extra == 0 and not seg.neck.extra_trans_convs
    assert [c.out_channels for c in seg.neck.lateral_convs] == [256] * 4
    head = seg.decode_head
    kinds = [[type(m).__name__ for m in level] for level in head.scale_heads]
    assert kinds == [["Conv2dNormActivation"], ["Conv2dNormActivation", "Upsample"],
                     ["Conv2dNormActivation", "Upsample"] * 2, ["Conv2dNormActivation", "Upsample"] * 3]
    assert all(level[0][0].in_channels == 256 for level in head.scale_heads)
    assert all(m[0].out_channels == 128 and m[0].kernel_size == (3, 3) and m[0].bias is None
               and isinstance(m[1], nn.BatchNorm2d) for level in head.scale_heads for m in level[::2])
    assert head.dropout.p == 0.1 and head.conv_seg.in_channels == 128 and head.conv_seg.out_channels == 150
    assert seg.auxiliary_head is None and seg.freeze_bn  # the official LSNet backbone freezes its BatchNorm
    x = torch.rand(1, 3, 128, 96)
    with torch.no_grad():
        summed = []
        seg.decode_head.conv_seg.register_forward_hook(lambda m, i, o: summed.append(i[0]))
        seg.eval()(x)
    assert summed[0].shape[-2:] == (128 // 8, 96 // 8)  # the summed map sits at stride 8


def test_fpn_head_forward_is_mmseg_fpn_head():
    strides = (8, 16, 32, 64)
    head = FPNHead([12] * 4, strides, num_classes=5, channels=8).eval()
    randomize_batchnorm(head)
    features = [torch.randn(2, 12, math.ceil(61 / s), math.ceil(45 / s)) for s in strides]
    out = _cbr(features[0], head.scale_heads[0][0])
    for i in range(1, 4):
        x = features[i]
        for k in range(i):
            x = _up(_cbr(x, head.scale_heads[i][2 * k]))
        out = out + _up(x, out.shape[-2:])
    expected = F.conv2d(out, head.conv_seg.weight, head.conv_seg.bias)
    with torch.no_grad():
        got = head(features)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_uper_head_forward_is_mmseg_uper_head():
    head = UPerHead([6, 10, 12, 14], num_classes=4, channels=8, pool_scales=(1, 2, 3, 6)).eval()
    randomize_batchnorm(head)
    features = [torch.randn(2, c, math.ceil(37 / s), math.ceil(29 / s)) for c, s in zip((6, 10, 12, 14),
                                                                                      (4, 8, 16, 32))]
    top = features[-1]
    psp = [_up(_cbr(F.adaptive_avg_pool2d(top, s), head.psp_modules[j][1]), top.shape[-2:])
           for j, s in enumerate((1, 2, 3, 6))]
    laterals = [_cbr(features[i], head.lateral_convs[i]) for i in range(3)]
    laterals.append(_cbr(torch.cat([top, *psp], 1), head.bottleneck))
    for i in (3, 2, 1):
        laterals[i - 1] = laterals[i - 1] + _up(laterals[i], laterals[i - 1].shape[-2:])
    outs = [_cbr(laterals[i], head.fpn_convs[i]) for i in range(3)] + [laterals[3]]
    outs = [outs[0]] + [_up(o, outs[0].shape[-2:]) for o in outs[1:]]
    expected = F.conv2d(_cbr(torch.cat(outs, 1), head.fpn_bottleneck), head.conv_seg.weight, head.conv_seg.bias)
    with torch.no_grad():
        got = head(features)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_upernet_layout_is_mmsegs():
    """mmseg upernet_r50: UPerHead 512 channels, pool scales 1, 2, 3, 6 on the last level; auxiliary FCNHead on
    level 2 (one 3x3 conv, 256 channels, no input concat), dropout 0.1 in both."""
    seg = upernet("conv2former_n", num_classes=7)
    channels = seg.body.feature_info.channels()
    head, aux = seg.decode_head, seg.auxiliary_head
    assert seg.neck is None and not seg.freeze_bn
    assert [p[0].output_size for p in head.psp_modules] == [1, 2, 3, 6]
    assert all(p[1][0].in_channels == channels[-1] and p[1][0].out_channels == 512 for p in head.psp_modules)
    assert head.bottleneck[0].in_channels == channels[-1] + 4 * 512
    assert [c[0].in_channels for c in head.lateral_convs] == channels[:-1]
    assert head.fpn_bottleneck[0].in_channels == 4 * 512 and head.dropout.p == 0.1
    assert len(aux.convs) == 1 and aux.convs[0][0].in_channels == channels[2] and aux.convs[0][0].out_channels == 256
    assert aux.conv_seg.out_channels == 7 and aux.dropout.p == 0.1


@pytest.mark.parametrize("builder, backbone, size", [
    (semantic_fpn, "lsnet_t", (509, 383)), (semantic_fpn, "resnet18", (509, 383)), (upernet, "lsnet_t", (157, 109)),
    (upernet, "conv2former_test", (157, 109)), (semantic_fpn, "efficientvit_m4", (157, 109)),
])
def test_logits_have_the_input_size_at_odd_sizes(builder, backbone, size):
    """Odd sizes, no multiple of any stride; the logits are the head's (at its own stride) resized bilinearly
    (align_corners=False) to the input."""
    kwargs = SMALL_UPER if builder is upernet else {}
    seg = builder(backbone, num_classes=3, **kwargs).eval()
    logits = []
    seg.decode_head.register_forward_hook(lambda m, i, o: logits.append(o))
    with torch.no_grad():
        out = seg(torch.rand(1, 3, *size))
    assert list(out) == ["out"] and out["out"].shape == (1, 3, *size)
    assert logits[0].shape[-1] <= math.ceil(size[1] / seg.body.feature_info.reduction()[0])
    if builder is semantic_fpn:  # one FPN level per body level of stride >= 4 (EfficientViT-M4: 16, 32, 64)
        assert seg.neck.strides == seg.decode_head.strides == tuple(seg.body.feature_info.reduction())
    torch.testing.assert_close(out["out"], F.interpolate(logits[0], size=size, mode="bilinear", align_corners=False))


def test_aux_head_only_in_training_and_at_the_input_size():
    seg = upernet("resnet18", num_classes=4, **SMALL_UPER)
    seg.train()
    out = seg(torch.rand(2, 3, 45, 37))
    assert list(out) == ["out", "aux"] and out["aux"].shape == out["out"].shape == (2, 4, 45, 37)
    with torch.no_grad():
        assert list(seg.eval()(torch.rand(1, 3, 45, 37))) == ["out"]
    assert list(upernet("resnet18", num_classes=4, aux_head=False, **SMALL_UPER).train()(
        torch.rand(2, 3, 64, 64))) == ["out"]


def test_freeze_bn_keeps_the_body_statistics_only():
    seg = semantic_fpn("lsnet_t", num_classes=3).train()
    body_bns = [m for m in seg.body.modules() if isinstance(m, nn.BatchNorm2d)]
    head_bns = [m for m in seg.decode_head.modules() if isinstance(m, nn.BatchNorm2d)]
    assert body_bns and not any(m.training for m in body_bns) and all(m.training for m in head_bns)
    before = body_bns[0].running_mean.clone()
    seg(torch.rand(2, 3, 64, 64))
    assert torch.equal(body_bns[0].running_mean, before)
    assert all(m.training for m in semantic_fpn("lsnet_t", num_classes=3, freeze_bn=False).train().body.modules()
               if isinstance(m, nn.BatchNorm2d))


def test_input_is_normalised_with_the_body_statistics():
    """The model takes [0, 1] images: its body sees (x - mean) / std (ImageNet's for LSNet)."""
    seg = semantic_fpn("lsnet_t", num_classes=3).eval()
    assert seg.segmenter_config["image_mean"] == pytest.approx([0.485, 0.456, 0.406])
    seen = []
    seg.body.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        seg(x)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(seen[0], (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    assert not any("image_mean" in k for k in seg.state_dict())


def test_backbone_checkpoint_initialises_the_body_and_its_normalisation(tmp_path):
    """A grey Fashion-MNIST run checkpoint (mean 0.286, std 0.353) of resnet18: its weights fill the body, the model
    normalises with its statistics, records them, and a rebuild from segmenter_config keeps them."""
    import timm

    classifier = timm.create_model("resnet18", num_classes=10, in_chans=1)
    config = {"model": "resnet18", "num_classes": 10, "in_chans": 1, "mean": [0.286], "std": [0.353]}
    torch.save({"model": classifier.state_dict(), "config": config}, tmp_path / "grey.pth")
    seg = semantic_fpn("resnet18", num_classes=2, backbone_checkpoint=tmp_path / "grey.pth")
    assert torch.equal(seg.body.state_dict()["layer4.1.conv2.weight"], classifier.state_dict()["layer4.1.conv2.weight"])
    assert seg.segmenter_config["image_mean"] == pytest.approx([0.286] * 3)
    assert seg.segmenter_config["image_std"] == pytest.approx([0.353] * 3)
    rebuilt = build_segmenter(**seg.segmenter_config)
    assert torch.equal(rebuilt.image_mean, seg.image_mean) and torch.equal(rebuilt.image_std, seg.image_std)


@pytest.mark.parametrize("builder", [semantic_fpn, upernet])
def test_config_rebuilds_and_checkpoint_round_trips(builder, tmp_path):
    kwargs = SMALL_UPER if builder is upernet else {}
    seg = builder("lsnet_t", num_classes=4, **kwargs).eval()
    randomize_batchnorm(seg)
    torch.save({"model": seg.state_dict(), "config": {}}, tmp_path / "seg.pth")
    again = build_segmenter(**seg.segmenter_config)
    assert again.segmenter_config == seg.segmenter_config
    load_checkpoint(again, tmp_path / "seg.pth")
    x = torch.rand(1, 3, 67, 53)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x)["out"], seg(x)["out"])
    other = builder("lsnet_t", num_classes=5, **kwargs)
    with pytest.raises(CheckpointError, match="the file's segmenter has 4 classes, the model 5; build it with "
                                              "num_classes=4") as err:
        load_checkpoint(other, tmp_path / "seg.pth")
    assert "\n" not in str(err.value)


def test_bad_arguments_are_one_line():
    with pytest.raises(ValueError, match=re.escape(f"unknown segmenter 'deeplab'; choose one of {SEGMENTERS}")):
        build_segmenter("deeplab", "lsnet_t", 3)
    with pytest.raises(TypeError, match="pass backbone="):
        build_segmenter("upernet")
    with pytest.raises(ValueError, match="num_classes must be"):
        semantic_fpn("lsnet_t", num_classes=0)
    with pytest.raises(ValueError, match="pass aux_in_index in 0..3"):
        upernet("lsnet_t", num_classes=3, aux_in_index=4, **SMALL_UPER)
    with pytest.raises(ValueError, match=r"must be \(B, 3, H, W\)"):
        semantic_fpn("lsnet_t", num_classes=3)(torch.rand(3, 32, 32))


def test_upernet_conv2former_t_has_the_papers_parameter_count():
    """Conv2Former paper Table 9: UperNet + Conv2Former-T on ADE20K (150 classes, auxiliary head included): 56M."""
    seg = upernet("conv2former_t", num_classes=150)
    assert round(sum(p.numel() for p in seg.parameters()) / 1e6) == 56
