"""Parameters and GMACs of registered models (unfused and fused), as in the README model table.

    python benchmarks/flops.py                                # the LSNet family at 224
    python benchmarks/flops.py conv2former_n uniconvnet_a --img-size 224
    python benchmarks/flops.py --detectors                    # LSNet-T/S/B RetinaNet and Mask R-CNN (COCO, 80 classes)
    python benchmarks/flops.py --segmenters                   # Semantic FPN and UperNet (ADE20K, 150 classes) at 512

Detector parameters are the whole detector's (backbone + neck + heads). Detector GMACs count the dense part at the
input size: backbone + FPN + RetinaNet head, or backbone + FPN + RPN head for Mask R-CNN, whose RoI box / mask
heads are left out (their cost depends on the number of proposals and detections, ~1000 and <= 100).
Segmenter parameters are the whole model's (with UperNet's auxiliary FCN head, which only trains, and without it);
GMACs are one test-time forward at 512x512 (the auxiliary head does not run), as mmseg's get_flops counts them.
"""
from __future__ import annotations

import argparse
import sys

import timm
import torch

import lsnet  # noqa: F401
from lsnet.analysis.flops import count_macs
from lsnet.deploy import fuse

DETECTOR_SIZES = ((800, 1333), (512, 512))  # (H, W)
SEGMENTERS = (("semantic_fpn", "lsnet_t"), ("semantic_fpn", "lsnet_s"), ("semantic_fpn", "lsnet_b"),
              ("semantic_fpn", "efficientvit_m4"), ("semantic_fpn", "resnet18"), ("upernet", "conv2former_n"),
              ("upernet", "conv2former_t"))


class _DensePart(torch.nn.Module):
    """backbone + FPN + the dense head of a detector: (B, 3, H, W) -> the head's outputs."""

    def __init__(self, detector: torch.nn.Module):
        super().__init__()
        self.backbone = detector.backbone
        self.head = detector.head if hasattr(detector, "head") else detector.rpn.head

    def forward(self, x: torch.Tensor):
        return self.head(list(self.backbone(x).values()))


def detectors(backbones: list[str]) -> None:
    from lsnet.detection import build_detector

    print(f"{'detector':<22}{'params (M)':>11}" + "".join(f"{f'GMACs {w}x{h}':>18}" for h, w in DETECTOR_SIZES))
    for name in backbones:
        for kind in ("retinanet", "mask_rcnn"):
            model = build_detector(kind, name, 80)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            dense = _DensePart(model)
            gmacs = [count_macs(dense, (3, h, w)) / 1e9 for h, w in DETECTOR_SIZES]
            print(f"{kind + '_' + name:<22}{params:>11.2f}" + "".join(f"{g:>18.1f}" for g in gmacs))


def segmenters() -> None:
    from lsnet.segmentation import build_segmenter

    print(f"{'segmenter':<28}{'params (M)':>11}{'w/o aux (M)':>13}{'GMACs 512x512':>15}")
    for kind, name in SEGMENTERS:
        model = build_segmenter(kind, name, 150)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        aux = sum(p.numel() for p in model.auxiliary_head.parameters()) / 1e6 if model.auxiliary_head else 0.0
        gmacs = count_macs(model, (3, 512, 512)) / 1e9
        print(f"{kind + '_' + name:<28}{params:>11.2f}{params - aux:>13.2f}{gmacs:>15.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["lsnet_t", "lsnet_s", "lsnet_b"])
    parser.add_argument("--img-size", type=int, default=None, help="default: the model's pretrained cfg size")
    parser.add_argument("--detectors", action="store_true",
                        help="RetinaNet and Mask R-CNN on the given backbones at 1333x800 and 512x512")
    parser.add_argument("--segmenters", action="store_true",
                        help="Semantic FPN (LSNet-T/S/B, EfficientViT-M4, ResNet-18) and UperNet (Conv2Former-N/T) "
                             "at 512x512, 150 classes")
    args = parser.parse_args(argv)
    if args.segmenters:
        segmenters()
        return 0
    if args.detectors:
        detectors(args.models)
        return 0
    print(f"{'model':<22}{'res':>5}{'params (M)':>12}{'fused (M)':>11}{'GMACs':>8}")
    for name in args.models:
        model = timm.create_model(name)
        size = args.img_size or model.pretrained_cfg["input_size"][-1]
        in_chans = model.pretrained_cfg["input_size"][0]
        fused = fuse(model)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        fused_params = sum(p.numel() for p in fused.parameters()) / 1e6
        gmacs = count_macs(fused, (in_chans, size, size)) / 1e9
        print(f"{name:<22}{size:>5}{params:>12.3f}{fused_params:>11.3f}{gmacs:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
