"""Semantic segmentation on LSNet (or any timm features_only backbone): Semantic FPN and UperNet, mmseg 0.30 layouts.

    from lsnet.segmentation import semantic_fpn, upernet
    seg = semantic_fpn("lsnet_t", num_classes=150, backbone_checkpoint="lsnet_t.pth")
    seg = upernet("conv2former_t", num_classes=150)
    probs = segment(seg.eval(), images)            # lsnet.segmentation.inference: whole / slide, flip, multi-scale

Scores: `lsnet.segmentation.metrics` (confusion matrix, mmseg's mIoU / mAcc / aAcc); overlays:
`lsnet.segmentation.visualize`; official mmseg checkpoints: `lsnet.segmentation.mmseg` (through the one loader).
"""
from .heads import FCNHead, FPNHead, UPerHead
from .inference import segment
from .metrics import confusion_matrix, segmentation_scores
from .models import AUX_LOSS_WEIGHT, SEGMENTERS, Segmenter, build_segmenter, semantic_fpn, upernet

__all__ = ["AUX_LOSS_WEIGHT", "FCNHead", "FPNHead", "SEGMENTERS", "Segmenter", "UPerHead", "build_segmenter",
           "confusion_matrix", "segment", "segmentation_scores", "semantic_fpn", "upernet"]
