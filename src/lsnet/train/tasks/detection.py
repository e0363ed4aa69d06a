"""Object detection and instance segmentation: a torchvision detector (`lsnet.detection`) with a timm backbone on a
COCO-format folder, scored by COCO AP (pycocotools' COCOeval via `lsnet.detection.metrics`).

    lsnet train --task detection --config retinanet_lsnet_t_fashion_scenes --data-dir data/fashion-scenes
    lsnet train --task detection --config mask_rcnn_lsnet_t_coco --data-dir ~/coco \\
        --backbone-checkpoint lsnet_t.pth --nproc 8
    lsnet eval --checkpoint runs/<run>/best.pth                     # the task comes from the checkpoint
    lsnet predict --checkpoint runs/<run>/best.pth images/*.png --out preds/

Settings: --model is the backbone, --detector the detector (retinanet, faster_rcnn, mask_rcnn: masks are read and
scored as `segm` for mask_rcnn), --backbone-checkpoint classification weights for the backbone, --initial-checkpoint
a whole detector (ours or an official mmdet file), --min-size / --max-size the detector's resize, --freeze-bn,
--hflip and --scale-jitter the training augmentation. Splits: --train-split / --val-split / --test-split name
`annotations/instances_<split>.json` files (default: train / val / test, or COCO's train2017 / val2017); best.pth
is the best val bbox AP; a test split with annotations is scored once at the end. `--dataset` is recorded as the
folder's name. Classification-only settings (img_size, mixup, smoothing, ...) are ignored.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..distributed import DistState, all_gather_object, all_reduce_sum, broadcast_object, reduce_device
from ..errors import ConfigError
from ..evaluate import Throughput, autocast_context
from .base import Batch, Task, load_run_model, resolve_dense_splits

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class DetectionResult(Throughput):
    """COCO AP of one pass over an evaluation set: `scores[iou_type]` as `lsnet.detection.metrics.coco_evaluate`
    returns them (percent; 'bbox', plus 'segm' for mask detectors), with counts and timing."""

    scores: dict[str, dict[str, Any]]
    num_images: int
    num_detections: int
    model_seconds: float  # time inside the model's forward passes
    wall_seconds: float  # the whole pass, data loading and COCOeval included
    classes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bbox_AP(self) -> float:  # noqa: N802 (COCO's name)
        return self.scores["bbox"]["AP"]

    def to_dict(self) -> dict[str, Any]:
        return {**self.scores, "num_images": self.num_images, "num_detections": self.num_detections,
                "images_per_sec": self.images_per_sec, "end_to_end_images_per_sec": self.end_to_end_images_per_sec,
                "model_seconds": self.model_seconds, "wall_seconds": self.wall_seconds, "classes": list(self.classes),
                **self.extra}

    def summary(self) -> str:
        parts = [f"{kind} " + "  ".join(f"{name} {scores[name]:.1f}" for name in STAT_NAMES)
                 for kind, scores in self.scores.items()]
        return " | ".join(parts) + f"  {self.num_images} images  {self.images_per_sec:.1f} img/s"


def _to_device(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in target.items()}


class DetectionTask(Task):
    name = "detection"
    metric = "bbox_AP"
    metric_label = "bbox AP"
    no_weight_decay = ("*attention_biases",)  # LSNet's bias tables, as the official detection configs exclude them

    @staticmethod
    def collate(batch: list):
        from ...data.coco import detection_collate

        return detection_collate(batch)

    @property
    def masks(self) -> bool:
        return self.cfg.detector == "mask_rcnn"

    @property
    def iou_types(self) -> tuple[str, ...]:
        return ("bbox", "segm") if self.masks else ("bbox",)

    # ---- building
    def resolve(self) -> None:
        from ...data.coco import CocoDetection, coco_splits, detection_transforms

        cfg = self.cfg
        if not cfg.data_dir:
            raise ConfigError("--task detection needs --data-dir: a COCO-format folder (annotations/"
                              "instances_<split>.json + <split>/ images); build the demo set with `lsnet data "
                              "fashion-scenes --out DIR`")
        root = Path(cfg.data_dir).expanduser()
        resolve_dense_splits(cfg, coco_splits(root), train_alias="train2017", val_alias="val2017", what="detector",
                             listing="annotations", val_hint="an annotated split (annotations/instances_NAME.json)")
        self.train_set = CocoDetection(root, cfg.train_split, masks=self.masks, strict=cfg.strict,
                                       subset=cfg.train_subset, transforms=detection_transforms(
                                           True, hflip=cfg.hflip, scale_jitter=cfg.scale_jitter))
        self.classes, self.cat_ids = self.train_set.classes, self.train_set.cat_ids
        cfg.num_classes = cfg.num_classes or len(self.classes)
        if cfg.num_classes != len(self.classes):
            raise ConfigError(f"--num-classes {cfg.num_classes} but {self.train_set.ann_file} has "
                              f"{len(self.classes)} categories; drop --num-classes (default: the data set's)")

    def run_name(self) -> str:
        return f"{self.cfg.detector}-{self.cfg.model}-{self.cfg.dataset}"

    def model_label(self) -> str:
        return f"{self.cfg.detector} {self.cfg.model}"

    def input_text(self) -> str:
        return f"min side {self.cfg.min_size} / max side {self.cfg.max_size} px"

    def build_model(self, *, resume: bool) -> nn.Module:
        from ...detection import build_detector

        cfg = self.cfg
        backbone_kwargs = dict(cfg.model_kwargs or {})
        if cfg.drop_path:
            backbone_kwargs["drop_path_rate"] = cfg.drop_path
        model = build_detector(
            cfg.detector, cfg.model, cfg.num_classes, freeze_bn=cfg.freeze_bn, min_size=cfg.min_size,
            max_size=cfg.max_size, pretrained=cfg.pretrained and not resume, backbone_kwargs=backbone_kwargs,
            backbone_checkpoint=None if resume else cfg.backbone_checkpoint,
            checkpoint=None if resume else cfg.initial_checkpoint, **(cfg.detector_kwargs or {}))
        self.detector_config = model.detector_config
        return model

    def build_datasets(self):
        from ...data.coco import CocoDetection, detection_transforms

        cfg = self.cfg

        def split(name: str, subset: int | None):
            data = CocoDetection(cfg.data_dir, name, transforms=detection_transforms(False), masks=self.masks,
                                 strict=cfg.strict, subset=subset)
            if data.classes != self.classes:
                raise ConfigError(f"{data.ann_file} has categories {list(data.classes)} but the training split has "
                                  f"{list(self.classes)}; every split needs the same categories")
            return data

        train_set = self.train_set
        val_set = split(cfg.val_split, cfg.val_subset) if cfg.val_split else None
        test_set = split(cfg.test_split, cfg.test_subset) if cfg.test_split != "none" else None
        return train_set, val_set, test_set, f"instances_{cfg.val_split}.json" if cfg.val_split else "none"

    # ---- one training step
    def unpack(self, batch) -> Batch:
        images, targets = batch
        return Batch(images, targets, len(images))

    def prepare(self, batch: Batch):
        return ([image.to(self.device, non_blocking=True) for image in batch.inputs],
                [_to_device(target, self.device) for target in batch.targets])

    def forward(self, model: nn.Module, inputs, targets):
        return model(inputs, targets)  # training mode: torchvision's dict of named losses

    def loss(self, inputs, outputs, targets) -> dict[str, torch.Tensor]:
        return outputs

    # ---- evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, *, desc: str, amp_dtype: torch.dtype | None,
                 progress: bool) -> DetectionResult:
        """Detections of this rank's shard -> COCO results gathered on rank 0 -> COCOeval there -> every rank."""
        from ...detection.metrics import coco_evaluate, to_coco_results

        data = loader.dataset
        was_training = model.training
        model.eval()
        results: list[dict] = []
        model_seconds, start = 0.0, time.perf_counter()
        iterator = loader
        if progress:
            from tqdm import tqdm

            iterator = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
        for images, targets in iterator:
            images = [image.to(self.device, non_blocking=True) for image in images]
            t0 = time.perf_counter()
            with autocast_context(self.device, amp_dtype):
                outputs = model(images)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            model_seconds += time.perf_counter() - t0
            outputs = [{k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in out.items()}
                       for out in outputs]
            results += to_coco_results(outputs, [target["image_id"] for target in targets], data.cat_ids)
        model.train(was_training)
        counts = all_reduce_sum(torch.tensor([len(loader.sampler), model_seconds], dtype=torch.float64,
                                             device=reduce_device(self.dist)), self.dist).cpu()
        results = [entry for part in all_gather_object(results, self.dist) for entry in part]
        scores = coco_evaluate(data.coco, results, iou_types=self.iou_types, classes=data.classes) \
            if self.dist.is_main else None
        scores = broadcast_object(scores, self.dist)
        return DetectionResult(scores=scores, num_images=int(counts[0]), num_detections=len(results),
                               model_seconds=counts[1].item() / self.dist.world_size,
                               wall_seconds=time.perf_counter() - start, classes=tuple(data.classes))

    # ---- what the run shows
    def val_metrics(self, result: DetectionResult, prefix: str = "") -> dict[str, Any]:
        row = {}
        for kind, scores in result.scores.items():
            row.update({f"{prefix}val_{kind}_{name}": scores[name] for name in ("AP", "AP50", "AP75")})
        return row

    def epoch_text(self, row: dict[str, Any]) -> str:
        text = ""
        for prefix, label in (("", "val"), ("ema_", "EMA val")):
            if f"{prefix}val_bbox_AP" not in row:
                continue
            text += f"  | {label} bbox AP {row[f'{prefix}val_bbox_AP']:.2f} (AP50 {row[f'{prefix}val_bbox_AP50']:.2f})"
            if f"{prefix}val_segm_AP" in row:
                text += f"  segm AP {row[f'{prefix}val_segm_AP']:.2f}"
        return text

    def result_text(self, result: DetectionResult, split: str) -> str:
        label = split if split != "val" else "val (no test split)"
        text = ", ".join(f"{kind} AP {scores['AP']:.2f} (AP50 {scores['AP50']:.2f})"
                         for kind, scores in result.scores.items())
        return f"{label} {text}"

    def write_outputs(self, run_dir: Path, result: DetectionResult, *, split: str, history: list[dict[str, Any]],
                      summary: dict[str, Any]) -> Path:
        from ..report import plot_loss_and_metric_curves, write_detection_report

        plot_loss_and_metric_curves(history, run_dir / "curves.png", metrics=(
            ("val_bbox_AP", "val bbox AP"), ("val_segm_AP", "val segm AP"), ("ema_val_bbox_AP", "EMA val bbox AP")),
            metric_axis=("AP (%)", "validation COCO AP"))
        return write_detection_report(run_dir, config=self.cfg.to_dict(), result=result, history=history,
                                      summary=summary)

    def export_metadata(self) -> dict[str, Any]:
        keys = ("task", "detector", "model", "num_classes", "min_size", "max_size", "dataset", "data_dir",
                "train_split", "val_split", "test_split", "seed", "amp_dtype")
        return {**{k: getattr(self.cfg, k) for k in keys}, "classes": list(self.classes),
                "cat_ids": list(self.cat_ids), "detector_config": self.detector_config}

    # ---- checkpoints
    @classmethod
    def evaluate_checkpoint(cls, checkpoint, *, data_dir: str | None = None, split: str | None = None,
                            batch_size: int = 2, workers: int = 2, subset: int | None = None, device: str = "auto",
                            amp: bool | None = None, use_ema: bool | None = None, strict: bool = False,
                            output: str | Path | None = None, progress: bool = False) -> DetectionResult:
        """COCO AP of a detection run's checkpoint on one of its splits ('train', 'val', 'test' or a split name;
        default: test when the run had one, else val), on its --data-dir unless `data_dir` is given."""
        from ..builders import ShardSampler, create_loader
        from ..config import TrainConfig
        from ..distributed import resolve_device

        model, meta = load_detector(checkpoint, use_ema=use_ema)
        names = {"train": meta["train_split"], "val": meta["val_split"], "test": meta["test_split"]}
        split = split or ("test" if meta["test_split"] not in (None, "none") else "val")
        split_name = names.get(split, split)
        if split_name in (None, "none"):
            raise ConfigError(f"the run had no {split} split; pass --split val, test or a split name of its data")
        torch_device = resolve_device(device)
        cfg = TrainConfig(task="detection", detector=meta["detector"], model=meta["model"],
                          data_dir=data_dir or meta["data_dir"], strict=strict)
        task = cls(cfg, DistState(device=torch_device))
        from ...data.coco import CocoDetection, detection_transforms

        data = CocoDetection(cfg.data_dir, split_name, transforms=detection_transforms(False), masks=task.masks,
                             strict=strict, subset=subset)
        loader = create_loader(data, batch_size=batch_size, sampler=ShardSampler(len(data)), workers=workers,
                               pin_memory=torch_device.type == "cuda", collate_fn=cls.collate)
        amp = torch_device.type == "cuda" if amp is None else amp
        amp_dtype = getattr(torch, meta.get("amp_dtype") or "bfloat16") if amp else None
        result = task.evaluate(model.to(torch_device), loader, desc=split, amp_dtype=amp_dtype, progress=progress)
        result.extra.update(checkpoint=str(getattr(checkpoint, "path", checkpoint)), model=task.model_label(),
                            dataset=Path(cfg.data_dir).name, split=split, split_source=f"instances_{split_name}.json",
                            ema=bool(meta.get("ema_loaded")))
        if output is not None:
            output = Path(output)
            output.mkdir(parents=True, exist_ok=True)
            (output / "eval.json").write_text(json.dumps(result.to_dict(), indent=2))
        return result


def load_detector(checkpoint, *, use_ema: bool | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The detector of a detection run's checkpoint in eval mode, and the run's metadata (detector_config, classes,
    cat_ids, splits, ...; `lsnet.train.tasks.base.load_run_model`). use_ema: default: when the checkpoint has them."""
    from ...detection import build_detector

    return load_run_model(checkpoint, build_detector, task="detection", config_key="detector_config", use_ema=use_ema)


def predict_images(checkpoint, images, out: str | Path, *, score_threshold: float = 0.3, device: str = "auto",
                   use_ema: bool | None = None) -> dict[str, Any]:
    """Run a detection run's detector on image files; write `out/<stem>.png` per image (detections with score >=
    `score_threshold` drawn: boxes, "class score" labels, masks), `out/results.json` (COCO results of every
    detection the model returns: image_id, category_id, bbox XYWH, score[, segmentation RLE]) and `out/images.json`
    (COCO `images` entries: id = position in `images` counted from 1, file_name = the path given, width, height,
    and the drawn picture's name). Returns {"images": [...], "results": [...]}.
    """
    from PIL import Image, UnidentifiedImageError

    from ...detection.metrics import to_coco_results
    from ...detection.visualize import draw_detections
    from ..distributed import resolve_device

    paths = [Path(p).expanduser() for p in images]
    if not paths:
        raise ConfigError("no images given; pass one or more image files")
    model, meta = load_detector(checkpoint, use_ema=use_ema)
    torch_device = resolve_device(device)
    model.to(torch_device)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    classes, cat_ids = meta["classes"], meta["cat_ids"]
    listing, results, used = [], [], set()
    for image_id, path in enumerate(paths, start=1):
        try:
            with Image.open(path) as file:
                array = torch.from_numpy(np.asarray(file.convert("RGB")).copy())
        except (OSError, UnidentifiedImageError) as err:
            raise ConfigError(f"cannot read image {str(path)!r} ({err}); pass image files PIL can read (PNG, JPEG, "
                              "...)") from err
        image = array.permute(2, 0, 1)
        with torch.no_grad():
            detection = model([image.to(torch_device).float().div(255)])[0]
        detection = {k: v.cpu() for k, v in detection.items()}
        name = f"{path.stem}.png" if f"{path.stem}.png" not in used else f"{path.stem}-{image_id}.png"
        used.add(name)
        picture = draw_detections(image, detection, classes, score_threshold=score_threshold)
        Image.fromarray(picture.permute(1, 2, 0).numpy()).save(out / name)
        results += to_coco_results([detection], [image_id], cat_ids)
        listing.append({"id": image_id, "file_name": str(path), "width": image.shape[2], "height": image.shape[1],
                        "prediction": name})
    (out / "results.json").write_text(json.dumps(results))
    (out / "images.json").write_text(json.dumps(listing, indent=1))
    return {"images": listing, "results": results}
