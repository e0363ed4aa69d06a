"""Evaluation: top-1 / top-5, per-class accuracy, confusion matrix and images/s, on one or many processes.

    from lsnet.train import evaluate_checkpoint
    result = evaluate_checkpoint("runs/<run>/best.pth", fuse=True)       # data and model settings come from the run
    print(result.top1, result.per_class_accuracy, result.images_per_sec)
"""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .distributed import DistState, all_reduce_sum, reduce_device


class Throughput:
    """images/s of an evaluation result with `num_images`, `model_seconds` and `wall_seconds` (every task's)."""

    num_images: int
    model_seconds: float
    wall_seconds: float

    @property
    def images_per_sec(self) -> float:
        """Model throughput (forward passes, with the model's own post-processing)."""
        return self.num_images / max(self.model_seconds, 1e-9)

    @property
    def end_to_end_images_per_sec(self) -> float:
        return self.num_images / max(self.wall_seconds, 1e-9)


@dataclass
class EvalResult(Throughput):
    """Metrics of one pass over an evaluation set. Accuracies in percent; confusion[i, j] counts class i predicted j."""

    top1: float
    top5: float
    loss: float
    num_images: int
    model_seconds: float  # time inside the model's forward passes
    wall_seconds: float  # the whole pass, data loading included
    confusion: torch.Tensor
    classes: tuple[str, ...] = ()
    skipped: int = 0
    topk: int = 5
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_class_accuracy(self) -> list[float]:
        totals = self.confusion.sum(dim=1).clamp(min=1)
        return (100.0 * self.confusion.diagonal() / totals).tolist()

    def to_dict(self) -> dict[str, Any]:
        names = self.classes or tuple(str(i) for i in range(len(self.confusion)))
        return {
            "top1": self.top1, f"top{self.topk}": self.top5, "loss": self.loss, "num_images": self.num_images,
            "images_per_sec": self.images_per_sec, "end_to_end_images_per_sec": self.end_to_end_images_per_sec,
            "model_seconds": self.model_seconds, "wall_seconds": self.wall_seconds, "skipped_images": self.skipped,
            "per_class_accuracy": dict(zip(names, self.per_class_accuracy)), "classes": list(names),
            "confusion_matrix": self.confusion.tolist(), **self.extra,
        }

    def summary(self) -> str:
        return (f"top-1 {self.top1:.2f}%  top-{self.topk} {self.top5:.2f}%  loss {self.loss:.4f}  "
                f"{self.num_images} images  {self.images_per_sec:.0f} img/s")


def autocast_context(device: torch.device, amp_dtype: torch.dtype | None):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, num_classes: int, device: torch.device, classes: tuple[str, ...] = (),
             amp_dtype: torch.dtype | None = None, channels_last: bool = False, dist_state: DistState | None = None,
             progress: bool = False, desc: str = "eval") -> EvalResult:
    """One pass over `loader` (batches of (images, targets, n_skipped)); sums counts over ranks when distributed."""
    dist_state = dist_state or DistState(device=device)
    was_training = model.training
    model.eval()
    topk = min(5, num_classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    sums = torch.zeros(4, dtype=torch.float64)  # loss sum, top-k correct, images, skipped
    model_seconds = 0.0
    start = time.perf_counter()
    iterator = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
    for images, targets, skipped in iterator:
        sums[3] += skipped
        if images is None:
            continue
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        with autocast_context(device, amp_dtype):
            logits = model(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        model_seconds += time.perf_counter() - t0
        logits = logits.float()
        sums[0] += F.cross_entropy(logits, targets, reduction="sum").item()
        top = logits.topk(topk, dim=1).indices
        sums[1] += (top == targets[:, None]).any(dim=1).sum().item()
        sums[2] += len(targets)
        confusion += torch.bincount((targets * num_classes + top[:, 0]).cpu(),
                                    minlength=num_classes * num_classes).view(num_classes, num_classes)
    wall_seconds = time.perf_counter() - start
    if dist_state.enabled:
        packed = torch.cat([sums, confusion.flatten().double(), torch.tensor([model_seconds, wall_seconds])])
        packed = all_reduce_sum(packed.to(reduce_device(dist_state)), dist_state).cpu()
        sums, confusion = packed[:4], packed[4:4 + num_classes ** 2].round().long().view(num_classes, num_classes)
        # the ranks ran side by side: their mean time is the pass's time
        model_seconds, wall_seconds = (packed[-2:] / dist_state.world_size).tolist()
    model.train(was_training)
    n = int(sums[2])
    return EvalResult(
        top1=100.0 * confusion.diagonal().sum().item() / max(n, 1), top5=100.0 * sums[1].item() / max(n, 1),
        loss=sums[0].item() / max(n, 1), num_images=n, model_seconds=model_seconds, wall_seconds=wall_seconds,
        confusion=confusion, classes=tuple(classes), skipped=int(sums[3]), topk=topk,
    )


class _RunnerModule(nn.Module):
    """A deploy runner (`lsnet.deploy.Runner`) as a module, so `evaluate` scores it like any model."""

    def __init__(self, runner: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.runner = runner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.runner(x.cpu())


def _deployed(net: nn.Module, runtime: str, precision: str, input_size: tuple[int, int, int], config: dict[str, Any],
              calibration: str | None, num_calibration: int, channels_last: bool) -> nn.Module:
    """`net` fused and run through `build_runner` (ONNX files in a temporary folder, kept while the module lives)."""
    import tempfile

    from ..deploy import build_runner, fuse
    from ..deploy.quantize import calibration_images

    images = None
    if precision == "int8":
        images, _ = calibration_images(calibration, "train", num_calibration, input_size, run_config=config)
    workdir = tempfile.TemporaryDirectory(prefix="lsnet-eval-")
    runner = build_runner(fuse(net.cpu()), runtime, precision, input_size, threads=torch.get_num_threads(),
                          workdir=workdir.name, channels_last=channels_last, calibration=images)
    module = _RunnerModule(runner)
    module._workdir = workdir  # removed with the module
    return module


def evaluate_checkpoint(checkpoint: str | Path, *, task: str | None = None, model: str | None = None,
                        dataset: str | None = None,
                        data_dir: str | None = None, split: str | None = None, img_size: int | None = None,
                        in_chans: int | None = None, num_classes: int | None = None, batch_size: int = 256,
                        workers: int = 2, subset: int | None = None, fuse: bool = False, device: str = "auto",
                        amp: bool | None = None, use_ema: bool | None = None, download: bool = False,
                        strict: bool = False, output: str | Path | None = None, progress: bool = False,
                        inference: dict[str, Any] | None = None, runtime: str = "eager", precision: str = "fp32",
                        calibration: str | None = None, calibration_images: int = 256):
    """Evaluate a checkpoint; settings not given come from the config stored in it (checkpoints of `lsnet train`).

    task: 'classification' (returns an EvalResult) or another task of `lsnet.train.tasks` (its own result); default:
        the task the checkpoint's config names, classification for other files. Other tasks take data_dir, split,
        batch_size, workers, subset, device, amp, use_ema, strict, output and progress.

    checkpoint: last.pth / best.pth / best.safetensors of a run, or any checkpoint `lsnet.checkpoints` reads (official
        files included; then `model` is needed, and `num_classes` when the classifier is not the data set's).
    split: 'train', 'val' or 'test' of the run (default: test, or val when the data set has none); a held-out val
    split is the run's own images (same --val-size and --seed), and 'train' then excludes them.
    fuse: evaluate the deployed model (timm.utils.reparameterize_model folds Conv-BN, BN-Linear and RepVGG branches).
    use_ema: evaluate the EMA weights (default: when the run used EMA).
    output: folder for eval.json and confusion_matrix.png.
    runtime, precision: classification only: score the model as deployed by `lsnet.deploy.build_runner` (fused;
        e.g. 'onnxruntime' + 'int8', calibrated on `calibration_images` images of the `calibration` data's training
        split without the run's held-out images, `lsnet.deploy.quantize.calibration_images`), on the CPU.
    inference: semantic checkpoints: TrainConfig inference settings replacing the run's (test_mode, short_side,
        test_flip, test_scales, ...).
    """
    from timm.utils import reparameterize_model

    from ..checkpoints import model_from_checkpoint, read_checkpoint
    from ..data import HeldOut, channel_stats, create_dataset, create_transform, dataset_info, split_arguments
    from .builders import ShardSampler, create_loader
    from .distributed import resolve_device
    from .errors import ConfigError

    state = read_checkpoint(checkpoint)
    config = state.config
    stored = config.get("task", "classification")
    if task is not None and config and task != stored:
        raise ConfigError(f"{str(checkpoint)!r} holds a {stored} run, not {task}; drop --task or pass --task {stored}")
    task = task or stored
    if inference and task != "semantic":
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in inference)
        raise ConfigError(f"{flags}: inference settings of semantic-segmentation checkpoints; {str(checkpoint)!r} "
                          f"holds a {task} run, so drop them")
    deployed = (runtime, precision) != ("eager", "fp32")
    if deployed and task != "classification":
        raise ConfigError(f"--runtime/--precision score classifiers; {str(checkpoint)!r} holds a {task} run, so "
                          "drop them to score it in eager fp32")
    if precision == "int8" and not calibration:
        raise ConfigError("--precision int8 needs --calibration DATA (e.g. fashion-mnist): int8 ranges are "
                          "calibrated on training images")
    if task != "classification":
        from .tasks import get_task

        given = [name for name, value in (("--model", model), ("--dataset", dataset), ("--img-size", img_size),
                                          ("--in-chans", in_chans), ("--num-classes", num_classes), ("--fuse", fuse),
                                          ("--download", download)) if value]
        if given:
            raise ConfigError(f"{', '.join(given)}: classification settings; a {task} checkpoint rebuilds its model "
                              "from its own config, so drop them")
        return get_task(task).evaluate_checkpoint(
            state, data_dir=data_dir, split=split, batch_size=batch_size, workers=workers, subset=subset,
            device=device, amp=amp, use_ema=use_ema, strict=strict, output=output, progress=progress,
            **({"inference": inference} if inference else {}))
    model_name = model or config.get("model")
    if not model_name:
        raise ConfigError(f"{str(checkpoint)!r} does not say which model it holds; pass --model NAME")
    dataset = dataset or config.get("dataset", "fashion-mnist")
    data_dir = data_dir if data_dir is not None else config.get("data_dir")
    info = dataset_info(dataset, data_dir, config.get("train_split", "train"))
    in_chans = in_chans or config.get("in_chans") or info.in_chans
    num_classes = num_classes or config.get("num_classes") or info.num_classes
    img_size = img_size or config.get("img_size") or 224
    if use_ema is None:
        use_ema = bool(config.get("model_ema")) and "model_ema" in state.entries

    torch_device = resolve_device(device)
    # a classifier that does not fit is an error here (scoring a fresh head would be meaningless); a stem of other
    # input channels is adapted (timm adapt_input_conv), bias tables are resized to img_size
    net, _ = model_from_checkpoint(state, model=model_name, entry="model_ema" if use_ema else None,
                                   new_classifier=False, num_classes=num_classes, in_chans=in_chans,
                                   img_size=img_size)
    net = net.to(torch_device).eval()
    if fuse:
        net = reparameterize_model(net)
    if deployed:
        net = _deployed(net, runtime, precision, (in_chans, img_size, img_size), config, calibration,
                        calibration_images, bool(config.get("channels_last")))
    mean = channel_stats(config.get("mean") or info.mean, in_chans)
    std = channel_stats(config.get("std") or info.std, in_chans)
    transform = create_transform(img_size, False, mean=mean, std=std,
                                 interpolation=config.get("interpolation", "bicubic"),
                                 crop_pct=config.get("crop_pct", 0.875))
    split = split or info.eval_split
    run = config if config.get("dataset") == info.name else {}  # the run's splits, unless another data set is asked
    splits = split_arguments(split, info, val_split=run.get("val_split"), test_split=run.get("test_split"),
                             train_split=run.get("train_split", "train"), val_size=run.get("val_size"),
                             seed=run.get("seed", TrainConfig.seed))
    data = create_dataset(dataset, transform=transform, in_chans=in_chans, data_dir=data_dir, download=download,
                          subset=subset, strict=strict, **splits)
    loader = create_loader(data, batch_size=batch_size, sampler=ShardSampler(len(data)), workers=workers,
                           pin_memory=torch_device.type == "cuda")
    amp = torch_device.type == "cuda" if amp is None else amp
    amp_dtype = getattr(torch, config.get("amp_dtype", "bfloat16")) if amp else None
    result = evaluate(net, loader, num_classes=num_classes, device=torch_device, classes=info.classes,
                      amp_dtype=amp_dtype, progress=progress)
    result.extra.update(checkpoint=str(checkpoint), model=model_name, fused=fuse or deployed, ema=use_ema,
                        runtime=runtime, precision=precision, dataset=dataset,
                        split=split, split_source=data.describe() if isinstance(data, HeldOut) else splits["split"],
                        img_size=img_size)
    if output is not None:
        from .report import plot_confusion

        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "eval.json").write_text(json.dumps(result.to_dict(), indent=2))
        plot_confusion(result.confusion, result.classes, output / "confusion_matrix.png",
                       title=f"{model_name}{' (fused)' if fuse else ''} on {dataset} {split}: top-1 "
                             f"{result.top1:.2f}%")
    return result
