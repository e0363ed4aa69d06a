"""Detection backbones and the LSNet FPN against the official layout (DOWNSTREAM.md, detection/model/lsnet_fpn.py)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contract import random_official_state_dict
from lsnet.detection import BackboneError, LSNetFPN, create_body, mask_rcnn, retinanet

OFFICIAL_CHANNELS = {"lsnet_t": [64, 128, 256, 384], "lsnet_s": [96, 192, 320, 448], "lsnet_b": [128, 256, 384, 512]}


@pytest.mark.parametrize("name", sorted(OFFICIAL_CHANNELS))
def test_fpn_levels_follow_the_official_layout(name):
    """RetinaNet: 4 LSNet levels (strides 8..64) + a stride-2 conv on the last backbone feature -> strides 8..128;
    Mask R-CNN: a transposed-conv stride-4 level first -> strides 4..64; every level 256 channels."""
    channels = OFFICIAL_CHANNELS[name]
    det = retinanet(name, num_classes=3)
    body, fpn = det.backbone.body, det.backbone.fpn
    assert body.feature_info.channels() == channels and body.feature_info.reduction() == [8, 16, 32, 64]
    assert fpn.strides == (8, 16, 32, 64, 128) and len(fpn.fpn_convs) == 5 and not fpn.extra_trans_convs
    assert [c.in_channels for c in fpn.lateral_convs] == channels
    assert fpn.fpn_convs[4].in_channels == channels[-1] and fpn.fpn_convs[4].stride == (2, 2)  # 'on_input'
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        outs = list(det.backbone.eval()(x).values())
    assert [tuple(o.shape[1:]) for o in outs] == [(256, math.ceil(128 / s), math.ceil(192 / s))
                                                  for s in (8, 16, 32, 64, 128)]

    fpn = mask_rcnn(name, num_classes=3).backbone.fpn
    assert fpn.strides == (4, 8, 16, 32, 64) and len(fpn.fpn_convs) == 4 and fpn.num_extra == 0
    trans = fpn.extra_trans_convs[0]
    assert isinstance(trans, nn.ConvTranspose2d) and trans.kernel_size == (2, 2) and trans.stride == (2, 2)


def test_fpn_values_by_hand():
    """Two 1-channel levels, identity-like weights: laterals, top-down sum, on-input extra conv, transposed conv."""
    fpn = LSNetFPN([2, 3], [8, 16], out_channels=1, num_outs=4, extra_convs_on_input=True, num_trans_convs=1)
    with torch.no_grad():
        for conv in [*fpn.lateral_convs, *fpn.fpn_convs, *fpn.extra_fpn_convs, *fpn.extra_trans_convs]:
            conv.weight.zero_()
            conv.bias.zero_()
        fpn.lateral_convs[0].weight[0, 1] = 1.0  # lateral 0 = channel 1 of level 0
        fpn.lateral_convs[1].weight[0, 2] = 2.0  # lateral 1 = 2 * channel 2 of level 1
        for conv in [*fpn.fpn_convs[:2], *fpn.extra_fpn_convs]:
            conv.weight[0, 0, 1, 1] = 1.0  # 3x3 identity
        fpn.fpn_convs[2].weight[0, 2, 1, 1] = 1.0  # extra: channel 2 of the last INPUT, stride 2
        fpn.fpn_convs[2].bias.fill_(0.5)
        fpn.extra_trans_convs[0].weight.fill_(1.0)
    level0 = torch.zeros(1, 2, 2, 2)
    level0[0, 1] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    level1 = torch.full((1, 3, 1, 1), 5.0)
    finer, out0, out1, extra = fpn([level0, level1])
    summed = torch.tensor([[11.0, 12.0], [13.0, 14.0]])  # lateral 0 + nearest-upsampled 2 * 5
    assert torch.equal(out0[0, 0], summed) and torch.equal(out1[0, 0], torch.tensor([[10.0]]))
    assert torch.equal(extra[0, 0], torch.tensor([[5.5]]))  # from the input feature, not from out1 (10)
    assert torch.equal(finer[0, 0], summed.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert fpn.strides == (4, 8, 16, 32)


def _bn_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k}


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_frozen_batchnorm(freeze_bn):
    """freeze_bn: running statistics unchanged by a training step, affine parameters trained; off: they move."""
    torch.manual_seed(0)
    det = retinanet("lsnet_test", num_classes=2, min_size=128, max_size=128, freeze_bn=freeze_bn).train()
    bns = [m for m in det.backbone.body.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.training is not freeze_bn for m in bns)
    assert det.backbone.fpn.training and det.head.training
    before = _bn_state(det.backbone.body)
    weights = [m.weight.detach().clone() for m in bns]
    optimizer = torch.optim.SGD(det.parameters(), lr=0.1)
    target = dict(boxes=torch.tensor([[8.0, 16.0, 90.0, 100.0]]), labels=torch.tensor([1]))
    sum(det([torch.rand(3, 128, 128)], [target]).values()).backward()
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in bns[:3])
    optimizer.step()
    after = _bn_state(det.backbone.body)
    assert all(torch.equal(before[k], after[k]) for k in before) is freeze_bn
    assert any(not torch.equal(w, m.weight) for w, m in zip(weights, bns))


@pytest.mark.parametrize("name", ["resnet18", "efficientvit_m4", "repvit_m1_0"])
def test_any_timm_features_only_backbone(name):
    """Other timm bodies: levels picked / added to reach the same output strides; one forward each."""
    det = retinanet(name, num_classes=3, min_size=128, max_size=128).eval()
    assert det.backbone.strides == (8, 16, 32, 64, 128)
    strides = det.backbone.body.feature_info.reduction()
    assert min(strides) >= 8 and len(strides) <= 4
    with torch.no_grad():
        out = det([torch.rand(3, 128, 96)])[0]
    assert set(out) == {"boxes", "scores", "labels"}
    if name == "resnet18":  # mmdet's Mask R-CNN R50-FPN layout: 4 levels from stride 4, a max-pooled stride 64
        fpn = mask_rcnn(name, num_classes=3).backbone.fpn
        assert fpn.strides == (4, 8, 16, 32, 64) and fpn.num_extra == 1 and not fpn.extra_trans_convs


def test_backbone_checkpoint_official_and_ours(tmp_path):
    """An official LSNet classification file and our timm-layout file (another class count) load into the body."""
    official = random_official_state_dict("lsnet_t")
    torch.save({"model": official}, tmp_path / "lsnet_t.pth")
    body = create_body("lsnet_t", checkpoint=tmp_path / "lsnet_t.pth")
    assert torch.equal(body.state_dict()["model.stem.0.conv.weight"], official["patch_embed.0.c.weight"])
    assert torch.equal(body.state_dict()["model.stages.3.blocks.9.ffn.pw2.bn.bias"],
                       official["blocks4.11.ffn.m.pw2.bn.bias"])

    import timm

    resnet = timm.create_model("resnet18", num_classes=10)
    torch.save({"model": resnet.state_dict(), "epoch": 3}, tmp_path / "resnet18.pth")
    det = retinanet("resnet18", num_classes=2, backbone_checkpoint=tmp_path / "resnet18.pth")
    assert torch.equal(det.backbone.body.state_dict()["layer4.1.conv2.weight"], resnet.state_dict()[
        "layer4.1.conv2.weight"])


def test_detector_normalises_as_its_backbone_checkpoint_was_trained(tmp_path):
    """A run checkpoint of grey Fashion-MNIST (mean 0.286, std 0.353): the detector normalises its RGB input with
    those statistics, not ImageNet's, records them in detector_config, and a rebuild from that config keeps them."""
    import timm

    from lsnet.detection import build_detector

    classifier = timm.create_model("resnet18", num_classes=10, in_chans=1)
    config = {"model": "resnet18", "num_classes": 10, "in_chans": 1, "mean": [0.286], "std": [0.353]}
    torch.save({"model": classifier.state_dict(), "config": config}, tmp_path / "grey.pth")
    for det in (retinanet("resnet18", num_classes=2, backbone_checkpoint=tmp_path / "grey.pth"),
                mask_rcnn("resnet18", num_classes=2, backbone_checkpoint=tmp_path / "grey.pth")):
        assert det.transform.image_mean == pytest.approx([0.286] * 3)
        assert det.transform.image_std == pytest.approx([0.353] * 3)
        rebuilt = build_detector(**det.detector_config)
        assert rebuilt.transform.image_mean == det.transform.image_mean
        assert rebuilt.transform.image_std == det.transform.image_std
        image = torch.full((3, 64, 64), 0.286)  # the training mean -> exactly 0 after normalisation
        assert torch.equal(det.transform.normalize(image), torch.zeros_like(image))
    assert retinanet("resnet18", num_classes=2).transform.image_mean == pytest.approx([0.485, 0.456, 0.406])


def test_bad_backbones(monkeypatch):
    with pytest.raises(BackboneError, match="coarser than the one before"):
        create_body("lkca_test")  # an isotropic model: every level at stride 4
    with pytest.raises(BackboneError, match="no feature level of stride >= 128"):
        create_body("lsnet_test", min_stride=128)
    with pytest.raises(ValueError, match="unknown model 'no_such_net'"):
        retinanet("no_such_net", num_classes=3)

    def no_features(name, **kwargs):  # what timm raises for a model without feature support
        raise RuntimeError(f"features_only not implemented for {name}")

    monkeypatch.setattr("lsnet.detection.backbone.create_model", no_features)
    with pytest.raises(BackboneError, match=r"backbone 'plain' has no timm features_only support .* pick a model"):
        retinanet("plain", num_classes=3)


def test_lsnet_bodies_resize_the_bias_matrix_as_the_official_detection_backbone():
    """The official detection Attention gathers its r x r grid's (heads, r*r, r*r) biases through offset indices
    (built as in its __init__: offsets numbered in order of first appearance) and resizes that matrix bicubically
    to (N, N) for N tokens; LSNet bodies of our detectors do the same (attn_bias_resize='matrix')."""
    import itertools

    from lsnet.models.lsnet import Attention, grid_attention_bias

    det = retinanet("lsnet_test", num_classes=2)
    assert {m.bias_resize for m in det.modules() if isinstance(m, Attention)} == {"matrix"}
    table = torch.randn(2, 16)
    points = list(itertools.product(range(4), range(4)))
    offsets, idxs = {}, []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(offset, len(offsets)))
    matrix = table[:, torch.tensor(idxs).view(16, 16)]
    for height, width in ((4, 4), (3, 5), (7, 6)):
        tokens = height * width
        expected = F.interpolate(matrix[None], size=(tokens, tokens), mode="bicubic")[0]
        torch.testing.assert_close(grid_attention_bias(table, height, width, "matrix"), expected)
    assert not torch.allclose(grid_attention_bias(table, 3, 5, "table"), grid_attention_bias(table, 3, 5, "matrix"))
