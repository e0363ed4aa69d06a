"""Fixtures for the study tests: a study file writer and the real Fashion-MNIST folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml


@pytest.fixture
def write_study(tmp_path):
    """write_study(dict) -> path of a study YAML in tmp_path (name 'tiny' unless given)."""

    def write(data: dict, name: str = "study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"name": "tiny", **data}, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """The real Fashion-MNIST folder (`make test` installs it; see tests/train/conftest.py's real_fashion_mnist)."""
    from lsnet.data import DatasetError, find_fashion_mnist

    try:
        images, _ = find_fashion_mnist(None, "train")
    except DatasetError as err:
        if os.environ.get("CI"):
            pytest.fail(f"real Fashion-MNIST is missing; run `sh scripts/get_fashion_mnist.sh`: {err}")
        pytest.skip(f"real Fashion-MNIST not found ({err}); run `sh scripts/get_fashion_mnist.sh`")
    return Path(images).parent
