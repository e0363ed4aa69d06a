"""Data sets for training and evaluation: Fashion-MNIST from IDX files, fault-tolerant ImageFolder trees, seeded
validation splits held out from training data, COCO-format detection sets, semantic segmentation folders (ADE20K,
image/label-PNG pairs) and the Fashion-scenes builder (pycocotools is imported only when a COCO set is read or
built)."""
from .coco import CocoDetection, coco_splits, detection_collate, detection_transforms
from .errors import DatasetError
from .factory import (
    DATASETS,
    SPLITS,
    DatasetInfo,
    HeldOut,
    canonical_name,
    carve_indices,
    channel_stats,
    create_dataset,
    create_transform,
    dataset_info,
    default_val_size,
    split_arguments,
)
from .fashion_scenes import build_fashion_scenes
from .folder import ImageFolder, collate_skip
from .idx import FashionMNIST, find_fashion_mnist, read_idx
from .segmentation import SegmentationFolder, segmentation_collate, segmentation_splits, segmentation_transforms

__all__ = [
    "DATASETS", "SPLITS", "CocoDetection", "DatasetError", "DatasetInfo", "FashionMNIST", "HeldOut", "ImageFolder",
    "SegmentationFolder", "build_fashion_scenes", "canonical_name", "carve_indices", "channel_stats", "coco_splits",
    "collate_skip", "create_dataset", "create_transform", "dataset_info", "default_val_size", "detection_collate",
    "detection_transforms", "find_fashion_mnist", "read_idx", "segmentation_collate", "segmentation_splits",
    "segmentation_transforms", "split_arguments",
]
