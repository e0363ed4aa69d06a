"""Data layer: IDX files, Fashion-MNIST discovery, fault-tolerant ImageFolder, timm transforms on 1 and 3 channels."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from train_helpers import make_fashion_mnist, make_image_folder, write_idx

from lsnet.data import (
    DatasetError,
    FashionMNIST,
    ImageFolder,
    collate_skip,
    create_dataset,
    create_transform,
    dataset_info,
    read_idx,
)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x-idx3-ubyte", array, compress)
    np.testing.assert_array_equal(read_idx(path), array)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    path = write_idx(tmp_path / "t-idx3-ubyte", np.zeros((4, 5, 5), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        read_idx(path)
    (tmp_path / "broken.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x05abcde")[:-6])
    with pytest.raises(DatasetError, match="cannot read IDX file"):
        read_idx(tmp_path / "broken.gz")


def test_fashion_mnist_from_idx_files(fmnist_dir):
    train = FashionMNIST(fmnist_dir, split="train")
    test = FashionMNIST(fmnist_dir, split="test", subset=10)
    assert (len(train), len(test)) == (64, 10)
    image, label = train[3]
    assert image.mode == "L" and image.size == (28, 28) and label == 3
    assert FashionMNIST(fmnist_dir, rgb=True)[0][0].mode == "RGB"


def test_fashion_mnist_torchvision_layout(tmp_path):
    make_fashion_mnist(tmp_path / "FashionMNIST" / "raw", n_train=10, n_test=10, compress=False)
    assert len(FashionMNIST(tmp_path, split="test")) == 10


def test_missing_fashion_mnist_is_one_actionable_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LSNET_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError) as info:
        FashionMNIST(tmp_path / "empty", split="train")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message and "--download" in message


def test_corrupt_fashion_mnist_labels(tmp_path):
    root = make_fashion_mnist(tmp_path, n_train=10, n_test=10)
    write_idx(root / "t10k-labels-idx1-ubyte", np.full(10, 42, np.uint8))
    with pytest.raises(DatasetError, match="labels outside"):
        FashionMNIST(root, split="test")


def test_image_folder_skips_corrupt_files_with_a_warning(tmp_path):
    root = make_image_folder(tmp_path, n_train=4, n_val=2)
    (root / "train" / "cat" / "broken.png").write_bytes(b"not a png at all")
    data = ImageFolder(root / "train", transform=lambda image: torch.from_numpy(np.array(image)))
    index = [p for p, _ in data.samples].index(str(root / "train" / "cat" / "broken.png"))
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        assert data[index] is None
    batch = [data[0], None, data[1]]
    images, targets, skipped = collate_skip(batch)
    assert images is not None and len(targets) == 2 and skipped == 1
    assert collate_skip([None, None]) == (None, None, 2)
    with pytest.raises(DatasetError, match="unreadable image .*broken.png.*without --strict"):
        ImageFolder(root / "train", strict=True)[index]


def test_image_folder_layout_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        create_dataset("folder", "train", data_dir=str(tmp_path / "missing"))
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match="no 'val' split"):
        create_dataset("folder", "val", data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match="unknown dataset"):
        dataset_info("cifar-11")


@pytest.mark.parametrize("channels", [1, 3])
def test_timm_transforms_on_gray_and_rgb(tmp_path, channels):
    root = make_image_folder(tmp_path, n_train=2, n_val=1)
    mean, std = (0.5,) * channels, (0.25,) * channels
    train_tf = create_transform(40, True, mean=mean, std=std, auto_augment="rand-m9-mstd0.5", re_prob=1.0,
                                scale=(0.5, 1.0))
    eval_tf = create_transform(40, False, mean=mean, std=std, crop_pct=1.0)
    data = create_dataset("folder", "train", data_dir=str(root), transform=train_tf, in_chans=channels)
    assert data[0][0].shape == (channels, 40, 40)
    data = create_dataset("folder", "val", data_dir=str(root), transform=eval_tf, in_chans=channels)
    assert data[0][0].shape == (channels, 40, 40) and torch.isfinite(data[0][0]).all()
