"""Data sets for training and evaluation: Fashion-MNIST from IDX files, fault-tolerant ImageFolder trees, and
seeded validation splits held out from training data."""
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
from .folder import ImageFolder, collate_skip
from .idx import FashionMNIST, find_fashion_mnist, read_idx

__all__ = [
    "DATASETS", "SPLITS", "DatasetError", "DatasetInfo", "FashionMNIST", "HeldOut", "ImageFolder", "canonical_name",
    "carve_indices", "channel_stats", "collate_skip", "create_dataset", "create_transform", "dataset_info",
    "default_val_size", "find_fashion_mnist", "read_idx", "split_arguments",
]
