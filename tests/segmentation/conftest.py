"""Segmentation tests run small models at several input sizes: oneDNN's per-shape setup (~1-2 s) would dominate."""
import pytest

from contract import onednn


@pytest.fixture(autouse=True)
def _native_convolutions():
    with onednn(False):
        yield
