"""Model families; importing this package registers every model in timm."""
from . import lsnet  # noqa: F401
