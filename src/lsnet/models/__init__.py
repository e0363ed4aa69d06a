"""Model families; importing this package registers every model in timm."""
from . import lsnet  # noqa: F401
from . import uniconvnet  # noqa: F401
from . import conv2former, lkca  # noqa: F401
