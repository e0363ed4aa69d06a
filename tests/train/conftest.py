"""Fixtures for the training tests: tiny data sets and one tiny finished run (seconds, not minutes)."""
from __future__ import annotations

import os
import shutil
import subprocess
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


def _can_install_packages() -> bool:
    """apt-get plus root (or password-less sudo): what scripts/get_fashion_mnist.sh needs to install the data."""
    if shutil.which("apt-get") is None:
        return False
    if os.geteuid() == 0:
        return True
    if shutil.which("sudo") is None:
        return False
    return subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def real_fashion_mnist() -> Path:
    """The folder of the real Fashion-MNIST IDX files ($LSNET_FASHION_MNIST, Debian's dataset-fashion-mnist, ...).

    `make test` installs them first (scripts/get_fashion_mnist.sh, as `make run` does). Missing files fail the test
    in CI and wherever that script could have installed them (apt-get and root), so a learning test cannot silently
    go missing there; on a machine without apt-get or root the tests skip and say how to provide the data.
    """
    from lsnet.data import DatasetError, find_fashion_mnist

    try:
        images, _ = find_fashion_mnist(None, "train")
        find_fashion_mnist(None, "test")
    except DatasetError as err:
        if os.environ.get("CI") or _can_install_packages():
            pytest.fail(f"real Fashion-MNIST is missing; run `sh scripts/get_fashion_mnist.sh` (`make test` does): "
                        f"{err}")
        pytest.skip("real Fashion-MNIST is not installed and cannot be here (needs apt-get and root): "
                    "`sudo apt-get install dataset-fashion-mnist` or set LSNET_FASHION_MNIST=/folder")
    return images.parent
