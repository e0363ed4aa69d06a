"""Knowledge distillation as the LSNet paper trains its starred (*) models: DeiT's hard distillation.

A model with a distillation head (`lsnet_t_distilled`, ...) put in `set_distilled_training(True)` returns
`(cls_logits, dist_logits)` in training; in eval it returns their average. With teacher logits `t`:

    hard:  loss = (1 - alpha) * base(cls, y) + alpha * CE(dist, argmax t)                 (DeiT, Touvron et al. 2021)
    soft:  loss = (1 - alpha) * base(cls, y) + alpha * tau^2 * KL(softmax(t / tau) || softmax(dist / tau))

`base` is the usual criterion (label smoothing / soft targets under mixup). A model without a distillation head uses
its single output for both terms. alpha = 0.5 is the paper's (and DeiT's) setting.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import UnknownModelError
from .errors import ConfigError


class DistillationLoss(nn.Module):
    def __init__(self, base_criterion: nn.Module, teacher: nn.Module, kind: str = "hard", alpha: float = 0.5,
                 tau: float = 1.0):
        super().__init__()
        if kind not in ("hard", "soft"):
            raise ConfigError(f"distillation type must be 'hard' or 'soft'; got {kind!r}")
        self.base_criterion = base_criterion
        self.teacher = teacher
        self.kind, self.alpha, self.tau = kind, alpha, tau

    def forward(self, inputs: torch.Tensor, outputs, targets: torch.Tensor) -> torch.Tensor:
        """inputs: (B, C, H, W) as the student saw them; outputs: logits or (cls, dist) logits (B, K)."""
        cls_logits, dist_logits = outputs if isinstance(outputs, (tuple, list)) else (outputs, outputs)
        base_loss = self.base_criterion(cls_logits, targets)
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        if teacher_logits.shape != dist_logits.shape:
            raise ConfigError(f"teacher outputs {tuple(teacher_logits.shape)} but the student "
                              f"{tuple(dist_logits.shape)};"
                              " the teacher must be trained on the same classes")
        if self.kind == "hard":
            dist_loss = F.cross_entropy(dist_logits, teacher_logits.argmax(dim=1))
        else:
            tau = self.tau
            dist_loss = F.kl_div(F.log_softmax(dist_logits.float() / tau, dim=1),
                                 F.log_softmax(teacher_logits.float() / tau, dim=1),
                                 reduction="batchmean", log_target=True) * tau * tau
        return base_loss * (1 - self.alpha) + dist_loss * self.alpha


def build_teacher(spec: str, checkpoint: str | None, *, num_classes: int, in_chans: int, device: torch.device,
                  img_size: int | None = None, model_kwargs: dict | None = None) -> nn.Module:
    """A frozen teacher in eval mode.

    spec: a checkpoint written by `lsnet train` (.pth/.safetensors; its config names the model), or a timm model name.
    checkpoint: weights for a model given by name; without it, the name's pretrained weights (timm hub).
    """
    from ..checkpoints import create_model, model_from_checkpoint, read_checkpoint

    if Path(spec).expanduser().is_file():  # a run checkpoint: its config names the model and its settings
        state = read_checkpoint(spec)
        if "model" not in state.config:
            raise ConfigError(f"teacher checkpoint {spec!r} does not say which model it holds; pass --teacher "
                              "<timm name> --teacher-checkpoint <file>")
        use_ema = bool(state.config.get("model_ema")) and "model_ema" in state.entries
        teacher, _ = model_from_checkpoint(state, entry="model_ema" if use_ema else None, new_classifier=False)
    elif checkpoint:  # a model name and any checkpoint file for it (official files included)
        teacher, _ = model_from_checkpoint(checkpoint, model=spec, new_classifier=False, num_classes=num_classes,
                                           in_chans=in_chans, img_size=img_size, **(model_kwargs or {}))
    else:
        try:
            teacher = create_model(spec, pretrained=True, num_classes=num_classes, in_chans=in_chans,
                                   img_size=img_size, **(model_kwargs or {}))
        except UnknownModelError:
            raise
        except Exception as err:  # hub / network errors come in many types
            raise ConfigError(f"could not load pretrained weights for teacher {spec!r} ({err}); pass "
                              "--teacher-checkpoint FILE or a checkpoint written by `lsnet train`") from err
    teacher.requires_grad_(False)
    return teacher.to(device).eval()
