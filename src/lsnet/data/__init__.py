"""Data sets for training and evaluation: Fashion-MNIST from IDX files and fault-tolerant ImageFolder trees."""
from .errors import DatasetError
from .factory import (
    DATASETS,
    DatasetInfo,
    canonical_name,
    channel_stats,
    create_dataset,
    create_transform,
    dataset_info,
)
from .folder import ImageFolder, collate_skip
from .idx import FashionMNIST, find_fashion_mnist, read_idx

__all__ = [
    "DATASETS", "DatasetError", "DatasetInfo", "FashionMNIST", "ImageFolder", "canonical_name", "channel_stats",
    "collate_skip", "create_dataset", "create_transform", "dataset_info", "find_fashion_mnist", "read_idx",
]
