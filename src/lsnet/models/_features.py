"""Shared feature plumbing for the convolutional families: timm's forward_intermediates over a stage list."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from timm.models._features import feature_take_indices
from torch import nn


def stage_intermediates(
    x: torch.Tensor,
    stem: Callable[[torch.Tensor], torch.Tensor],
    stages: Sequence[nn.Module],
    indices: int | list[int] | None,
    stop_early: bool,
    intermediates_only: bool,
    output_fmt: str,
    owner: str,
) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
    """Run stem then stages, keeping the outputs of the stages in `indices` (last n if int, all if None).

    Returns the intermediates, or (final output, intermediates); `owner` names the model in errors.
    """
    if output_fmt != "NCHW":
        raise ValueError(f"{owner}.forward_intermediates: only output_fmt='NCHW' is supported; got {output_fmt!r}")
    take_indices, max_index = feature_take_indices(len(stages), indices)
    if stop_early and not torch.jit.is_scripting():
        stages = stages[: max_index + 1]
    intermediates = []
    x = stem(x)
    for i, stage in enumerate(stages):
        x = stage(x)
        if i in take_indices:
            intermediates.append(x)
    if intermediates_only:
        return intermediates
    return x, intermediates
