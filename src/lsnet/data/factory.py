"""Data sets by name, with timm's transform factory.

    from lsnet.data import create_dataset, create_transform, dataset_info
    info = dataset_info("fashion-mnist")                     # classes, native channels, mean/std
    train = create_dataset("fashion-mnist", "train", transform=create_transform(64, True, mean=info.mean, std=info.std))
    val = create_dataset("folder", "val", data_dir="~/imagenet", in_chans=3)

Names: 'fashion-mnist' (IDX files: Debian package, $LSNET_FASHION_MNIST, --data-dir, or torchvision download) and
'folder' (an ImageFolder tree `data_dir/{train,val}/<class>/<image>`).
"""
from __future__ import annotations

from dataclasses import dataclass

import timm.data

from . import idx
from .errors import DatasetError
from .folder import ImageFolder, find_split_dir

DATASETS = ("fashion-mnist", "folder")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "imagefolder": "folder", "image-folder": "folder"}
IMAGENET_MEAN, IMAGENET_STD = timm.data.IMAGENET_DEFAULT_MEAN, timm.data.IMAGENET_DEFAULT_STD


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    in_chans: int  # native channels
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eval_split: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def canonical_name(name: str) -> str:
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return key


def dataset_info(name: str, data_dir: str | None = None, train_split: str = "train") -> DatasetInfo:
    """Classes, native channel count, normalization and evaluation split of a data set (reads only folder names)."""
    name = canonical_name(name)
    if name == "fashion-mnist":
        return DatasetInfo(name, idx.CLASSES, 1, idx.MEAN, idx.STD, "test")
    if data_dir is None:
        raise DatasetError("dataset 'folder' needs --data-dir pointing at a folder with train/<class>/<image> "
                           "and val/<class>/<image>")
    from torchvision.datasets.folder import find_classes

    split_dir = find_split_dir(data_dir, train_split)
    try:
        classes, _ = find_classes(str(split_dir))
    except (FileNotFoundError, OSError) as err:
        raise DatasetError(f"{str(split_dir)!r}: {err}; expected {split_dir}/<class>/<image>") from err
    return DatasetInfo(name, tuple(classes), 3, IMAGENET_MEAN, IMAGENET_STD, "val")


def channel_stats(values: tuple[float, ...], in_chans: int) -> tuple[float, ...]:
    """Per-channel mean/std for `in_chans` channels: repeat a gray value, or average RGB to gray."""
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    if len(values) == 1:
        return values * in_chans
    if in_chans == 1:
        return (sum(values) / len(values),)
    raise DatasetError(f"mean/std have {len(values)} values, model has in_chans={in_chans}; give {in_chans} values")


def create_transform(img_size: int, is_training: bool, *, mean, std, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                     hflip: float = 0.5, vflip: float = 0.0, color_jitter: float = 0.4, auto_augment: str | None = None,
                     re_prob: float = 0.0, re_mode: str = "pixel", re_count: int = 1,
                     interpolation: str = "bicubic", crop_pct: float = 0.875):
    """timm's transform factory: RandomResizedCrop, flips, RandAugment/AutoAugment or color jitter, random erasing
    for training; resize + center crop (crop_pct) for evaluation. Works for 1-channel ('L') and RGB images."""
    if is_training:
        return timm.data.create_transform(
            img_size, is_training=True, scale=tuple(scale), ratio=tuple(ratio), hflip=hflip, vflip=vflip,
            color_jitter=color_jitter or None, auto_augment=auto_augment or None, interpolation=interpolation,
            mean=tuple(mean), std=tuple(std), re_prob=re_prob, re_mode=re_mode, re_count=re_count,
        )
    return timm.data.create_transform(img_size, is_training=False, interpolation=interpolation,
                                      mean=tuple(mean), std=tuple(std), crop_pct=crop_pct)


def create_dataset(name: str, split: str, *, data_dir: str | None = None, transform=None, in_chans: int | None = None,
                   download: bool = False, subset: int | None = None, strict: bool = False):
    """A map-style dataset of (image, label); `split` is 'train' or the evaluation split ('test' / 'val')."""
    name = canonical_name(name)
    if in_chans not in (None, 1, 3):
        raise DatasetError(f"images can be loaded with 1 or 3 channels; got in_chans={in_chans}")
    if name == "fashion-mnist":
        split = "train" if split == "train" else "test"
        return idx.FashionMNIST(data_dir, split=split, transform=transform, download=download, subset=subset,
                                rgb=in_chans == 3)
    if data_dir is None:
        raise DatasetError("dataset 'folder' needs --data-dir pointing at a folder with train/<class>/<image> "
                           "and val/<class>/<image>")
    dataset = ImageFolder(find_split_dir(data_dir, split), transform=transform,
                          mode="L" if in_chans == 1 else "RGB", strict=strict, subset=subset)
    if len(dataset) == 0:
        raise DatasetError(f"no images found under {str(dataset.root)!r}")
    return dataset
