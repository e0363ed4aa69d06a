"""Stride patterns for op tests: the same values (or, for the expanded patterns, values shared along a dim) in
memory layouts a caller can hand an op. Works for any tensor of >= 3 dims."""
from __future__ import annotations

import torch

LAYOUTS = ("contiguous", "channels_last", "transposed", "reversed", "padded_rows", "sliced", "dim1_sliced",
           "expanded_batch", "expanded_dim1")


def _in_memory_order(values: torch.Tensor, order: list[int]) -> torch.Tensor:
    """values laid out densely with dims `order` from outermost to innermost."""
    inverse = sorted(range(values.dim()), key=order.__getitem__)
    return values.permute(order).contiguous().permute(inverse)


def _window(values: torch.Tensor, dim: int, pad: int, step: int = 1) -> torch.Tensor:
    """values copied into a larger NaN-filled buffer along `dim`: offset 1, every `step`-th element, `pad` more
    elements in all (NaN gaps: a kernel that reads one shows it in its results)."""
    size = values.shape[dim]
    shape = list(values.shape)
    shape[dim] = step * size + pad
    index = [slice(None)] * values.dim()
    index[dim] = slice(1, 1 + step * size, step)
    view = torch.full(shape, float("nan"), dtype=values.dtype)[tuple(index)]
    view.copy_(values)
    return view


def strided(values: torch.Tensor, layout: str) -> torch.Tensor:
    """`values` in `layout` (one of LAYOUTS). channels_last: dim 0, the last two dims, then the rest (NCHW ->
    NHWC; (B, CW, k*k, H, W) -> the view of a channels_last conv output); transposed: last two dims swapped in
    memory; reversed: all dims reversed in memory; padded_rows: the last dim padded by 3; sliced: every other
    element of the last dim; dim1_sliced: a slice of a larger dim 1; expanded_*: zero stride along dim 0 / 1
    (the values become those of index 0 along it)."""
    n = values.dim()
    if layout == "contiguous":
        return values.contiguous()
    if layout == "channels_last":
        return _in_memory_order(values, [0, n - 2, n - 1, *range(1, n - 2)])
    if layout == "transposed":
        return _in_memory_order(values, [*range(n - 2), n - 1, n - 2])
    if layout == "reversed":
        return _in_memory_order(values, list(reversed(range(n))))
    if layout == "padded_rows":
        return _window(values, n - 1, 3)
    if layout == "sliced":
        return _window(values, n - 1, 1, step=2)
    if layout == "dim1_sliced":
        return _window(values, 1, 2)
    if layout in ("expanded_batch", "expanded_dim1"):
        dim = 0 if layout == "expanded_batch" else 1
        return values.narrow(dim, 0, 1).contiguous().expand(values.shape)
    raise ValueError(f"unknown layout {layout!r}; use one of {LAYOUTS}")
