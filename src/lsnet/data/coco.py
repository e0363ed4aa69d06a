"""COCO-format detection / instance-segmentation data sets through pycocotools, with torchvision.transforms.v2.

    root/annotations/instances_<split>.json      root/<split>/<file_name>      (COCO's own layout)

    from lsnet.data import CocoDetection, detection_collate, detection_transforms
    train = CocoDetection("~/coco", "train2017", transforms=detection_transforms(True), masks=True)
    loader = DataLoader(train, batch_size=2, shuffle=True, collate_fn=detection_collate)
    images, targets = next(iter(loader))      # lists: float (3, H, W) in [0, 1]; dicts of boxes / labels / masks

Labels are contiguous 0..K-1 in sorted category-id order (`.classes[label]`, `.cat_ids[label]` is the COCO id).
Crowd annotations stay in `.coco` (the ground truth COCOeval scores against, where they mark regions to ignore) but
leave the training targets, as torchvision's detection references do. Images without annotations are valid training
images with zero boxes. Checks at construction (one line each, naming the file and the fix): unknown category ids,
annotations of unknown images; boxes outside the image (by more than `BOX_TOLERANCE` px) or of non-positive size are
skipped with one warning per split (and removed from `.coco` too, so training and scoring see the same objects), or
fail with `strict=True`. Checked on reading: unreadable or missing image files, image sizes that differ from the json.
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import tv_tensors
from torchvision.transforms import v2

from .errors import DatasetError

BOX_TOLERANCE = 1.0  # px a box may pass the image border (float rounding in exported annotations); clipped to it


def coco_splits(root: str | Path) -> list[str]:
    """The splits of a COCO-format folder: every `annotations/instances_<split>.json` (sorted)."""
    folder = Path(root).expanduser() / "annotations"
    if not folder.is_dir():
        return []
    return sorted(p.name[len("instances_"):-len(".json")] for p in folder.glob("instances_*.json"))


def load_coco(path: str | Path):
    """A pycocotools COCO of one annotation file, read quietly; DatasetError for a file that is not COCO json."""
    from pycocotools.coco import COCO

    path = Path(path)
    try:
        dataset = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"cannot read COCO annotation file {str(path)!r} ({err}); re-export or re-download it") \
            from err
    if not isinstance(dataset, dict):
        dataset = {}
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(dataset.get(key), list)]
    if missing:
        raise DatasetError(f"{str(path)!r} is not a COCO instances file: no list {', '.join(missing)}; it needs "
                           "'images', 'annotations' and 'categories' lists")
    coco = COCO()
    _reindex(coco, **dataset)
    return coco


def _reindex(coco, **lists) -> None:
    """Set (or replace) `coco.dataset` entries and rebuild its index quietly (pycocotools prints 'creating index')."""
    coco.dataset.update(lists)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()


def _box_problem(box, width: int, height: int) -> str | None:
    """Why a COCO [x, y, w, h] box cannot be trained on, or None."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return f"bbox {box!r} is not [x, y, w, h]"
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return f"bbox {box} has non-positive size"
    tol = BOX_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return f"bbox {box} lies outside the {width}x{height} image"
    return None


def _check_annotations(coco, path: Path, strict: bool) -> None:
    """Image entries complete, category / image ids known; bad boxes dropped from `coco` with one warning (or fail
    when strict)."""
    for image in coco.dataset["images"]:
        missing = [key for key in ("id", "file_name", "width", "height") if key not in image]
        if missing:
            raise DatasetError(f"{str(path)!r}: image entry {image.get('id', image.get('file_name', '?'))!r} has no "
                               f"{', '.join(missing)}; every image needs id, file_name, width and height")
    known_cats = sorted(coco.cats)
    bad = []
    for ann in coco.dataset["annotations"]:
        if ann.get("category_id") not in coco.cats:
            raise DatasetError(f"{str(path)!r}: annotation {ann.get('id')} has category_id {ann.get('category_id')!r}, "
                               f"which is not in 'categories' (ids {known_cats}); add the category or fix the id")
        image = coco.imgs.get(ann.get("image_id"))
        if image is None:
            raise DatasetError(f"{str(path)!r}: annotation {ann.get('id')} has image_id {ann.get('image_id')!r}, which "
                               "is not in 'images'; add the image entry or remove the annotation")
        problem = _box_problem(ann.get("bbox"), image["width"], image["height"])
        if problem is not None:
            if strict:
                raise DatasetError(f"{str(path)!r}: annotation {ann.get('id')} (image {ann['image_id']}): {problem}; "
                                   "fix or remove it, or run without --strict to skip such boxes with a warning")
            bad.append(ann)
    if bad:
        bad_ids = {id(ann) for ann in bad}
        _reindex(coco, annotations=[ann for ann in coco.dataset["annotations"] if id(ann) not in bad_ids])
        warnings.warn(f"{path}: skipped {len(bad)} annotations with boxes outside the image or of non-positive size "
                      f"(first: id {bad[0].get('id')}); fix them, or pass --strict to fail on them", stacklevel=3)


def _keep_images(coco, image_ids: list[int]) -> None:
    """Cut `coco` (images and their annotations) to `image_ids`, in place."""
    keep = set(image_ids)
    _reindex(coco, images=[image for image in coco.dataset["images"] if image["id"] in keep],
             annotations=[ann for ann in coco.dataset["annotations"] if ann["image_id"] in keep])


class CocoDetection(torch.utils.data.Dataset):
    """(image, target) pairs of one split of a COCO-format folder.

    Args:
        root: folder with `annotations/instances_<split>.json` and the images in `<split>/`.
        split: e.g. 'train2017', 'val2017' (COCO) or 'train', 'val', 'test' (Fashion-scenes).
        transforms: a v2 transform called as `transforms(image, target)` (e.g. `detection_transforms`).
        masks: also return instance masks (polygons and RLE, compressed or not, via pycocotools' annToMask).
        strict: fail on the first bad box instead of skipping bad boxes with a warning.
        subset: keep only the first `subset` images (in image-id order), with `.coco` cut to them (quick runs; COCOeval
            then scores what was run).

    Returns per item: image `tv_tensors.Image` uint8 (3, H, W) (before transforms) and target dict with
    `boxes` BoundingBoxes XYXY float (M, 4) pixels, `labels` int64 (M,) in 0..K-1, `masks` Mask uint8 (M, H, W)
    (only with masks=True), `image_id` int, `area` float32 (M,) (the json's, original pixels), `iscrowd` int64 (M,)
    (zeros: crowd annotations are dropped from targets).
    """

    def __init__(self, root: str | Path, split: str, *, transforms=None, masks: bool = False, strict: bool = False,
                 subset: int | None = None):
        root = Path(root).expanduser()
        ann_file = root / "annotations" / f"instances_{split}.json"
        present = coco_splits(root)
        if not ann_file.is_file():
            raise DatasetError(f"no annotation file {str(ann_file)!r} (splits present under {str(root)!r}: "
                               f"{', '.join(present) or 'none'}); pass --data-dir of a COCO-format folder "
                               f"(annotations/instances_<split>.json + <split>/) and one of its splits")
        image_dir = root / split
        if not image_dir.is_dir():
            raise DatasetError(f"no image folder {str(image_dir)!r} for {ann_file.name} (splits with annotations: "
                               f"{', '.join(present)}); put the {split} images in {image_dir}/")
        self.coco = load_coco(ann_file)
        _check_annotations(self.coco, ann_file, strict)
        if subset is not None:
            _keep_images(self.coco, sorted(self.coco.imgs)[:subset])
        self.root, self.split, self.ann_file, self.image_dir = root, split, ann_file, image_dir
        self.transforms, self.masks, self.strict = transforms, masks, strict
        self.cat_ids = tuple(sorted(self.coco.cats))
        self.classes = tuple(self.coco.cats[c]["name"] for c in self.cat_ids)
        self.image_ids = tuple(sorted(self.coco.imgs))
        self._label = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}

    def __len__(self) -> int:
        return len(self.image_ids)

    def _load_image(self, info: dict) -> torch.Tensor:
        path = self.image_dir / info["file_name"]
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            raise DatasetError(f"unreadable image {str(path)!r} (image {info['id']} of {self.ann_file.name}: {err}); "
                               "replace the file or remove the image and its annotations from the json") from err
        if array.shape[:2] != (info["height"], info["width"]):
            raise DatasetError(f"image {str(path)!r} is {array.shape[1]}x{array.shape[0]} (WxH) on disk but "
                               f"{info['width']}x{info['height']} in {self.ann_file.name}; fix the json's width/height "
                               "or replace the file")
        return torch.from_numpy(array.copy()).permute(2, 0, 1)

    def _load_mask(self, ann: dict, height: int, width: int) -> np.ndarray:
        if not ann.get("segmentation"):
            raise DatasetError(f"{str(self.ann_file)!r}: annotation {ann['id']} has no segmentation; add a polygon or "
                               "RLE mask, or load without masks (masks=False)")
        mask = self.coco.annToMask(ann)
        if mask.shape != (height, width):
            raise DatasetError(f"{str(self.ann_file)!r}: annotation {ann['id']}'s RLE mask is {mask.shape[1]}x"
                               f"{mask.shape[0]} but its image is {width}x{height}; fix the RLE 'size'")
        return mask

    def __getitem__(self, index: int):
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        image = tv_tensors.Image(self._load_image(info))
        anns = [ann for ann in self.coco.imgToAnns.get(image_id, []) if not ann.get("iscrowd", 0)]
        boxes = torch.tensor([ann["bbox"] for ann in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # XYWH -> XYXY
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor([self._label[ann["category_id"]] for ann in anns], dtype=torch.int64),
            "image_id": int(image_id),
            "area": torch.tensor([float(ann.get("area", 0.0)) for ann in anns], dtype=torch.float32),
            "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
        }
        if self.masks:
            masks = np.zeros((0, height, width), np.uint8)
            if anns:
                masks = np.stack([self._load_mask(ann, height, width) for ann in anns])
            target["masks"] = tv_tensors.Mask(torch.from_numpy(masks))
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def detection_collate(batch: list) -> tuple[list, list]:
    """[(image, target), ...] -> ([images], [targets]): detectors take lists (images differ in size)."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


def _target_labels(inputs) -> tuple[torch.Tensor, ...]:
    """The per-box tensors SanitizeBoundingBoxes must filter along with the boxes (masks it finds itself)."""
    target = inputs[1]
    return tuple(target[key] for key in ("labels", "area", "iscrowd") if key in target)


def detection_transforms(train: bool, *, hflip: float = 0.5, scale_jitter: tuple[float, float] | None = None):
    """A v2 transform on (image, target): training flips and optionally scale-jitters; both end in float [0, 1]
    images and sanitised boxes (degenerate ones removed with their labels, masks, areas).

    No resize: the detectors resize to their min_size/max_size themselves (as mmdet's 1333x800 does).
    scale_jitter (lo, hi): zoom by a factor drawn from [lo, hi] about the centre with the canvas size kept (larger
    objects cropped at the border, smaller ones padded with black) -- object scales that the detector's own resize
    cannot undo, the large-scale-jitter idea at the image's own size.
    """
    steps = []
    if train:
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(hflip))
        if scale_jitter is not None:
            lo, hi = scale_jitter
            if not 0 < lo <= hi:
                raise ValueError(f"scale_jitter must be (lo, hi) with 0 < lo <= hi; got {scale_jitter}")
            steps.append(v2.RandomAffine(degrees=0.0, scale=(lo, hi)))
    steps += [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(labels_getter=_target_labels),
    ]
    return v2.Compose(steps)
