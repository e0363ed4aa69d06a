"""Fashion-MNIST read straight from its IDX files (gzipped or not), wherever they come from.

    from lsnet.data import FashionMNIST
    train = FashionMNIST(split="train")            # Debian's /usr/share/datasets/fashion-mnist, or $LSNET_FASHION_MNIST
    test = FashionMNIST("~/data/fmnist", split="test", download=True)   # torchvision's downloader when online

Search order for the files when no root is given: $LSNET_FASHION_MNIST, Debian's `dataset-fashion-mnist` package
(/usr/share/datasets/fashion-mnist), torchvision's layout under ~/.cache/lsnet/data. A root may hold the files
directly or torchvision's `FashionMNIST/raw/` layout.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import DatasetError

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
DEFAULT_CACHE = "~/.cache/lsnet/data"
ENV_VAR = "LSNET_FASHION_MNIST"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = (0.2860,), (0.3530,)  # train-set pixel statistics in [0, 1]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
HOW_TO_GET_LOCAL = (
    "install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; files land in "
    f"{DEBIAN_DIR}), or point at a folder holding the four *-ubyte[.gz] files with --data-dir or ${ENV_VAR}"
)
HOW_TO_GET = HOW_TO_GET_LOCAL + ", or pass --download to fetch it with torchvision (needs network)"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into an array of its stored dtype and shape."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:  # missing, permissions, truncated or corrupt gzip
        raise DatasetError(f"cannot read IDX file {str(path)!r}: {err}; "
                           "re-install or re-download the data set") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DatasetError(f"{str(path)!r} is not an IDX file (bad magic {data[:4].hex() or 'empty'}); "
                           "re-install or re-download the data set")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(f"{str(path)!r} is truncated or corrupt: header says shape {shape} ({expected} bytes), "
                           f"file holds {len(data) - header} bytes; re-install or re-download the data set")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _candidate_dirs(root: str | os.PathLike | None) -> list[Path]:
    if root is not None:
        bases = [Path(root).expanduser()]
    else:
        bases = [Path(p).expanduser() for p in (os.environ.get(ENV_VAR), DEBIAN_DIR, DEFAULT_CACHE) if p]
    dirs = []
    for base in bases:
        dirs += [base, base / "FashionMNIST" / "raw", base / "fashion-mnist"]
    return dirs


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (directory / name).is_file():
            return directory / name
    return None


def find_fashion_mnist(root: str | os.PathLike | None = None, split: str = "train") -> tuple[Path, Path]:
    """(images, labels) paths of `split` ('train' | 'test'); DatasetError saying where it looked and how to fix."""
    if split not in FILES:
        raise DatasetError(f"Fashion-MNIST has splits 'train' and 'test'; got {split!r} (its validation images are "
                           "held out from train: --val-size)")
    searched = _candidate_dirs(root)
    for directory in searched:
        images, labels = (_find_file(directory, stem) for stem in FILES[split])
        if images and labels:
            return images, labels
    where = ", ".join(str(d) for d in searched[::3])
    raise DatasetError(f"Fashion-MNIST {split} files ({FILES[split][0]}[.gz]) not found under {where}; {HOW_TO_GET}")


def download_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """Fetch the IDX files with torchvision into `root` (default ~/.cache/lsnet/data); returns the folder."""
    from torchvision.datasets import FashionMNIST as TVFashionMNIST

    root = Path(root or DEFAULT_CACHE).expanduser()
    try:
        TVFashionMNIST(str(root), train=True, download=True)
        TVFashionMNIST(str(root), train=False, download=True)
    except Exception as err:  # URLError, HTTPError, socket timeouts, checksum errors
        reason = " ".join(str(err).split())  # torchvision's message spans lines
        raise DatasetError(f"downloading Fashion-MNIST into {str(root)!r} failed ({reason}); {HOW_TO_GET_LOCAL}") \
            from err
    return root


class FashionMNIST(torch.utils.data.Dataset):
    """Fashion-MNIST as (PIL 'L' image 28x28, int label) pairs, or (transform(image), label).

    Args:
        root: folder with the IDX files (or torchvision's layout); None searches the default places.
        split: 'train' (60,000 images) or 'test' (10,000 images).
        transform: applied to the PIL image.
        download: fetch with torchvision when the files are not found.
        subset: keep only the first `subset` images (quick runs, tests).
        rgb: return 3-channel images (for models built with in_chans=3).
    """

    classes = CLASSES

    def __init__(self, root=None, split: str = "train", transform=None, download: bool = False,
                 subset: int | None = None, rgb: bool = False):
        try:
            images_path, labels_path = find_fashion_mnist(root, split)
        except DatasetError:
            if not download or split not in FILES:
                raise
            images_path, labels_path = find_fashion_mnist(download_fashion_mnist(root), split)
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(f"{str(images_path)!r} / {str(labels_path)!r}: expected (N, H, W) images and (N,) "
                               "labels; "
                               f"got {images.shape} and {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
            raise DatasetError(f"{str(labels_path)!r}: labels outside 0..{len(CLASSES) - 1}; the file is corrupt")
        if subset is not None:
            images, labels = images[:subset], labels[:subset]
        self.root = images_path.parent
        self.split = split
        self.images = images
        self.targets = labels.astype(np.int64)
        self.transform = transform
        self.rgb = rgb

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index])  # uint8 (H, W) -> mode "L"
        if self.rgb:
            image = image.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])
