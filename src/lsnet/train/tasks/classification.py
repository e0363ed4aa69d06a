"""Image classification: a timm model on Fashion-MNIST or an ImageFolder tree, scored by top-1 / top-5.

Data through `lsnet.data` (timm transforms, fault-tolerant folders, validation images held out with the seed),
losses through timm (label smoothing, Mixup / CutMix soft targets) and DeiT distillation (`lsnet.train.distill`).
best.pth is chosen on val top-1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...checkpoints import create_model, load_checkpoint
from ...data import (
    HeldOut,
    channel_stats,
    collate_skip,
    create_dataset,
    create_transform,
    dataset_info,
    split_arguments,
)
from ..errors import ConfigError
from ..evaluate import EvalResult, evaluate
from .base import Batch, Task


class ClassificationTask(Task):
    name = "classification"
    metric = "top1"
    metric_label = "top-1"
    collate = staticmethod(collate_skip)

    def resolve(self) -> None:
        cfg = self.cfg
        self.info = info = dataset_info(cfg.dataset, cfg.data_dir, cfg.train_split)
        cfg.dataset = info.name
        cfg.in_chans = cfg.in_chans or info.in_chans
        cfg.num_classes = cfg.num_classes or info.num_classes
        if cfg.num_classes < info.num_classes:
            raise ConfigError(f"--num-classes {cfg.num_classes} is fewer than the {info.num_classes} classes of "
                              f"{info.name}; drop --num-classes (default: the data set's) or pass at least "
                              f"{info.num_classes}")
        cfg.mean = list(channel_stats(cfg.mean or info.mean, cfg.in_chans))
        cfg.std = list(channel_stats(cfg.std or info.std, cfg.in_chans))
        cfg.val_split = cfg.val_split or info.val_split
        cfg.test_split = cfg.test_split or info.test_split or "none"
        if cfg.val_size == 0 and not cfg.val_split and cfg.test_split == "none":
            raise ConfigError(f"{info.name} has no validation or test split and --val-size is 0: nothing would "
                              "evaluate the model; hold out training images with --val-size N (or drop the flag)")
        self.classes = info.classes

    def input_text(self) -> str:
        cfg = self.cfg
        return f"{cfg.in_chans}x{cfg.img_size}x{cfg.img_size}"

    def build_model(self, *, resume: bool) -> nn.Module:
        cfg = self.cfg
        model = create_model(cfg.model, num_classes=cfg.num_classes, in_chans=cfg.in_chans, img_size=cfg.img_size,
                             drop_path_rate=cfg.drop_path or None, drop_rate=cfg.drop or None,
                             pretrained=cfg.pretrained, **(cfg.model_kwargs or {}))
        if cfg.initial_checkpoint and not resume:
            # any checkpoint file: classifier of another size re-initialised, stem adapted, bias tables resized
            load_checkpoint(model, cfg.initial_checkpoint)
        if cfg.distillation_type != "none" and hasattr(model, "set_distilled_training"):
            model.set_distilled_training(True)  # training forward returns (cls, dist) logits
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            if cfg.batch_size < 2:
                raise ConfigError(f"--batch-size {cfg.batch_size}: {cfg.model} has BatchNorm, which needs at least 2 "
                                  "images per training batch; use --batch-size 2 or more")
            self.min_batch = 2
        return model

    def build_datasets(self):
        cfg, info = self.cfg, self.info
        train_tf = create_transform(
            cfg.img_size, True, mean=cfg.mean, std=cfg.std, scale=cfg.scale, ratio=cfg.ratio, hflip=cfg.hflip,
            vflip=cfg.vflip, color_jitter=cfg.color_jitter, auto_augment=cfg.aa, re_prob=cfg.reprob,
            re_mode=cfg.remode, re_count=cfg.recount, interpolation=cfg.train_interpolation)
        eval_tf = create_transform(cfg.img_size, False, mean=cfg.mean, std=cfg.std, interpolation=cfg.interpolation,
                                   crop_pct=cfg.crop_pct)
        common = dict(data_dir=cfg.data_dir, in_chans=cfg.in_chans, download=cfg.download, strict=cfg.strict)

        def splits(split: str) -> dict:
            return split_arguments(split, info, val_split=cfg.val_split, test_split=cfg.test_split,
                                   train_split=cfg.train_split, val_size=cfg.val_size, seed=cfg.seed)

        train_set = create_dataset(cfg.dataset, transform=train_tf, subset=cfg.train_subset, **splits("train"),
                                   **common)
        held_out = train_set.val_size if isinstance(train_set, HeldOut) else 0
        val_set = test_set = None
        if cfg.val_split or held_out:
            val_set = create_dataset(cfg.dataset, transform=eval_tf, subset=cfg.val_subset, **splits("val"), **common)
        cfg.val_size = held_out  # resolved: what was held out (config.yaml, resume and `lsnet eval` use it)
        if cfg.test_split != "none":
            test_set = create_dataset(cfg.dataset, transform=eval_tf, subset=cfg.test_subset, **splits("test"),
                                      **common)
        val_source = val_set.describe() if isinstance(val_set, HeldOut) else (
            f"{cfg.val_split}/ folder" if cfg.val_split else "none")
        return train_set, val_set, test_set, val_source

    def build_criterion(self) -> None:
        from timm.data import Mixup
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        cfg = self.cfg
        self.mixup_fn = None
        if cfg.mixup_active:
            self.mixup_fn = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, cutmix_minmax=cfg.cutmix_minmax,
                                  prob=cfg.mixup_prob, switch_prob=cfg.mixup_switch_prob, mode=cfg.mixup_mode,
                                  label_smoothing=cfg.smoothing, num_classes=cfg.num_classes)
            criterion: nn.Module = SoftTargetCrossEntropy()
        elif cfg.smoothing > 0:
            criterion = LabelSmoothingCrossEntropy(smoothing=cfg.smoothing)
        else:
            criterion = nn.CrossEntropyLoss()
        if cfg.distillation_type == "none":
            self.criterion = criterion
            return
        from .. import distill

        teacher = distill.build_teacher(cfg.teacher, cfg.teacher_checkpoint, num_classes=cfg.num_classes,
                                        in_chans=cfg.in_chans, device=self.device, img_size=cfg.img_size)
        if cfg.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
        self.criterion = distill.DistillationLoss(criterion, teacher, cfg.distillation_type, cfg.distillation_alpha,
                                                  cfg.distillation_tau)

    # ---- one training step
    def unpack(self, batch) -> Batch:
        images, targets, skipped = batch
        return Batch(images, targets, 0 if images is None else len(images), skipped)

    def prepare(self, batch: Batch):
        images = batch.inputs.to(self.device, non_blocking=True)
        targets = batch.targets.to(self.device, non_blocking=True)
        if self.mixup_fn is not None:
            images, targets = self.mixup_fn(images, targets)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, targets

    def loss(self, inputs, outputs, targets) -> torch.Tensor:
        if self.cfg.distillation_type != "none":
            return self.criterion(inputs, outputs, targets)
        return self.criterion(outputs, targets)

    # ---- evaluation and what the run shows
    def evaluate(self, model: nn.Module, loader, *, desc: str, amp_dtype: torch.dtype | None,
                 progress: bool) -> EvalResult:
        return evaluate(model, loader, num_classes=self.cfg.num_classes, device=self.device, classes=self.classes,
                        amp_dtype=amp_dtype, channels_last=self.cfg.channels_last, dist_state=self.dist,
                        progress=progress, desc=desc)

    def val_metrics(self, result: EvalResult, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}val_loss": result.loss, f"{prefix}val_top1": result.top1, f"{prefix}val_top5": result.top5}

    def format_metric(self, value: float) -> str:
        return f"{value:.2f}%"

    def epoch_text(self, row: dict[str, Any]) -> str:
        text = ""
        if "val_top1" in row:
            text += f"  | val loss {row['val_loss']:.4f}  val top-1 {row['val_top1']:.2f}%"
        if "ema_val_top1" in row:
            text += f"  EMA val top-1 {row['ema_val_top1']:.2f}%"
        return text

    def result_text(self, result: EvalResult, split: str) -> str:
        label = f"{split} top-1" if split != "val" else "val top-1 (no test split)"
        return f"{label} {result.top1:.2f}% (top-{result.topk} {result.top5:.2f}%)"

    def write_outputs(self, run_dir: Path, result: EvalResult, *, split: str, history: list[dict[str, Any]],
                      summary: dict[str, Any]) -> Path:
        from ..report import plot_confusion, plot_curves, write_report

        cfg = self.cfg
        plot_curves(history, run_dir / "curves.png")
        plot_confusion(result.confusion, result.classes, run_dir / "confusion_matrix.png",
                       title=f"{cfg.model} on {cfg.dataset} {split}: top-1 {result.top1:.2f}%")
        return write_report(run_dir, config=cfg.to_dict(), result=result, history=history, summary=summary)

    def export_metadata(self) -> dict[str, Any]:
        keys = ("task", "model", "num_classes", "in_chans", "img_size", "dataset", "data_dir", "train_split",
                "val_split", "val_size", "test_split", "seed", "mean", "std", "interpolation", "crop_pct",
                "model_kwargs")
        return {k: getattr(self.cfg, k) for k in keys}

