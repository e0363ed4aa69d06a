"""Official mmseg 0.30 segmenter files -> our segmenters: synthetic state dicts of mmseg's FULL EncoderDecoder
layout, written from mmseg 0.30's module names (FPNHead.scale_heads, UPerHead.psp_modules / bottleneck /
lateral_convs / fpn_convs / fpn_bottleneck, FCNHead.convs, conv_seg, mmcv ConvModule's .conv / .bn) and the official
LSNetFPN's, independently of the key map in lsnet.segmentation.mmseg; the converted models compute what mmseg's
modules compute from the file's tensors."""
import pytest
import torch
import torch.nn.functional as F

from contract import random_official_state_dict
from lsnet.checkpoints import CheckpointError
from lsnet.segmentation import semantic_fpn, upernet

K = 5
CHANNELS = (64, 128, 256, 384)  # LSNet-T
UPER, AUX = 16, 8  # small UperNet head channels (mmseg's 512 / 256 are only sizes)


def mmseg_layout(segmenter: str) -> dict[str, tuple[int, ...]]:
    """mmseg key -> shape of an LSNet-T Semantic FPN / UperNet with K classes (neck and heads; backbone apart)."""
    layout = {}

    def conv(prefix, shape, bias=True):
        layout[f"{prefix}.weight"] = shape
        if bias:
            layout[f"{prefix}.bias"] = (shape[0],)

    def conv_module(prefix, shape):  # mmcv ConvModule with BN: conv without bias
        conv(f"{prefix}.conv", shape, bias=False)
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.bn.{name}"] = (shape[0],)
        layout[f"{prefix}.bn.num_batches_tracked"] = ()

    if segmenter == "semantic_fpn":
        for i, c in enumerate(CHANNELS):
            conv(f"neck.lateral_convs.{i}.conv", (256, c, 1, 1))
            conv(f"neck.fpn_convs.{i}.conv", (256, 256, 3, 3))
        for i in range(4):
            for k in range(max(1, i)):  # Sequential(conv, upsample, conv, upsample, ...): convs at 0, 2, 4
                conv_module(f"decode_head.scale_heads.{i}.{2 * k}", (128, 256 if k == 0 else 128, 3, 3))
        conv("decode_head.conv_seg", (K, 128, 1, 1))
        return layout
    for j in range(4):  # Sequential(AdaptiveAvgPool2d, ConvModule)
        conv_module(f"decode_head.psp_modules.{j}.1", (UPER, CHANNELS[-1], 1, 1))
    conv_module("decode_head.bottleneck", (UPER, CHANNELS[-1] + 4 * UPER, 3, 3))
    for i, c in enumerate(CHANNELS[:-1]):
        conv_module(f"decode_head.lateral_convs.{i}", (UPER, c, 1, 1))
        conv_module(f"decode_head.fpn_convs.{i}", (UPER, UPER, 3, 3))
    conv_module("decode_head.fpn_bottleneck", (UPER, 4 * UPER, 3, 3))
    conv("decode_head.conv_seg", (K, UPER, 1, 1))
    conv_module("auxiliary_head.convs.0", (AUX, CHANNELS[2], 3, 3))
    conv("auxiliary_head.conv_seg", (K, AUX, 1, 1))
    return layout


def mmseg_state_dict(segmenter: str, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    backbone = {f"backbone.{k}": v for k, v in random_official_state_dict("lsnet_t", seed).items()
                if not k.startswith("head")}  # the segmentation backbone has no classifier
    heads = {}
    for key, shape in mmseg_layout(segmenter).items():
        if key.endswith("num_batches_tracked"):
            heads[key] = torch.tensor(40000)
        elif key.endswith("running_var"):
            heads[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            heads[key] = torch.randn(shape, generator=generator) * 0.1
    return {**backbone, **heads}


def _save(tmp_path, state_dict, name="official.pth"):
    path = tmp_path / name
    torch.save({"meta": {"mmseg_version": "0.30.0", "iter": 40000}, "state_dict": state_dict}, path)
    return path


def _conv_module(x, sd, prefix, padding):
    x = F.conv2d(x, sd[f"{prefix}.conv.weight"], None, padding=padding)
    x = F.batch_norm(x, sd[f"{prefix}.bn.running_mean"], sd[f"{prefix}.bn.running_var"], sd[f"{prefix}.bn.weight"],
                     sd[f"{prefix}.bn.bias"], False, 0.0, 1e-5)
    return F.relu(x)


def _resize(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def test_semantic_fpn_from_mmseg(tmp_path):
    sd = mmseg_state_dict("semantic_fpn")
    seg = semantic_fpn("lsnet_t", num_classes=K, checkpoint=_save(tmp_path, sd)).eval()
    own = seg.state_dict()
    assert torch.equal(own["body.model.stem.0.conv.weight"], sd["backbone.patch_embed.0.c.weight"])
    assert torch.equal(own["decode_head.scale_heads.3.4.1.running_var"],
                       sd["decode_head.scale_heads.3.4.bn.running_var"])
    assert own["decode_head.scale_heads.3.4.1.num_batches_tracked"] == 40000
    # neck + head = the official LSNetFPN + mmseg FPNHead computed from the file's tensors
    x = torch.rand(1, 3, 93, 71)
    with torch.no_grad():
        features = seg.body((x - seg.image_mean) / seg.image_std)
        laterals = [F.conv2d(f, sd[f"neck.lateral_convs.{i}.conv.weight"], sd[f"neck.lateral_convs.{i}.conv.bias"])
                    for i, f in enumerate(features)]
        for i in (3, 2, 1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:])
        levels = [F.conv2d(f, sd[f"neck.fpn_convs.{i}.conv.weight"], sd[f"neck.fpn_convs.{i}.conv.bias"], padding=1)
                  for i, f in enumerate(laterals)]
        out = _conv_module(levels[0], sd, "decode_head.scale_heads.0.0", 1)
        for i in (1, 2, 3):
            y = levels[i]
            for k in range(i):
                y = F.interpolate(_conv_module(y, sd, f"decode_head.scale_heads.{i}.{2 * k}", 1), scale_factor=2,
                                  mode="bilinear", align_corners=False)
            out = out + _resize(y, out.shape[-2:])
        expected = _resize(F.conv2d(out, sd["decode_head.conv_seg.weight"], sd["decode_head.conv_seg.bias"]),
                           (93, 71))
        got = seg(x)["out"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_upernet_with_aux_head_from_mmseg(tmp_path):
    sd = mmseg_state_dict("upernet")
    seg = upernet("lsnet_t", num_classes=K, channels=UPER, aux_channels=AUX, checkpoint=_save(tmp_path, sd)).eval()
    x = torch.rand(1, 3, 101, 77)
    with torch.no_grad():
        features = seg.body((x - seg.image_mean) / seg.image_std)
        top = features[-1]
        psp = [_resize(_conv_module(F.adaptive_avg_pool2d(top, s), sd, f"decode_head.psp_modules.{j}.1", 0),
                       top.shape[-2:]) for j, s in enumerate((1, 2, 3, 6))]
        laterals = [_conv_module(features[i], sd, f"decode_head.lateral_convs.{i}", 0) for i in range(3)]
        laterals.append(_conv_module(torch.cat([top, *psp], 1), sd, "decode_head.bottleneck", 1))
        for i in (3, 2, 1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [_conv_module(laterals[i], sd, f"decode_head.fpn_convs.{i}", 1) for i in range(3)] + [laterals[3]]
        outs = [outs[0]] + [_resize(o, outs[0].shape[-2:]) for o in outs[1:]]
        fused = _conv_module(torch.cat(outs, 1), sd, "decode_head.fpn_bottleneck", 1)
        expected = _resize(F.conv2d(fused, sd["decode_head.conv_seg.weight"], sd["decode_head.conv_seg.bias"]),
                           (101, 77))
        aux = _conv_module(features[2], sd, "auxiliary_head.convs.0", 1)
        expected_aux = _resize(F.conv2d(aux, sd["auxiliary_head.conv_seg.weight"], sd["auxiliary_head.conv_seg.bias"]),
                               (101, 77))
        torch.testing.assert_close(seg(x)["out"], expected, rtol=1e-4, atol=1e-4)
        seg.train()
        for m in seg.modules():  # training mode for the aux output, without dropout or batch statistics
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Dropout2d)):
                m.eval()
        torch.testing.assert_close(seg(x)["aux"], expected_aux, rtol=1e-4, atol=1e-4)


def test_mmseg_file_errors(tmp_path):
    """Another class count, a key that maps nowhere, a missing tensor, an aux head the model lacks: one line each."""
    sd = mmseg_state_dict("semantic_fpn")
    with pytest.raises(CheckpointError, match=r"has 5 classes, the model 150; build it with num_classes=5$") as err:
        semantic_fpn("lsnet_t", num_classes=150, checkpoint=_save(tmp_path, sd))
    assert "\n" not in str(err.value)
    extra = dict(sd, **{"decode_head.conv_cat.conv.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"1 mmseg keys with no counterpart here \[decode_head.conv_cat"):
        semantic_fpn("lsnet_t", num_classes=K, checkpoint=_save(tmp_path, extra, "extra.pth"))
    missing = {k: v for k, v in sd.items() if k != "decode_head.scale_heads.2.2.bn.running_var"}
    with pytest.raises(CheckpointError, match=r"1 missing keys \[decode_head.scale_heads.2.2.1.running_var\]"):
        semantic_fpn("lsnet_t", num_classes=K, checkpoint=_save(tmp_path, missing, "missing.pth"))
    uper = mmseg_state_dict("upernet")
    with pytest.raises(CheckpointError, match=r"unexpected keys \[auxiliary_head"):
        upernet("lsnet_t", num_classes=K, channels=UPER, aux_head=False, checkpoint=_save(tmp_path, uper, "u.pth"))
