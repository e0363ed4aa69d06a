"""Tiny inputs for the analysis tests: a folder of small PNGs and a synthetic Fashion-MNIST (IDX files)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """Three 40x48 RGB PNGs in a flat folder."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    return root


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory) -> Path:
    """A Fashion-MNIST look-alike: 16 train and 16 test 28x28 images with labels 0..9 (gzipped IDX)."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (16, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(16) % 10)
    return root
