"""Shared model-building glue: official checkpoint containers and timm's pretrained path.

Every family's `_create_<family>` calls `build_model`, which adds two things to timm's `build_model_with_cfg`:
  * `pretrained_cfg_overlay=dict(file=PATH)` is read here, not by timm: official training containers are
    unwrapped to the entry the official evaluation reads (non-EMA: 'model' / 'state_dict' /
    'model_state_dict'), or to `checkpoint_entry=` when given, and the choice is logged. timm's own loader
    would prefer the EMA entry. The unwrapped dict then goes through timm (`state_dict` overlay), so the
    family's `checkpoint_filter_fn`, in_chans adaptation and classifier resizing still apply.
  * hub failures (no network, HF_HUB_OFFLINE=1) become one error that says how to load a local file.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from timm.models import build_model_with_cfg

_logger = logging.getLogger(__name__)

# entries official evaluation code reads, in order of preference (LSNet/UniConvNet 'model', timm 'state_dict',
# LKCA 'model_state_dict'); EMA entries only when asked for by name
NON_EMA_ENTRIES = ("model", "state_dict", "model_state_dict", "module")
EMA_ENTRIES = ("model_ema", "state_dict_ema")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def load_checkpoint_file(path: str | os.PathLike, entry: str | None = None) -> dict[str, torch.Tensor]:
    """Load a state dict from a .pth/.pt/.bin (torch.load, weights_only=True) or .safetensors file.

    Training containers ({'model': ..., 'model_ema': ..., 'optimizer': ...}) are unwrapped to `entry`, or to the
    first non-EMA entry present. Wrapper prefixes ('module.', '_orig_mod.') are removed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path!r}; pass the path of a .pth or .safetensors file")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        checkpoint: Any = load_file(path, device="cpu")
    else:
        try:
            # official training containers also pickle their argparse.Namespace of arguments
            with torch.serialization.safe_globals([argparse.Namespace]):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # unpickling errors come in several types
            raise RuntimeError(
                f"could not load {path!r} with torch.load(weights_only=True): {err}. Only tensor checkpoints are "
                "accepted; re-save it as a state dict or .safetensors"
            ) from err
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"{path!r} holds a {type(checkpoint).__name__}, not a state dict or checkpoint container")
    state_dict = unwrap_checkpoint(checkpoint, entry=entry, source=path)
    return {_strip_prefixes(k): v for k, v in state_dict.items()}


def unwrap_checkpoint(checkpoint: Mapping[str, Any], entry: str | None = None, source: str = "checkpoint") -> dict:
    """Pick the state dict out of a training container (or return a bare state dict unchanged)."""
    containers = [k for k in (*NON_EMA_ENTRIES, *EMA_ENTRIES) if isinstance(checkpoint.get(k), Mapping)]
    if entry is not None:
        if entry not in containers:
            raise KeyError(f"{source}: entry {entry!r} not found; entries holding state dicts: {containers or 'none'}")
        chosen = entry
    else:
        chosen = next((k for k in NON_EMA_ENTRIES if k in containers), None)
        if chosen is None and containers:  # only EMA weights were saved
            chosen = containers[0]
    if chosen is None:
        _logger.info(f"{source}: loaded a bare state dict")
        return dict(checkpoint)
    _logger.info(f"{source}: loaded entry {chosen!r} (entries present: {containers})")
    return dict(checkpoint[chosen])


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def build_model(
    model_cls: type[torch.nn.Module],
    variant: str,
    pretrained: bool,
    filter_fn: Callable[[dict, torch.nn.Module], dict],
    feature_cfg: dict | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """timm `build_model_with_cfg` plus official-container loading and a clear offline error."""
    checkpoint_entry = kwargs.pop("checkpoint_entry", None)
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    if pretrained and overlay.get("file"):
        overlay["state_dict"] = load_checkpoint_file(overlay.pop("file"), entry=checkpoint_entry)
    try:
        model = build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_filter_fn=filter_fn,
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
