"""Data layer: IDX files, Fashion-MNIST discovery, fault-tolerant ImageFolder, timm transforms on 1 and 3 channels."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import make_fashion_mnist, make_image_folder, write_idx

from lsnet.data import (
    DatasetError,
    FashionMNIST,
    HeldOut,
    ImageFolder,
    carve_indices,
    collate_skip,
    create_dataset,
    create_transform,
    dataset_info,
    default_val_size,
    read_idx,
    split_arguments,
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


def test_held_out_indices_are_seeded_disjoint_and_stable():
    # pinned: numpy's legacy RandomState stream is frozen, so these hold on every numpy version
    assert carve_indices(10, 3, seed=0) == ([0, 1, 3, 5, 6, 7, 9], [2, 4, 8])
    assert carve_indices(10, 3, seed=42) == ([0, 2, 3, 4, 6, 7, 9], [1, 5, 8])
    train, val = carve_indices(60000, 5000, seed=7)
    assert len(val) == 5000 and len(train) == 55000 and not set(train) & set(val)
    assert sorted(train + val) == list(range(60000)) and val == sorted(val)
    assert carve_indices(60000, 5000, seed=7) == (train, val) and carve_indices(60000, 5000, seed=8)[1] != val
    assert [default_val_size(n) for n in (60000, 1281167, 30, 5)] == [5000, 5000, 3, 0]
    with pytest.raises(DatasetError, match="--val-size 10 must be between 1 and 9 .* lower --val-size"):
        carve_indices(10, 10, seed=0)


def test_fashion_mnist_val_is_held_out_from_train_with_eval_transforms(fmnist_dir):
    info = dataset_info("fashion-mnist")
    assert (info.val_split, info.test_split, info.eval_split) == (None, "test", "test")
    common = dict(data_dir=str(fmnist_dir))
    train = create_dataset("fashion-mnist", transform=lambda im: ("train", im), **common,
                           **split_arguments("train", info, seed=3))
    val = create_dataset("fashion-mnist", transform=lambda im: ("eval", im), **common,
                         **split_arguments("val", info, seed=3))
    assert isinstance(train, HeldOut) and isinstance(val, HeldOut)
    assert (len(train), len(val)) == (58, 6)  # 10% of the 64 synthetic training images
    assert not set(train.indices) & set(val.indices) and len(set(train.indices) | set(val.indices)) == 64
    assert val[0][0][0] == "eval" and train[0][0][0] == "train"
    assert val.describe() == "held out from train: 6 images, seed 3"
    full = FashionMNIST(fmnist_dir)
    index = val.indices[0]
    assert np.array_equal(np.array(val[0][0][1]), full.images[index]) and val[0][1] == full.targets[index]
    small = create_dataset("fashion-mnist", **common, subset=2, **split_arguments("val", info, seed=3))
    assert small.indices == val.indices[:2]
    with pytest.raises(DatasetError, match="splits 'train' and 'test'; got 'val' .*held out from train"):
        create_dataset("fashion-mnist", "val", **common)
    with pytest.raises(DatasetError, match="no validation split and --val-size is 0"):
        split_arguments("val", info, val_size=0)


def test_folder_splits_never_map_val_to_test(tmp_path):
    root = make_image_folder(tmp_path, n_train=10, n_val=0, n_test=2)  # train/ and test/ only
    info = dataset_info("folder", str(root))
    assert (info.val_split, info.test_split) == (None, "test")
    with pytest.raises(DatasetError, match="no 'val' split .*looked for val, validation, valid"):
        create_dataset("folder", "val", data_dir=str(root))
    val = create_dataset("folder", data_dir=str(root), **split_arguments("val", info, seed=0))
    assert len(val) == 3 and all(str(root / "train") in val.dataset.samples[i][0] for i in val.indices)
    test = create_dataset("folder", data_dir=str(root), **split_arguments("test", info))
    assert len(test) == 6 and str(test.root).endswith("test")
    (root / "validation" / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "validation" / "cat" / "x.png")
    info = dataset_info("folder", str(root))
    assert info.val_split == "val" and split_arguments("val", info) == {"split": "val", "val_size": 0}
    assert len(create_dataset("folder", data_dir=str(root), **split_arguments("val", info))) == 1
    with pytest.raises(DatasetError, match="has its own validation split 'val'; drop --val-size"):
        split_arguments("val", info, val_size=5)
    assert dataset_info("folder", str(make_image_folder(tmp_path / "b", n_test=0))).test_split is None


def test_dataset_error_from_a_loader_worker_keeps_its_one_line():
    message = "unreadable image '/d/x.png' (Truncated File Read); remove or replace it"
    wrapped = ("Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
               '  File "worker.py", line 1, in <module>\n'
               f"lsnet.data.errors.DatasetError: {message}\n")
    err = DatasetError(wrapped)
    assert str(err) == message and err.worker_traceback == wrapped
    assert str(DatasetError(message)) == message and DatasetError(message).worker_traceback is None
