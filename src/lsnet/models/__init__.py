"""Model families; importing this package registers every model in timm."""
from . import conv2former, lkca, lsnet, uniconvnet  # noqa: F401
