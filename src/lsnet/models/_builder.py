"""Shared model-building glue: timm's pretrained path goes through `lsnet.checkpoints`, the one loader.

Every family's `_create_<family>` calls `build_model`, which adds two things to timm's `build_model_with_cfg`:
  * pretrained weights, from the hub or from `pretrained_cfg_overlay=dict(file=PATH)` (read by
    `lsnet.checkpoints.read_checkpoint`: official containers, run checkpoints, safetensors; `checkpoint_entry=`
    picks the entry), are fitted by `lsnet.checkpoints.fit_state_dict`: the family's `checkpoint_filter_fn`, a
    classifier of another size dropped, the stem adapted to `in_chans`, a one-line error for anything else;
  * hub failures (no network, HF_HUB_OFFLINE=1) become one error that says how to load a local file.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from timm.models import build_model_with_cfg, resolve_pretrained_cfg

from ..checkpoints import fit_state_dict, read_checkpoint


def build_model(
    model_cls: type[torch.nn.Module],
    variant: str,
    pretrained: bool,
    filter_fn: Callable[[dict, torch.nn.Module], dict],
    feature_cfg: dict | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """timm `build_model_with_cfg`, loading pretrained weights through `lsnet.checkpoints`."""
    checkpoint_entry = kwargs.pop("checkpoint_entry", None)
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    source = f"{variant} pretrained weights"
    if pretrained:
        if overlay.get("file"):
            checkpoint = read_checkpoint(overlay.pop("file"))
            overlay["state_dict"] = checkpoint.state_dict(checkpoint_entry)
            source = repr(str(checkpoint.path))
        # fit_state_dict already drops a classifier of another size and adapts the stem: timm's own steps after the
        # filter must see nothing left to adapt
        cfg = resolve_pretrained_cfg(variant, kwargs.get("pretrained_cfg"), overlay)
        if kwargs.get("num_classes") is not None:
            overlay["num_classes"] = kwargs["num_classes"]
        if kwargs.get("in_chans") is not None:
            overlay["input_size"] = (kwargs["in_chans"], *cfg.input_size[1:])
    try:
        model = build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_filter_fn=functools.partial(fit_state_dict, source=source, filter_fn=filter_fn),
            pretrained_strict=False,  # fit_state_dict checked every key; only a dropped classifier may be missing
            feature_cfg=feature_cfg or dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
            pretrained_cfg_overlay=overlay or None,
            **kwargs,
        )
        _drop_loaded_state_dict(model)
        return model
    except (OSError, RuntimeError, ValueError) as err:
        if not pretrained or "state_dict" in overlay or not _is_download_error(err):
            raise
        raise RuntimeError(
            f"{variant}: could not download pretrained weights ({type(err).__name__}: {err}). Without network, load "
            f"a local copy: timm.create_model('{variant}', pretrained=True, "
            f"pretrained_cfg_overlay=dict(file='/path/to/{variant}.pth'))"
        ) from err


def _drop_loaded_state_dict(model: torch.nn.Module) -> None:
    """The cfg that carried the loaded weights into timm must not keep a second copy alive with the model."""
    for module in (model, getattr(model, "model", None)):  # features_only wrappers hold the model as .model
        cfg = getattr(module, "pretrained_cfg", None)
        if isinstance(cfg, dict):
            cfg.pop("state_dict", None)


def _is_download_error(err: BaseException) -> bool:
    text = f"{type(err).__name__} {err}".lower()
    markers = ("offline", "connection", "resolve", "hub", "http", "network", "no pretrained weights", "not found")
    return any(m in text for m in markers)
