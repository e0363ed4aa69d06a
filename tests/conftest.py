"""Test-wide settings: no hub access (a missing hub fails in milliseconds), `contract` importable, and the real
Fashion-MNIST (training and Fashion-scenes tests)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


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
