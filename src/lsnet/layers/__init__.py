"""Building blocks shared across model families (and usable on their own)."""
from .conv_bn import BNLinear, Conv2dReLU, ConvBN
from .dcnv3 import DCNv3
from .lsconv import LargeKernelPerception, LSConv
from .rfa import ReceptiveFieldAggregator

__all__ = ["BNLinear", "Conv2dReLU", "ConvBN", "DCNv3", "LargeKernelPerception", "LSConv", "ReceptiveFieldAggregator"]
