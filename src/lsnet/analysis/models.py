"""Which model an analysis (ERF, robustness, inspect) looks at: spec strings, building, input settings.

    from lsnet.analysis.models import load_model, model_input
    model = load_model("w/o LKP=lsnet_t:lkp_kernel_size=0")            # random init, eval mode
    model = load_model("lsnet_t", checkpoint="runs/<run>/best.pth")    # lsnet.checkpoints: any checkpoint file
    model_input(model)            # {'img_size': ..., 'in_chans': ..., 'mean': (...), 'std': (...)}
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..checkpoints import create_model, model_from_checkpoint
from ..data.factory import channel_stats


@dataclass
class ModelSpec:
    """A model to analyse: `[LABEL=]NAME[:KEY=VALUE,...]`, e.g. 'w/o LKP=lsnet_t:lkp_kernel_size=0'.

    A `checkpoint=PATH` entry is taken out of the keywords into `checkpoint`.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    checkpoint: str | None = None

    def __post_init__(self):
        self.label = self.label or self.name + "".join(f" {k}={v}" for k, v in self.kwargs.items())


def parse_model_spec(text: str) -> ModelSpec:
    """Parse `[LABEL=]NAME[:KEY=VALUE,...]`; values are YAML scalars (7, 0.5, true, [1, 2])."""
    import yaml

    label = ""
    head, _, tail = text.partition(":")
    if "=" in head:
        label, head = head.split("=", 1)
    name = head.strip()
    if not name:
        raise ValueError(f"model spec {text!r}: expected [LABEL=]NAME[:KEY=VALUE,...], "
                         "e.g. 'lsnet_t:lkp_kernel_size=0'")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in re.split(r",(?![^\[]*\])", tail))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"model spec {text!r}: {item!r} is not KEY=VALUE")
        kwargs[key.strip()] = yaml.safe_load(value) if key.strip() != "checkpoint" else value.strip()
    checkpoint = kwargs.pop("checkpoint", None)
    return ModelSpec(name, kwargs, label.strip(), checkpoint)


def load_model(spec: str | ModelSpec, checkpoint: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """The model of `spec` in eval mode: random weights, or a checkpoint loaded by `lsnet.checkpoints` (official files,
    run checkpoints, safetensors; classifier / stem / bias tables adapted to the model built).

    A checkpoint written by `lsnet train` supplies the model's num_classes / in_chans / img_size / model_kwargs and the
    input settings (mean, std, interpolation, crop_pct) unless `kwargs` or the spec say otherwise. The resolved input
    settings are kept as `model.analysis_input` (see `model_input`).
    """
    import timm

    spec = parse_model_spec(spec) if isinstance(spec, str) else spec
    checkpoint = checkpoint or spec.checkpoint
    kwargs = {**spec.kwargs, **kwargs}
    config: dict[str, Any] = {}
    if checkpoint is not None:
        model, read = model_from_checkpoint(checkpoint, model=spec.name, **kwargs)
        config = read.config
    else:
        model = create_model(spec.name, **kwargs).eval()
    data_cfg = timm.data.resolve_model_data_config(model)
    in_chans = int(getattr(model, "in_chans", kwargs.get("in_chans", data_cfg["input_size"][0])))
    model.analysis_input = dict(
        img_size=int(config.get("img_size") or data_cfg["input_size"][-1]),
        in_chans=in_chans,
        mean=channel_stats(config.get("mean") or data_cfg["mean"], in_chans),
        std=channel_stats(config.get("std") or data_cfg["std"], in_chans),
        interpolation=config.get("interpolation") or data_cfg.get("interpolation", "bicubic"),
        crop_pct=float(config.get("crop_pct") or data_cfg.get("crop_pct", 0.875)),
        from_checkpoint_config=bool(config),
    )
    return model


def model_input(model: nn.Module) -> dict[str, Any]:
    """img_size, in_chans, mean, std of a model built by `load_model` (timm defaults for other models)."""
    if hasattr(model, "analysis_input"):
        info = model.analysis_input
    else:
        import timm

        cfg = timm.data.resolve_model_data_config(model)
        in_chans = int(getattr(model, "in_chans", cfg["input_size"][0]))
        info = dict(img_size=cfg["input_size"][-1], in_chans=in_chans, mean=channel_stats(cfg["mean"], in_chans),
                    std=channel_stats(cfg["std"], in_chans))
    return {k: info[k] for k in ("img_size", "in_chans", "mean", "std")}
