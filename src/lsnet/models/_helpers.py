"""Small helpers every model family shares: drop-path schedule, tracing test, official-key renames, weight source."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = ["check_weight_source", "drop_path_rates", "rename_key"]


def drop_path_rates(rate: float, depths: int | Sequence[int]) -> list[float] | list[list[float]]:
    """Stochastic-depth rates rising linearly from 0 to `rate` over all blocks (timm's and the papers' schedule).

    depths: total block count -> one rate per block; per-stage block counts -> one list of rates per stage.
    Plain Python (no tensors), so models build on the meta device.
    """
    per_stage = not isinstance(depths, int)
    total = sum(depths) if per_stage else depths
    rates = [rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
    if not per_stage:
        return rates
    out, start = [], 0
    for depth in depths:
        out.append(rates[start:start + depth])
        start += depth
    return out


def rename_key(key: str, renames: Sequence[tuple[str, str | Callable[[re.Match], str]]]) -> str:
    """Apply the first regex (pattern, replacement) of `renames` that matches `key`; unmatched keys pass through."""
    for pattern, repl in renames:
        new, count = re.subn(pattern, repl, key)
        if count:
            return new
    return key


def check_weight_source(variant: str, pretrained: bool, kwargs: dict) -> None:
    """For families without hub weights: pretrained=True needs a file or state dict (timm would only warn)."""
    if not pretrained:
        return
    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    cfg = kwargs.get("pretrained_cfg")
    cfg = cfg if isinstance(cfg, dict) else {}
    if not any(overlay.get(k) or cfg.get(k) for k in ("file", "state_dict", "url", "hf_hub_id")):
        raise RuntimeError(
            f"{variant}: no downloadable weights are known; load a local checkpoint with "
            f"timm.create_model('{variant}', pretrained=True, pretrained_cfg_overlay=dict(file='/path/to/file.pth'))"
        )
