"""Tiny data sets and command-line flags for the training tests (imported by conftest.py and the tests)."""
from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

TINY_MODEL = "lsnet_test"
# fast flags for every tiny run: small model and images, no progress bars, no worker processes
TINY_FLAGS = ["--model", TINY_MODEL, "--img-size", "32", "--batch-size", "8", "--workers", "0", "--quiet",
              "--warmup-epochs", "0", "--lr", "2e-3", "--threads", "1"]


def torchrun_two_ranks(script: str, *args: str | Path, workdir: Path) -> tuple[subprocess.CompletedProcess, dict, dict]:
    """Run `script` (Python source that saves its parameters to <last arg>/rank<RANK>.pt) on 2 CPU processes under
    torchrun; returns the finished process and both ranks' saved parameters."""
    path = workdir / "rank.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(path), *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import torch

    output = Path(args[-1])
    rank0, rank1 = (torch.load(output / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    return done, rank0, rank1


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write `array` (uint8) as an IDX file, gzipped when `compress`."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def class_images(labels: np.ndarray, size: int, channels: int, seed: int) -> np.ndarray:
    """Learnable images: class k is a bright horizontal band at height k, plus noise. (N, size, size[, 3]) uint8."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    images = rng.integers(0, 60, size=(n, size, size), dtype=np.int64)
    rows = (labels * size) // (labels.max() + 1)
    for i, row in enumerate(rows):
        images[i, row:row + max(2, size // 10)] += 180
    images = np.clip(images, 0, 255).astype(np.uint8)
    return np.repeat(images[..., None], 3, axis=-1) if channels == 3 else images


def make_fashion_mnist(root: Path, n_train: int = 64, n_test: int = 32, compress: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        write_idx(root / f"{prefix}-images-idx3-ubyte", class_images(labels, 28, 1, seed=n), compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8), compress)
    return root


def make_image_folder(root: Path, classes=("cat", "dog", "owl"), n_train: int = 16, n_val: int = 8,
                      n_test: int = 0) -> Path:
    """root/{train,val[,test]}/<class>/NNN.png with n_* images per class (a split with 0 is left out)."""
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n == 0:
            continue
        labels = np.arange(n * len(classes)) % len(classes)
        images = class_images(labels, 24, 3, seed=n)
        for i, (label, image) in enumerate(zip(labels, images)):
            folder = root / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root


def folder_flags(folder: Path, output: Path, experiment: str, epochs: int = 2) -> list[str]:
    return ["--dataset", "folder", "--data-dir", str(folder), "--output", str(output), "--experiment", experiment,
            "--epochs", str(epochs), *TINY_FLAGS]
