"""Detection and instance segmentation on LSNet (or any timm features_only backbone), built from torchvision.

    from lsnet.detection import retinanet, mask_rcnn
    det = retinanet("lsnet_t", num_classes=80, backbone_checkpoint="lsnet_t.pth")
    det = mask_rcnn("lsnet_b", num_classes=80)
"""
from .backbone import BackboneError, DetectionBackbone, create_body
from .models import DETECTORS, build_detector, faster_rcnn, mask_rcnn, retinanet
from .neck import LSNetFPN

__all__ = ["DETECTORS", "BackboneError", "DetectionBackbone", "LSNetFPN", "build_detector", "create_body",
           "faster_rcnn", "mask_rcnn", "retinanet"]
