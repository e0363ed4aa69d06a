"""Images for the analyses (ERF, robustness, inspect): scikit-image's bundled photos, Fashion-MNIST, or a folder.

    from lsnet.analysis.images import load_images
    images = load_images("photos", 8, img_size=224, in_chans=3)        # (8, 3, 224, 224), normalized, deterministic
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.factory import channel_stats

IMAGE_SOURCES = ("photos", "fashion-mnist")
# real photographs bundled in scikit-image's wheel (no download): file names under skimage/data
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def photo_paths() -> list[Path]:
    """The real photographs bundled with scikit-image (astronaut, chelsea, coffee, rocket, motorcycle, Hubble)."""
    try:
        import skimage.data
    except ImportError as err:
        raise ImportError("the 'photos' image set comes with scikit-image: pip install scikit-image "
                          "(or pass a folder of images / 'fashion-mnist')") from err
    root = Path(skimage.data.__file__).parent
    paths = [root / name for name in PHOTOS if (root / name).is_file()]
    if not paths:
        raise FileNotFoundError(f"no bundled photos found under {root}; reinstall scikit-image or pass a folder")
    return paths


def folder_paths(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder`, flat or in ImageFolder class sub-folders, sorted."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} not found; pass 'photos', 'fashion-mnist' or a folder")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_EXTS and p.is_file())
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(_IMAGE_EXTS)}) under {str(root)!r}")
    return paths


def source_images(source: str | os.PathLike, num_images: int, seed: int = 0, data_dir: str | None = None) -> list:
    """`num_images` PIL images from 'photos', 'fashion-mnist' or a folder (see `load_images`), deterministic."""
    from PIL import Image

    if num_images < 1:
        raise ValueError(f"num_images must be >= 1; got {num_images}")
    rng = np.random.default_rng(seed)
    if str(source) == "fashion-mnist":
        from lsnet.data import FashionMNIST

        dataset = FashionMNIST(data_dir, split="test", subset=num_images)
        return [dataset[i][0] for i in range(len(dataset))]
    if str(source) == "photos":
        photos = [Image.open(p).convert("RGB") for p in photo_paths()]
        pils = []
        for i in range(num_images):
            photo = photos[i % len(photos)]
            if i >= len(photos):  # RandomResizedCrop-style view: 25-100% of the area, aspect 3/4..4/3, random flip
                w, h = photo.size
                area = w * h * rng.uniform(0.25, 1.0)
                aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
                cw, ch = min(w, round(math.sqrt(area * aspect))), min(h, round(math.sqrt(area / aspect)))
                left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                photo = photo.crop((left, top, left + cw, top + ch))
                if rng.random() < 0.5:
                    photo = photo.transpose(Image.FLIP_LEFT_RIGHT)
            pils.append(photo)
        return pils
    paths = folder_paths(source)
    if len(paths) > num_images:
        paths = [paths[i] for i in sorted(rng.choice(len(paths), num_images, replace=False))]
    return [Image.open(p) for p in paths]


def to_model_size(pil, img_size: int, in_chans: int = 3):
    """Resize (short side, bicubic) and centre-crop a PIL image to img_size, as 'L' (in_chans=1) or 'RGB'."""
    from torchvision.transforms import functional as TF  # noqa: N812

    pil = pil.convert("L" if in_chans == 1 else "RGB")
    return TF.center_crop(TF.resize(pil, img_size, TF.InterpolationMode.BICUBIC), img_size)


def load_images(source: str | os.PathLike, num_images: int, *, img_size: int, in_chans: int = 3,
                mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                seed: int = 0, data_dir: str | None = None) -> torch.Tensor:
    """`num_images` normalized images (N, in_chans, img_size, img_size), deterministic given `seed`.

    source: 'photos' (scikit-image's bundled photos: each photo whole, then random resized crops with flips until N),
    'fashion-mnist' (the first N test images, upsampled; needs the Debian package or `data_dir`), or a folder of
    images (ImageFolder tree or flat; N images drawn with `seed`, all when fewer). Images are resized (short side)
    and centre-cropped to img_size, converted to gray for in_chans=1 and to RGB for in_chans=3.
    """
    from torchvision.transforms import functional as TF  # noqa: N812

    mean, std = list(channel_stats(mean, in_chans)), list(channel_stats(std, in_chans))
    tensors = [TF.normalize(TF.to_tensor(to_model_size(pil, img_size, in_chans)), mean, std)
               for pil in source_images(source, num_images, seed, data_dir)]
    return torch.stack(tensors)
