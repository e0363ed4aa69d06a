"""lsnet: LSNet and its large-kernel relatives as timm models, with a portable SKA op.

    import lsnet, timm
    model = timm.create_model('lsnet_t', pretrained=False, num_classes=10)
"""
from . import models  # noqa: F401  (registers the models in timm)
from .ops import ska

__all__ = ["models", "ska"]
__version__ = "0.1.0"
