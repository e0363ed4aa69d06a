"""Building blocks shared across model families."""
from .conv_bn import BNLinear, ConvBN
from .lsconv import LargeKernelPerception, LSConv

__all__ = ["BNLinear", "ConvBN", "LargeKernelPerception", "LSConv"]
