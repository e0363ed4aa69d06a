"""An ImageFolder that survives unreadable files: skipped with a warning and counted, or a clear error (strict).

    root/train/<class>/*.jpg, root/val/<class>/*.png, root/test/...   (torchvision's ImageFolder layout, one tree
                                                                       per split; val/ and test/ are optional)

Unreadable files are found lazily (opening 1M files up front would take minutes): `__getitem__` returns None for one,
and `collate_skip` drops the Nones and reports how many it dropped, so the count works across loader workers.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import default_collate
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from .errors import DatasetError

SPLIT_ALIASES = {"train": ("train", "training"), "val": ("val", "validation", "valid"), "test": ("test",)}


def split_dir(root: str | os.PathLike, split: str) -> Path | None:
    """`root/<split>` or its alias (val <-> validation <-> valid; never val <-> test), or None when absent."""
    root = Path(root).expanduser()
    for name in SPLIT_ALIASES.get(split, (split,)):
        if (root / name).is_dir():
            return root / name
    return None


def find_split_dir(root: str | os.PathLike, split: str) -> Path:
    """`split_dir`, or DatasetError naming what exists."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {str(root)!r} does not exist; pass --data-dir pointing at a folder with "
                           f"train/<class>/*.jpg (and optionally val/ and test/)")
    found = split_dir(root, split)
    if found is not None:
        return found
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    names = ", ".join(SPLIT_ALIASES.get(split, (split,)))
    raise DatasetError(f"no {split!r} split under {str(root)!r} (looked for {names}; "
                       f"found folders {present or 'none'}); lay it out as {root}/{split}/<class>/<image>")


class ImageFolder(torch.utils.data.Dataset):
    """(transform(image), class index) from `root/<class>/<image>`; classes sorted by name.

    Args:
        root: one split's folder.
        transform: applied to the PIL image.
        mode: PIL mode to convert to, 'RGB' (in_chans=3) or 'L' (in_chans=1).
        strict: raise DatasetError on an unreadable image instead of skipping it.
        subset: keep only the first `subset` samples (in sorted order).
    """

    def __init__(self, root, transform=None, mode: str = "RGB", strict: bool = False, subset: int | None = None):
        root = Path(root).expanduser()
        try:
            self.classes, self.class_to_idx = find_classes(str(root))
            samples = make_dataset(str(root), self.class_to_idx, extensions=IMG_EXTENSIONS)
        except (FileNotFoundError, OSError) as err:
            raise DatasetError(f"{str(root)!r}: {err}; expected {root}/<class>/<image> with extensions "
                               f"{', '.join(IMG_EXTENSIONS)}") from err
        if subset is not None:
            samples = samples[:subset]
        self.root = root
        self.samples = samples
        self.targets = [t for _, t in samples]
        self.transform = transform
        self.mode = mode
        self.strict = strict

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        try:
            with Image.open(path) as image:
                image = image.convert(self.mode)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            if self.strict:
                raise DatasetError(f"unreadable image {path!r} ({err}); remove or replace it, or run without --strict "
                                   "to skip such files with a warning") from err
            warnings.warn(f"skipping unreadable image {path!r}: {err}", stacklevel=2)
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, target


def collate_skip(batch: list):
    """default_collate over the readable samples -> (images, targets, n_skipped); (None, None, n) when none is."""
    kept = [sample for sample in batch if sample is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return None, None, skipped
    images, targets = default_collate(kept)
    return images, targets, skipped
