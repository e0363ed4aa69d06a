"""Data sets by name, their train / val / test splits, and timm's transform factory.

    from lsnet.data import create_dataset, create_transform, dataset_info, split_arguments
    info = dataset_info("fashion-mnist")          # classes, native channels, mean/std, which splits exist
    tf = create_transform(64, True, mean=info.mean, std=info.std)
    train = create_dataset("fashion-mnist", transform=tf, **split_arguments("train", info, seed=42))  # 55,000
    val = create_dataset("fashion-mnist", **split_arguments("val", info, seed=42))   # the other 5,000 of train
    test = create_dataset("folder", "test", data_dir="~/data", in_chans=3)

Names: 'fashion-mnist' (IDX files: Debian package, $LSNET_FASHION_MNIST, --data-dir, or torchvision download) and
'folder' (an ImageFolder tree `data_dir/train/<class>/<image>`, with optional `val/` and `test/` trees).

Validation: a data set without a validation split of its own (Fashion-MNIST; a folder without val/) holds out
`val_size` of its training images, drawn with a seed (`carve_indices`), so that model selection never sees the test
split. The same seed and size give the same images on every run, rank and `lsnet eval`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import timm.data
from torch.utils.data import Subset

from . import idx
from .errors import DatasetError
from .folder import ImageFolder, find_split_dir, split_dir

DATASETS = ("fashion-mnist", "folder")
SPLITS = ("train", "val", "test")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "imagefolder": "folder", "image-folder": "folder"}
IMAGENET_MEAN, IMAGENET_STD = timm.data.IMAGENET_DEFAULT_MEAN, timm.data.IMAGENET_DEFAULT_STD
VAL_FRACTION, VAL_MAX = 0.1, 5000  # held out when a data set has no validation split: 10%, at most 5000


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    in_chans: int  # native channels
    mean: tuple[float, ...]
    std: tuple[float, ...]
    val_split: str | None  # a validation split of its own; None: held out from the training split
    test_split: str | None  # None: the data set has no test split

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def eval_split(self) -> str:
        """The split a final evaluation reads: the test split, or 'val' when there is none."""
        return self.test_split or "val"


def canonical_name(name: str) -> str:
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return key


def _need_data_dir() -> DatasetError:
    return DatasetError("dataset 'folder' needs --data-dir pointing at a folder with train/<class>/<image> "
                        "(and optionally val/ and test/)")


def dataset_info(name: str, data_dir: str | None = None, train_split: str = "train") -> DatasetInfo:
    """Classes, native channel count, normalization and splits of a data set (reads only folder names)."""
    name = canonical_name(name)
    if name == "fashion-mnist":
        return DatasetInfo(name, idx.CLASSES, 1, idx.MEAN, idx.STD, val_split=None, test_split="test")
    if data_dir is None:
        raise _need_data_dir()
    from torchvision.datasets.folder import find_classes

    train_dir = find_split_dir(data_dir, train_split)
    try:
        classes, _ = find_classes(str(train_dir))
    except (FileNotFoundError, OSError) as err:
        raise DatasetError(f"{str(train_dir)!r}: {err}; expected {train_dir}/<class>/<image>") from err
    has = {split: split_dir(data_dir, split) is not None for split in ("val", "test")}
    return DatasetInfo(name, tuple(classes), 3, IMAGENET_MEAN, IMAGENET_STD, val_split="val" if has["val"] else None,
                       test_split="test" if has["test"] else None)


def default_val_size(num_train: int) -> int:
    """Training images held out for validation when a data set has none: 10%, at most 5000 (Fashion-MNIST: 5000)."""
    return min(VAL_MAX, int(num_train * VAL_FRACTION))


def carve_indices(num: int, val_size: int, seed: int) -> tuple[list[int], list[int]]:
    """(train, val) indices into range(num): `val_size` drawn with `seed` (numpy's frozen legacy generator, so the
    draw is the same on every numpy version), the rest for training; both in ascending order, disjoint."""
    if not 0 < val_size < num:
        raise DatasetError(f"--val-size {val_size} must be between 1 and {num - 1} for a training split of {num} "
                           "images; lower --val-size (or 0: no validation)")
    order = np.random.RandomState(seed % 2**32).permutation(num)
    return np.sort(order[val_size:]).tolist(), np.sort(order[:val_size]).tolist()


class HeldOut(Subset):
    """A part of a training split: the validation images held out of it, or the training images that remain."""

    def __init__(self, dataset, indices: list[int], part: str, source: str, val_size: int, seed: int):
        super().__init__(dataset, indices)
        self.part, self.source, self.val_size, self.seed = part, source, val_size, seed

    def describe(self) -> str:
        """'held out from train: 5000 images, seed 42' (val) or 'train without the 5000 held out, seed 42'."""
        if self.part == "val":
            return f"held out from {self.source}: {self.val_size} images, seed {self.seed}"
        return f"{self.source} without the {self.val_size} held out, seed {self.seed}"


def split_arguments(split: str, info: DatasetInfo, *, val_split: str | None = None, test_split: str | None = None,
                    train_split: str = "train", val_size: int | None = None, seed: int = 0) -> dict:
    """create_dataset's split settings for 'train', 'val' or 'test' of a run.

    val_split / test_split: the run's choice (None: the data set's own; test_split 'none': no test split).
    val_size: images held out of `train_split` when there is no validation split (None: `default_val_size`;
    0: no validation). With a validation split of its own, a val_size > 0 is an error.
    """
    own_val = val_split or info.val_split
    test_name = info.test_split if test_split is None else test_split
    if own_val and own_val == test_name:
        raise DatasetError(f"validation split {own_val!r} is also the test split: choosing best.pth on it makes the "
                           "test score optimistic; unset --val-split (a run of an older version may have it in its "
                           "config.yaml) to hold out --val-size training images")
    if split == "train":
        return dict(split=train_split, train_split=train_split, val_size=0 if own_val else val_size, seed=seed)
    if split == "val":
        if own_val:
            if val_size:
                raise DatasetError(f"--val-size {val_size} holds out training images, but {info.name} has its own "
                                   f"validation split {own_val!r}; drop --val-size")
            return dict(split=own_val, val_size=0)
        if val_size == 0:
            raise DatasetError(f"{info.name} has no validation split and --val-size is 0; hold out training images "
                               "with --val-size N (or evaluate --split test)")
        return dict(split="val", val_size=val_size, seed=seed, train_split=train_split)
    if split == "test":
        if test_name in (None, "none"):
            raise DatasetError(f"{info.name} has no test split (--test-split {test_split or 'unset'}); evaluate "
                               "--split val, or add a test/<class>/<image> folder")
        return dict(split=test_name, val_size=0)
    raise DatasetError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")


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
                   download: bool = False, subset: int | None = None, strict: bool = False, val_size: int | None = 0,
                   seed: int = 0, train_split: str = "train"):
    """A map-style dataset of (image, label).

    split: 'train', 'test', or a folder's sub-folder ('val', ...); `split_arguments` maps a run's train / val / test
    to these settings. val_size: 0 reads `split` as it is. Otherwise (None: `default_val_size`) that many images of
    `train_split` are held out with `seed`: split 'val' returns them, split `train_split` the rest (`HeldOut`).
    subset: keep only the first N images (of the held-out part, when holding out).
    """
    name = canonical_name(name)
    if in_chans not in (None, 1, 3):
        raise DatasetError(f"images can be loaded with 1 or 3 channels; got in_chans={in_chans}")
    if val_size != 0 and split in ("val", train_split):
        full = create_dataset(name, train_split, data_dir=data_dir, transform=transform, in_chans=in_chans,
                              download=download, strict=strict)
        val_size = default_val_size(len(full)) if val_size is None else val_size
        train_indices, val_indices = carve_indices(len(full), val_size, seed)
        indices = val_indices if split == "val" else train_indices
        return HeldOut(full, indices[:subset], "val" if split == "val" else "train", train_split, val_size, seed)
    if name == "fashion-mnist":
        return idx.FashionMNIST(data_dir, split=split, transform=transform, download=download, subset=subset,
                                rgb=in_chans == 3)
    if data_dir is None:
        raise _need_data_dir()
    dataset = ImageFolder(find_split_dir(data_dir, split), transform=transform,
                          mode="L" if in_chans == 1 else "RGB", strict=strict, subset=subset)
    if len(dataset) == 0:
        raise DatasetError(f"no images found under {str(dataset.root)!r}")
    return dataset
