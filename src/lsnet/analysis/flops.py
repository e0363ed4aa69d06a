"""Multiply-accumulate counts with torch's FlopCounterMode (SKA counted as k*k MACs per output element).

    from lsnet.analysis.flops import count_macs
    gmacs = count_macs(model, (3, 224, 224)) / 1e9
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def count_macs(model: torch.nn.Module, input_size: tuple[int, int, int], batch: int = 1) -> int:
    """MACs of one eval-mode forward pass at `input_size` (C, H, W), per `batch` images.

    FlopCounterMode counts a multiply-add as 2 FLOPs (convs, matmuls, attention, the registered SKA formula);
    elementwise ops, norms and activations are not counted, as in fvcore and the papers' tables.
    """
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    x = torch.randn(batch, *input_size, device=param.device if param is not None else "cpu",
                    dtype=param.dtype if param is not None else torch.float32)
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
