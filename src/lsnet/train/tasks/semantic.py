"""Semantic segmentation: a Semantic FPN or UperNet segmenter (`lsnet.segmentation`) with a timm backbone on label
PNGs (ADE20K's folder layout, or image / label-PNG pairs such as `lsnet data fashion-scenes`), scored in mIoU.

    lsnet train --task semantic --config sem_fpn_lsnet_t_fashion_scenes --data-dir data/fashion-scenes
    lsnet train --task semantic --config sem_fpn_lsnet_t_ade20k --data-dir ~/ADEChallengeData2016 \\
        --backbone-checkpoint lsnet_t.pth --nproc 8
    lsnet eval --checkpoint runs/<run>/best.pth                     # the task comes from the checkpoint
    lsnet predict --checkpoint runs/<run>/best.pth images/*.jpg --out preds/   # colour overlays + label PNGs

Settings: --model is the backbone, --segmenter the head (semantic_fpn, upernet), --backbone-checkpoint
classification weights for the backbone, --initial-checkpoint a whole segmenter (ours or an official mmseg file),
--crop-size / --seg-scale / --ratio-range / --cat-max-ratio / --hflip / --photometric the training pipeline
(`lsnet.data.segmentation.segmentation_transforms`), --test-mode / --short-side / --size-divisor / --test-stride /
--test-flip / --test-scales the inference (`lsnet.segmentation.inference.segment`), --ignore-index the label value
neither trained nor scored, --aux-weight the auxiliary head's share of the loss. Splits: --train-split /
--val-split / --test-split (default: train / val / test, or ADE20K's training / validation); best.pth is the best
val mIoU; a test split is scored once at the end. The scores come from one confusion matrix per pass, summed over
the ranks (`lsnet.segmentation.metrics`). Classification-only settings (img_size, mixup, smoothing, ...) are ignored.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import DistState, all_reduce_sum, reduce_device
from ..errors import ConfigError
from ..evaluate import Throughput, autocast_context
from .base import Batch, Task, load_run_model, resolve_dense_splits

SCORE_NAMES = ("mIoU", "mAcc", "aAcc")


@dataclass
class SemanticResult(Throughput):
    """mIoU, mAcc, aAcc and per-class IoU / Acc (percent, `lsnet.segmentation.metrics.segmentation_scores`) of one
    pass over an evaluation set, from its confusion matrix (rows: ground truth, columns: prediction)."""

    scores: dict[str, Any]
    confusion: torch.Tensor  # (K, K) int64
    num_images: int
    model_seconds: float  # time inside inference (`segment`)
    wall_seconds: float  # the whole pass, data loading included
    classes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mIoU(self) -> float:  # noqa: N802 (the metric's name)
        return self.scores["mIoU"]

    def to_dict(self) -> dict[str, Any]:
        return {**{name: self.scores[name] for name in SCORE_NAMES}, "per_class": self.scores["per_class"],
                "num_images": self.num_images, "images_per_sec": self.images_per_sec,
                "end_to_end_images_per_sec": self.end_to_end_images_per_sec, "model_seconds": self.model_seconds,
                "wall_seconds": self.wall_seconds, "classes": list(self.classes),
                "confusion_matrix": self.confusion.tolist(), **self.extra}

    def summary(self) -> str:
        return (f"mIoU {self.mIoU:.2f}  mAcc {self.scores['mAcc']:.2f}  aAcc {self.scores['aAcc']:.2f}  "
                f"{self.num_images} images  {self.images_per_sec:.1f} img/s")


def inference_settings(cfg) -> dict[str, Any]:
    """`segment`'s keyword arguments from a config (a TrainConfig or the dict a checkpoint stores)."""
    get = cfg.get if isinstance(cfg, dict) else lambda name: getattr(cfg, name)
    return dict(mode=get("test_mode"), short_side=get("short_side"), size_divisor=get("size_divisor"),
                crop_size=tuple(get("crop_size")), stride=tuple(get("test_stride")), flip=bool(get("test_flip")),
                scales=tuple(get("test_scales")))


def label_source(data) -> str:
    """Where a SegmentationFolder's labels come from, e.g. 'labels/val' or 'annotations/validation'."""
    return data.label_dir.relative_to(data.root).as_posix()


def predict_labels(model: nn.Module, images: list[torch.Tensor], settings: dict[str, Any]) -> list[torch.Tensor]:
    """Class maps (H, W) int64 of (3, H, W) float [0, 1] images, each at its own size; images of one size are run
    as one batch."""
    from ...segmentation.inference import segment

    labels: list[torch.Tensor | None] = [None] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(i)
    for indices in groups.values():
        scores = segment(model, torch.stack([images[i] for i in indices]), **settings)
        for i, label in zip(indices, scores.argmax(dim=1)):
            labels[i] = label
    return labels


class SemanticTask(Task):
    name = "semantic"
    metric = "mIoU"
    metric_label = "mIoU"
    no_weight_decay = ("*attention_biases",)  # LSNet's bias tables, as in the detection task

    @staticmethod
    def collate(batch: list):
        from ...data.segmentation import segmentation_collate

        return segmentation_collate(batch)

    # ---- building
    def _folder(self, split: str, *, subset: int | None):
        """A split as stored (no transforms: inference resizes, scores are at the label's size)."""
        from ...data.segmentation import SegmentationFolder

        cfg = self.cfg
        return SegmentationFolder(cfg.data_dir, split, strict=cfg.strict, subset=subset, ignore_index=cfg.ignore_index)

    def _train_transforms(self):
        """mmseg's training pipeline; crops are padded with the model's mean colour (mmseg pads normalised images
        with 0) and labels with the ignore index."""
        from ...data.segmentation import segmentation_transforms

        cfg = self.cfg
        return segmentation_transforms(
            True, crop_size=tuple(cfg.crop_size), scale=tuple(cfg.seg_scale), ratio_range=tuple(cfg.ratio_range),
            cat_max_ratio=cfg.cat_max_ratio, hflip=cfg.hflip, photometric=cfg.photometric,
            ignore_index=cfg.ignore_index, fill=tuple(self.segmenter_config["image_mean"]))

    def resolve(self) -> None:
        from ...data.segmentation import segmentation_splits

        cfg = self.cfg
        if not cfg.data_dir:
            raise ConfigError("--task semantic needs --data-dir: an ADE20K folder (images/ + annotations/) or image / "
                              "label-PNG pairs (<split>/ + labels/<split>/ + labels/classes.txt); build the demo set "
                              "with `lsnet data fashion-scenes --out DIR`")
        root = Path(cfg.data_dir).expanduser()
        resolve_dense_splits(cfg, segmentation_splits(root), train_alias="training", val_alias="validation",
                             what="segmenter", listing="splits", val_hint="a labelled split")
        self.train_set = self._folder(cfg.train_split, subset=cfg.train_subset)  # transforms: build_datasets
        self.classes = tuple(self.train_set.classes)
        cfg.num_classes = cfg.num_classes or len(self.classes)
        if cfg.num_classes != len(self.classes):
            raise ConfigError(f"--num-classes {cfg.num_classes} but {str(root)!r} has {len(self.classes)} classes; "
                              "drop --num-classes (default: the data set's)")

    def run_name(self) -> str:
        return f"{self.cfg.segmenter}-{self.cfg.model}-{self.cfg.dataset}"

    def model_label(self) -> str:
        return f"{self.cfg.segmenter} {self.cfg.model}"

    def input_text(self) -> str:
        cfg = self.cfg
        side = f"short side {cfg.short_side}" if cfg.short_side else "native size"
        return f"{cfg.crop_size[0]}x{cfg.crop_size[1]} crops, tested at {side} ({cfg.test_mode})"

    def build_model(self, *, resume: bool) -> nn.Module:
        from ...segmentation import build_segmenter

        cfg = self.cfg
        backbone_kwargs = dict(cfg.model_kwargs or {})
        if cfg.drop_path:
            backbone_kwargs["drop_path_rate"] = cfg.drop_path
        model = build_segmenter(
            cfg.segmenter, cfg.model, num_classes=cfg.num_classes, freeze_bn=cfg.freeze_bn,
            pretrained=cfg.pretrained and not resume, backbone_kwargs=backbone_kwargs,
            backbone_checkpoint=None if resume else cfg.backbone_checkpoint,
            checkpoint=None if resume else cfg.initial_checkpoint, **(cfg.segmenter_kwargs or {}))
        self.segmenter_config = model.segmenter_config
        if cfg.segmenter == "upernet":  # its pyramid pooling normalises 1x1 maps: BatchNorm needs 2 images there
            if cfg.batch_size < 2:
                raise ConfigError(f"--batch-size {cfg.batch_size}: UperNet's pooling branch has BatchNorm on 1x1 "
                                  "maps, which needs at least 2 images per training batch; use --batch-size 2 or more")
            self.min_batch = 2
        return model

    def build_datasets(self):
        cfg = self.cfg

        def split(name: str, subset: int | None):
            data = self._folder(name, subset=subset)
            if tuple(data.classes) != self.classes:
                raise ConfigError(f"split {name!r} has classes {list(data.classes)} but the training split has "
                                  f"{list(self.classes)}; every split needs the same classes")
            return data

        val_set = split(cfg.val_split, cfg.val_subset) if cfg.val_split else None
        test_set = split(cfg.test_split, cfg.test_subset) if cfg.test_split != "none" else None
        self.train_set.transforms = self._train_transforms()  # after build_model: the pad colour is its mean
        return self.train_set, val_set, test_set, label_source(val_set) if val_set is not None else "none"

    # ---- one training step
    def unpack(self, batch) -> Batch:
        images, masks, _ = batch
        return Batch(images, masks, len(images))

    def prepare(self, batch: Batch):
        """The training crops (all --crop-size) stacked: (B, 3, H, W) float and (B, H, W) int64 labels."""
        images = torch.stack([image.as_subclass(torch.Tensor) for image in batch.inputs])
        masks = torch.stack([mask.as_subclass(torch.Tensor) for mask in batch.targets]).long()
        return images.to(self.device, non_blocking=True), masks.to(self.device, non_blocking=True)

    def loss(self, inputs, outputs, targets) -> torch.Tensor | dict[str, torch.Tensor]:
        """Pixel cross-entropy of the logits (ignore index left out); plus --aux-weight x the auxiliary head's."""
        ignore = self.cfg.ignore_index
        decode = F.cross_entropy(outputs["out"].float(), targets, ignore_index=ignore)
        if "aux" not in outputs:
            return decode
        return {"decode": decode,
                "aux": self.cfg.aux_weight * F.cross_entropy(outputs["aux"].float(), targets, ignore_index=ignore)}

    # ---- evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, *, desc: str, amp_dtype: torch.dtype | None,
                 progress: bool) -> SemanticResult:
        """Predictions at each label's size -> this rank's confusion matrix -> summed over the ranks -> scores."""
        from ...segmentation.metrics import confusion_matrix, segmentation_scores

        cfg = self.cfg
        num_classes = cfg.num_classes
        settings = inference_settings(cfg)
        was_training = model.training
        model.eval()
        matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        model_seconds, start = 0.0, time.perf_counter()
        iterator = loader
        if progress:
            from tqdm import tqdm

            iterator = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
        for images, masks, _ in iterator:
            images = [image.as_subclass(torch.Tensor).to(self.device, non_blocking=True) for image in images]
            t0 = time.perf_counter()
            with autocast_context(self.device, amp_dtype):
                labels = predict_labels(model, images, settings)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            model_seconds += time.perf_counter() - t0
            for label, mask in zip(labels, masks):
                matrix += confusion_matrix(label.cpu(), mask.as_subclass(torch.Tensor), num_classes,
                                           ignore_index=cfg.ignore_index)
        model.train(was_training)
        device = reduce_device(self.dist)
        matrix = all_reduce_sum(matrix.to(device), self.dist).cpu()
        counts = all_reduce_sum(torch.tensor([len(loader.sampler), model_seconds], dtype=torch.float64,
                                             device=device), self.dist).cpu()
        classes = tuple(loader.dataset.classes)
        return SemanticResult(scores=segmentation_scores(matrix, classes=classes), confusion=matrix,
                              num_images=int(counts[0]), model_seconds=counts[1].item() / self.dist.world_size,
                              wall_seconds=time.perf_counter() - start, classes=classes)

    # ---- what the run shows
    def val_metrics(self, result: SemanticResult, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}val_{name}": result.scores[name] for name in SCORE_NAMES}

    def epoch_text(self, row: dict[str, Any]) -> str:
        text = ""
        for prefix, label in (("", "val"), ("ema_", "EMA val")):
            if f"{prefix}val_mIoU" in row:
                text += (f"  | {label} mIoU {row[f'{prefix}val_mIoU']:.2f} (mAcc {row[f'{prefix}val_mAcc']:.2f}, "
                         f"aAcc {row[f'{prefix}val_aAcc']:.2f})")
        return text

    def result_text(self, result: SemanticResult, split: str) -> str:
        label = split if split != "val" else "val (no test split)"
        return f"{label} mIoU {result.mIoU:.2f} (mAcc {result.scores['mAcc']:.2f}, aAcc {result.scores['aAcc']:.2f})"

    def write_outputs(self, run_dir: Path, result: SemanticResult, *, split: str, history: list[dict[str, Any]],
                      summary: dict[str, Any]) -> Path:
        from ..report import plot_loss_and_metric_curves, write_semantic_report

        plot_loss_and_metric_curves(history, run_dir / "curves.png", metrics=(
            ("val_mIoU", "val mIoU"), ("val_mAcc", "val mAcc"), ("ema_val_mIoU", "EMA val mIoU")),
            metric_axis=("%", "validation mIoU"), loss_title="training loss (pixel cross-entropy)")
        return write_semantic_report(run_dir, config=self.cfg.to_dict(), result=result, history=history,
                                     summary=summary)

    def export_metadata(self) -> dict[str, Any]:
        keys = ("task", "segmenter", "model", "num_classes", "dataset", "data_dir", "train_split", "val_split",
                "test_split", "seed", "amp_dtype", "ignore_index", "test_mode", "short_side", "size_divisor",
                "crop_size", "test_stride", "test_flip", "test_scales")
        return {**{k: getattr(self.cfg, k) for k in keys}, "classes": list(self.classes),
                "segmenter_config": self.segmenter_config}

    # ---- checkpoints
    @classmethod
    def evaluate_checkpoint(cls, checkpoint, *, data_dir: str | None = None, split: str | None = None,
                            batch_size: int = 2, workers: int = 2, subset: int | None = None, device: str = "auto",
                            amp: bool | None = None, use_ema: bool | None = None, strict: bool = False,
                            output: str | Path | None = None, progress: bool = False,
                            inference: dict[str, Any] | None = None) -> SemanticResult:
        """mIoU of a semantic run's checkpoint on one of its splits ('train', 'val', 'test' or a split name; default:
        test when the run had one, else val), on its --data-dir unless `data_dir` is given, with the run's inference
        settings updated by `inference` (TrainConfig names: test_mode, short_side, test_flip, test_scales, ...)."""
        from ..builders import ShardSampler, create_loader
        from ..config import TrainConfig
        from ..distributed import resolve_device

        model, meta = load_segmenter(checkpoint, use_ema=use_ema)
        names = {"train": meta["train_split"], "val": meta["val_split"], "test": meta["test_split"]}
        split = split or ("test" if meta["test_split"] not in (None, "none") else "val")
        split_name = names.get(split, split)
        if split_name in (None, "none"):
            raise ConfigError(f"the run had no {split} split; pass --split val, test or a split name of its data")
        torch_device = resolve_device(device)
        settings = {k: meta[k] for k in ("segmenter", "model", "num_classes", "ignore_index", "test_mode",
                                         "short_side", "size_divisor", "crop_size", "test_stride", "test_flip",
                                         "test_scales")}
        cfg = TrainConfig(task="semantic", data_dir=data_dir or meta["data_dir"], strict=strict,
                          **{**settings, **(inference or {})})
        task = cls(cfg, DistState(device=torch_device))
        task.classes = tuple(meta["classes"])
        data = task._folder(split_name, subset=subset)
        if tuple(data.classes) != task.classes:
            raise ConfigError(f"split {split_name!r} of {cfg.data_dir!r} has classes {list(data.classes)} but the run "
                              f"trained on {list(task.classes)}; pass the run's --data-dir")
        loader = create_loader(data, batch_size=batch_size, sampler=ShardSampler(len(data)), workers=workers,
                               pin_memory=torch_device.type == "cuda", collate_fn=cls.collate)
        amp = torch_device.type == "cuda" if amp is None else amp
        amp_dtype = getattr(torch, meta.get("amp_dtype") or "bfloat16") if amp else None
        result = task.evaluate(model.to(torch_device), loader, desc=split, amp_dtype=amp_dtype, progress=progress)
        result.extra.update(checkpoint=str(getattr(checkpoint, "path", checkpoint)), model=task.model_label(),
                            dataset=Path(cfg.data_dir).name, split=split, split_source=label_source(data),
                            ema=bool(meta.get("ema_loaded")), inference=inference_settings(cfg))
        if output is not None:
            output = Path(output)
            output.mkdir(parents=True, exist_ok=True)
            (output / "eval.json").write_text(json.dumps(result.to_dict(), indent=2))
        return result


def load_segmenter(checkpoint, *, use_ema: bool | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The segmenter of a semantic run's checkpoint in eval mode, and the run's metadata (segmenter_config, classes,
    splits, inference settings, ...; `lsnet.train.tasks.base.load_run_model`). use_ema: default: when the checkpoint
    has them."""
    from ...segmentation import build_segmenter

    return load_run_model(checkpoint, build_segmenter, task="semantic", config_key="segmenter_config",
                          use_ema=use_ema)


def predict_images(checkpoint, images, out: str | Path, *, alpha: float = 0.5, device: str = "auto",
                   use_ema: bool | None = None) -> dict[str, Any]:
    """Run a semantic run's segmenter on image files with the run's inference settings; write per image
    `out/<stem>.png` (the image with the predicted classes blended in, `lsnet.segmentation.visualize`) and
    `out/<stem>_labels.png` (8-bit class indices 0..K-1, as the run's classes.txt numbers them), and
    `out/images.json` (file_name, width, height, the two PNGs' names and the pixel count of each predicted class).
    Returns {"images": [...], "classes": [...]}.
    """
    from PIL import Image, UnidentifiedImageError

    from ...segmentation.visualize import draw_segmentation, palette
    from ..distributed import resolve_device

    paths = [Path(p).expanduser() for p in images]
    if not paths:
        raise ConfigError("no images given; pass one or more image files")
    model, meta = load_segmenter(checkpoint, use_ema=use_ema)
    if meta["num_classes"] > 256:
        raise ConfigError(f"{meta['num_classes']} classes do not fit an 8-bit label PNG")
    torch_device = resolve_device(device)
    model.to(torch_device)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    classes, settings = meta["classes"], inference_settings(meta)
    colours = palette(meta["num_classes"])
    listing, used = [], set()
    for index, path in enumerate(paths, start=1):
        try:
            with Image.open(path) as file:
                array = torch.from_numpy(np.asarray(file.convert("RGB")).copy())
        except (OSError, UnidentifiedImageError) as err:
            raise ConfigError(f"cannot read image {str(path)!r} ({err}); pass image files PIL can read (PNG, JPEG, "
                              "...)") from err
        image = array.permute(2, 0, 1)
        with torch.no_grad():
            labels = predict_labels(model, [image.to(torch_device).float().div(255)], settings)[0].cpu()
        stem = path.stem if f"{path.stem}.png" not in used else f"{path.stem}-{index}"
        used.add(f"{stem}.png")
        picture = draw_segmentation(image, labels, colours, alpha=alpha, ignore_index=meta["ignore_index"])
        Image.fromarray(picture.permute(1, 2, 0).numpy()).save(out / f"{stem}.png")
        Image.fromarray(labels.to(torch.uint8).numpy()).save(out / f"{stem}_labels.png")
        counts = torch.bincount(labels.flatten(), minlength=len(classes)).tolist()
        listing.append({"file_name": str(path), "width": image.shape[2], "height": image.shape[1],
                        "prediction": f"{stem}.png", "labels": f"{stem}_labels.png",
                        "pixels": {name: count for name, count in zip(classes, counts) if count}})
    (out / "images.json").write_text(json.dumps(listing, indent=1))
    return {"images": listing, "classes": list(classes)}
