"""Test-wide settings: no hub access (a missing hub fails in milliseconds) and `contract` importable."""
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
