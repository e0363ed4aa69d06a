"""Fixtures for the training tests: tiny data sets and one tiny finished run (seconds, not minutes)."""
from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import folder_flags, make_fashion_mnist, make_image_folder


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory) -> Path:
    return make_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture(scope="session")
def folder_dir(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("folder"), n_test=4)  # train 48, val 24, test 12 images


@pytest.fixture(scope="session")
def tiny_run(folder_dir, tmp_path_factory) -> Path:
    """A finished 2-epoch run on the synthetic image folder (its run folder)."""
    from lsnet.cli.main import main

    output = tmp_path_factory.mktemp("runs")
    assert main(["train", *folder_flags(folder_dir, output, "tiny")]) == 0
    return output / "tiny"
