"""Semantic segmentation data: image / label-PNG pairs in the ADE20K layout or a generic one, and mmseg's pipeline.

    ADE20K ("ade20k"):  root/images/{training,validation}/*.jpg  root/annotations/{training,validation}/<stem>.png
                        label 0 = ignore, 1..150 -> classes 0..149 (mmseg's reduce_zero_label), 255 = ignore
    pairs ("pairs"):    root/<split>/*.png|jpg  root/labels/<split>/<stem>.png  root/labels/classes.txt
                        classes.txt: one name per line, line i names label value i; 255 = ignore
                        (`lsnet data fashion-scenes` writes this layout: background + the 10 Fashion-MNIST classes)

    from lsnet.data.segmentation import SegmentationFolder, segmentation_collate, segmentation_transforms
    train = SegmentationFolder("~/ADEChallengeData2016", "training", transforms=segmentation_transforms(True))
    image, mask, meta = train[0]      # Image float32 (3, 512, 512) in [0, 1], Mask int64 (512, 512), dict

Every pair is checked when the data set is built (the images' headers, the whole label PNGs: ~2 ms per ADE20K label,
on up to 8 threads): a missing label, an unreadable file, a label whose size differs from its image, a colour (RGB)
label, label values above the class count that are not the ignore value. Such pairs are skipped with one warning and
counted in `.skipped` ({reason: count}), or fail at once with `strict=True`; every message names the file and the fix.
An image that decodes badly past its header fails when read (DatasetError naming the file).
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import tv_tensors
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .errors import DatasetError
from .folder import split_dir

# mmseg 0.30's ADE20KDataset.CLASSES, verbatim (its 'bed ' keeps the trailing space): label value i+1 -> class i
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed ", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock",
    "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers",
    "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway",
    "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land",
    "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent",
    "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal",
    "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)
LABEL_IGNORE = 255  # the label-PNG value of pixels to ignore, in both layouts
LABEL_MODES = ("L", "P", "I;16", "I")  # single-channel integer PNGs (P: the palette indices are the labels)
SCAN_THREADS = min(8, os.cpu_count() or 1)  # threads checking the pairs when a data set is built
SCAN_CHUNK = 256  # pairs checked per round (a `subset` stops after the round that fills it)


def _layout(root: Path) -> str | None:
    """'ade20k' (images/ + annotations/ folders), 'pairs' (a labels/ folder) or None."""
    if (root / "images").is_dir() and (root / "annotations").is_dir():
        return "ade20k"
    if (root / "labels").is_dir():
        return "pairs"
    return None


def _folders(root: Path, layout: str, split: str) -> tuple[Path | None, Path | None]:
    """(image folder, label folder) of a split (val <-> validation aliases as ImageFolder's), None where absent."""
    if layout == "ade20k":
        images = split_dir(root / "images", split)
        return images, None if images is None else root / "annotations" / images.name
    images = split_dir(root, split)
    return images, None if images is None else root / "labels" / images.name


def segmentation_splits(root: str | Path) -> list[str]:
    """The split names present under `root` (sorted): image folders that have a label folder beside them."""
    root = Path(root).expanduser()
    layout = _layout(root)
    if layout == "ade20k":
        return sorted(p.name for p in (root / "images").iterdir() if (root / "annotations" / p.name).is_dir())
    if layout == "pairs":
        return sorted(p.name for p in root.iterdir() if p.name != "labels" and (root / "labels" / p.name).is_dir())
    return []


def read_classes(path: Path) -> tuple[str, ...]:
    """Class names of a pairs folder's labels/classes.txt (line i names label value i)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read the class list {str(path)!r} ({err}); write one class name per line, line i "
                           "naming label value i (e.g. background first)") from err
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    empty = [i + 1 for i, name in enumerate(names) if not name]
    if not names or empty:
        raise DatasetError(f"class list {str(path)!r} " + (f"has empty line(s) {empty}" if names else "is empty") +
                           "; write one class name per line, line i naming label value i")
    if len(names) > LABEL_IGNORE:
        raise DatasetError(f"class list {str(path)!r} names {len(names)} classes, but label value {LABEL_IGNORE} "
                           f"means 'ignore'; use at most {LABEL_IGNORE} classes")
    return tuple(names)


class _BadPair(Exception):
    """A pair that cannot be used: `reason` (the skip count's key) and a message naming the file and the fix."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class SegmentationFolder(torch.utils.data.Dataset):
    """(image, mask, meta) triples of one split of an ADE20K-layout or pairs-layout folder (see the module docstring).

    Args:
        root: the data folder (ADE20K: ADEChallengeData2016; pairs: e.g. a `lsnet data fashion-scenes` output).
        split: ADE20K 'training' / 'validation' (or 'train' / 'val'); pairs: a folder name such as 'train'.
        transforms: a v2 transform called as `transforms(image, mask)` (e.g. `segmentation_transforms(True)`).
        strict: fail on the first bad pair instead of skipping bad pairs with a warning.
        subset: keep only the first `subset` good pairs (in sorted file order; quick runs).
        ignore_index: the value of ignored pixels in the returned masks (not a class: >= the class count or < 0).

    Returns per item: image `tv_tensors.Image` float32 (3, H, W) in [0, 1], mask `tv_tensors.Mask` int64 (H, W) in
    0..K-1 or ignore_index (both after `transforms`), meta `{"file", "label_file", "index", "size": (H, W)}` (the
    size on disk).
    """

    def __init__(self, root: str | Path, split: str, *, transforms=None, strict: bool = False,
                 subset: int | None = None, ignore_index: int = 255):
        root = Path(root).expanduser()
        layout = _layout(root)
        if layout is None:
            raise DatasetError(f"{str(root)!r} is no segmentation folder: it needs images/<split>/ + "
                               "annotations/<split>/ (ADE20K) or <split>/ + labels/<split>/ + labels/classes.txt "
                               "(pairs); pass --data-dir of one")
        image_dir, label_dir = _folders(root, layout, split)
        if image_dir is None or not label_dir.is_dir():
            present = ", ".join(segmentation_splits(root)) or "none"
            raise DatasetError(f"no {split!r} split with labels under {str(root)!r} ({layout} layout; splits present: "
                               f"{present}); pass one of them, or add the split's images and label PNGs")
        if layout == "ade20k":
            self.classes = ADE20K_CLASSES
        else:
            classes_file = root / "labels" / "classes.txt"
            if not classes_file.is_file():
                raise DatasetError(f"no class list {str(classes_file)!r}; write one class name per line, line i naming "
                                   "label value i (e.g. background first)")
            self.classes = read_classes(classes_file)
        self.num_classes = len(self.classes)
        if 0 <= ignore_index < self.num_classes:
            raise ValueError(f"ignore_index {ignore_index} is one of the {self.num_classes} classes (0..."
                             f"{self.num_classes - 1}); use 255 or any value outside that range")
        self.root, self.split, self.layout = root, split, layout
        self.image_dir, self.label_dir = image_dir, label_dir
        self.transforms, self.strict, self.ignore_index = transforms, strict, ignore_index
        # the highest label value on disk that names a class: ADE20K's 1..150 (0 = ignore), pairs' 0..K-1
        self._max_value = self.num_classes if layout == "ade20k" else self.num_classes - 1
        self.samples, self.skipped = self._scan(subset)

    def _scan(self, subset: int | None) -> tuple[list[tuple[Path, Path]], dict[str, int]]:
        """The good (image, label) pairs in sorted order, up to `subset` of them, and the bad ones' counts (pairs
        checked by SCAN_THREADS threads, in chunks: PIL decodes without the GIL)."""
        images = sorted(p for p in self.image_dir.iterdir() if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
        pairs = [(image, self.label_dir / f"{image.stem}.png") for image in images]
        samples, skipped, first = [], {}, None
        with ThreadPoolExecutor(SCAN_THREADS) as pool:
            for start in range(0, len(pairs), SCAN_CHUNK):
                if subset is not None and len(samples) >= subset:
                    break
                chunk = pairs[start:start + SCAN_CHUNK]
                for pair, bad in zip(chunk, pool.map(self._problem, chunk)):
                    if bad is None:
                        samples.append(pair)
                    elif self.strict:
                        raise DatasetError(f"{bad}; or run without --strict to skip such pairs with a warning")
                    else:
                        skipped[bad.reason] = skipped.get(bad.reason, 0) + 1
                        first = first or str(bad)
        if subset is not None:
            samples = samples[:subset]
        if skipped:
            warnings.warn(f"{self.image_dir}: skipped {sum(skipped.values())} image/label pairs ({skipped}; first: "
                          f"{first}); fix them, or pass --strict to fail on them", stacklevel=3)
        if not samples:
            raise DatasetError(f"no usable image/label pairs in {str(self.image_dir)!r} and {str(self.label_dir)!r} "
                               f"({len(images)} images, skipped: {skipped or 'none'}); put images there with "
                               f"<stem>.png labels beside them in {self.label_dir}/")
        return samples, skipped

    def _problem(self, pair: tuple[Path, Path]) -> _BadPair | None:
        """What is wrong with an (image, label) pair, or None (a thread-pool task)."""
        try:
            self._check_pair(*pair)
        except _BadPair as bad:
            return bad
        return None

    def _check_pair(self, image: Path, label: Path) -> None:
        """_BadPair unless both files read, sizes agree, the label is single-channel and its values are classes."""
        if not label.is_file():
            raise _BadPair("missing label", f"no label PNG {str(label)!r} for image {str(image)!r}; add it, or remove "
                                            "the image")
        try:
            with Image.open(image) as im:
                image_size = im.size
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            raise _BadPair("unreadable image", f"unreadable image {str(image)!r} ({err}); replace it, or remove it "
                                               "and its label") from None
        try:
            with Image.open(label) as im:
                mode, label_size = im.mode, im.size
                if mode not in LABEL_MODES:
                    raise _BadPair("colour label", f"label {str(label)!r} is a mode-{mode} image; labels must be "
                                                   "single-channel class indices (an 8-bit grey or palette PNG), not a "
                                                   "colour rendering: map its colours to class indices")
                if label_size != image_size:
                    raise _BadPair("size mismatch", f"label {str(label)!r} is {label_size[0]}x{label_size[1]} (WxH) "
                                                    f"but its image {str(image)!r} is {image_size[0]}x"
                                                    f"{image_size[1]}; write the label at the image's size")
                values = np.asarray(im)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            raise _BadPair("unreadable label", f"unreadable label {str(label)!r} ({err}); replace it, or remove it "
                                               "and its image") from None
        if values.max(initial=0) > self._max_value or values.min(initial=0) < 0:
            bad = np.unique(values[((values > self._max_value) & (values != LABEL_IGNORE)) | (values < 0)])
            if bad.size:
                lowest = int(self.layout == "ade20k")  # ADE20K's classes are label values 1..150
                raise _BadPair("label out of range", f"label {str(label)!r} has values {bad[:5].tolist()} above the "
                                                     f"{self.num_classes} classes ({lowest}..{self._max_value}, "
                                                     f"{LABEL_IGNORE} = ignore); fix the label or the class list")

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, path: Path, mode: str | None) -> np.ndarray:
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert(mode) if mode else im)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            raise DatasetError(f"unreadable file {str(path)!r} ({err}; its header read when the data set was built); "
                               "replace it, or remove the pair") from err

    def load_mask(self, index: int) -> tv_tensors.Mask:
        """The label of pair `index` as class indices: Mask int64 (H, W) in 0..K-1 or ignore_index (no transforms)."""
        values = torch.from_numpy(self._read(self.samples[index][1], None).astype(np.int64))
        ignore = values == LABEL_IGNORE
        if self.layout == "ade20k":  # reduce_zero_label: 0 -> ignore, 1..150 -> 0..149
            ignore |= values == 0
            values = values - 1
        return tv_tensors.Mask(values.masked_fill_(ignore, self.ignore_index))

    def __getitem__(self, index: int):
        image_path, label_path = self.samples[index]
        image = torch.from_numpy(self._read(image_path, "RGB").copy()).permute(2, 0, 1)
        image = tv_tensors.Image(image.to(torch.float32).div_(255))
        mask = self.load_mask(index)
        meta = {"file": str(image_path), "label_file": str(label_path), "index": index, "size": tuple(mask.shape)}
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask, meta


def segmentation_collate(batch: list) -> tuple[list, list, list]:
    """[(image, mask, meta), ...] -> ([images], [masks], [metas]) (eval images differ in size; the task stacks)."""
    images, masks, metas = zip(*batch) if batch else ((), (), ())
    return list(images), list(masks), list(metas)


def _mask_of(flat_inputs: list) -> torch.Tensor:
    masks = [inpt for inpt in flat_inputs if isinstance(inpt, tv_tensors.Mask)]
    if len(masks) != 1:
        raise TypeError(f"segmentation transforms take (image, tv_tensors.Mask); got {len(masks)} masks among the "
                        "inputs: wrap the label in tv_tensors.Mask")
    return masks[0]


class RandomRescale(v2.Transform):
    """mmseg's `Resize(img_scale=scale, ratio_range=ratio_range, keep_ratio=True)`: draw r in ratio_range, rescale
    (aspect kept) to the largest size whose long side <= r * max(scale) and short side <= r * min(scale).

    Images bilinear without antialiasing (as mmcv's cv2 resize); masks nearest at pixel centres (NEAREST_EXACT, the
    bilinear image's sampling grid; mmseg's cv2 INTER_NEAREST samples floor(x * in / out), up to half an input pixel
    off it).
    """

    def __init__(self, scale: tuple[int, int] = (2048, 512), ratio_range: tuple[float, float] = (0.5, 2.0)):
        super().__init__()
        if not 0 < ratio_range[0] <= ratio_range[1]:
            raise ValueError(f"ratio_range must be (lo, hi) with 0 < lo <= hi; got {ratio_range}")
        self.scale, self.ratio_range = tuple(scale), tuple(ratio_range)

    def make_params(self, flat_inputs: list) -> dict:
        height, width = _mask_of(flat_inputs).shape[-2:]
        lo, hi = self.ratio_range
        ratio = lo + (hi - lo) * torch.rand(()).item()
        long_side, short_side = int(max(self.scale) * ratio), int(min(self.scale) * ratio)
        factor = min(long_side / max(height, width), short_side / min(height, width))
        return {"size": [int(height * factor + 0.5), int(width * factor + 0.5)]}

    def transform(self, inpt, params: dict):
        mask = isinstance(inpt, tv_tensors.Mask)
        mode = v2.InterpolationMode.NEAREST_EXACT if mask else v2.InterpolationMode.BILINEAR
        return F.resize(inpt, params["size"], interpolation=mode, antialias=False)


class CatRatioCrop(v2.Transform):
    """mmseg's `RandomCrop(crop_size, cat_max_ratio)`: a random crop of at most `size` (H, W); while the crop's most
    frequent class covers >= cat_max_ratio of its non-ignored pixels (or it holds fewer than 2 classes), draw again,
    up to 10 times, then keep the last draw."""

    def __init__(self, size: tuple[int, int], cat_max_ratio: float = 0.75, ignore_index: int = 255, tries: int = 10):
        super().__init__()
        self.size, self.cat_max_ratio, self.ignore_index, self.tries = tuple(size), cat_max_ratio, ignore_index, tries

    def _draw(self, height: int, width: int) -> tuple[int, int, int, int]:
        crop_h, crop_w = min(self.size[0], height), min(self.size[1], width)
        top = int(torch.randint(0, height - crop_h + 1, ()))
        left = int(torch.randint(0, width - crop_w + 1, ()))
        return top, left, crop_h, crop_w

    def _balanced(self, mask: torch.Tensor, box: tuple[int, int, int, int]) -> bool:
        top, left, h, w = box
        values = mask.as_subclass(torch.Tensor)[..., top:top + h, left:left + w]
        _, counts = torch.unique(values[values != self.ignore_index], return_counts=True)
        return len(counts) > 1 and counts.max().item() / counts.sum().item() < self.cat_max_ratio

    def make_params(self, flat_inputs: list) -> dict:
        mask = _mask_of(flat_inputs)
        box = self._draw(*mask.shape[-2:])
        if self.cat_max_ratio < 1:
            for _ in range(self.tries):
                if self._balanced(mask, box):
                    break
                box = self._draw(*mask.shape[-2:])
        return dict(zip(("top", "left", "height", "width"), box))

    def transform(self, inpt, params: dict):
        return F.crop(inpt, **params)


class PadTo(v2.Transform):
    """Pad the bottom and right to at least `size` (H, W): images with `fill`, masks with `ignore_index` (mmseg's
    `Pad(size=crop_size, pad_val=0, seg_pad_val=255)`)."""

    def __init__(self, size: tuple[int, int], fill: float | tuple[float, ...] = 0.0, ignore_index: int = 255):
        super().__init__()
        self.size, self.fill, self.ignore_index = tuple(size), fill, ignore_index

    def make_params(self, flat_inputs: list) -> dict:
        height, width = _mask_of(flat_inputs).shape[-2:]
        return {"padding": [0, 0, max(self.size[1] - width, 0), max(self.size[0] - height, 0)]}

    def transform(self, inpt, params: dict):
        if not any(params["padding"]):
            return inpt
        fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else self.fill
        return F.pad(inpt, params["padding"], fill=list(fill) if isinstance(fill, tuple) else fill)


class PhotometricDistortion(v2.Transform):
    """mmseg's `PhotoMetricDistortion` on float [0, 1] images, each step with probability 1/2 in mmseg's order:
    brightness (add a delta in +-brightness_delta/255), contrast (multiply by a factor in contrast_range) first or
    last, saturation (scale HSV's S by a factor in saturation_range, clipped to 1), hue (shift by an integer in
    [-hue_delta, hue_delta) of OpenCV's 0..180 hue units, through v2's adjust_hue); clipped to [0, 1] after each.
    Unlike mmseg, the image is not rounded to uint8 between steps. Masks pass unchanged."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, brightness_delta: int = 32, contrast_range: tuple[float, float] = (0.5, 1.5),
                 saturation_range: tuple[float, float] = (0.5, 1.5), hue_delta: int = 18):
        super().__init__()
        self.brightness_delta, self.hue_delta = brightness_delta, hue_delta
        self.contrast_range, self.saturation_range = tuple(contrast_range), tuple(saturation_range)

    @staticmethod
    def _uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand(()).item()

    def make_params(self, flat_inputs: list) -> dict:
        coin = torch.rand(5) < 0.5
        delta = self.brightness_delta
        return {
            "brightness": self._uniform(-delta, delta) / 255 if coin[0] else None,
            "contrast_first": bool(coin[1]),
            "contrast": self._uniform(*self.contrast_range) if coin[2] else None,
            "saturation": self._uniform(*self.saturation_range) if coin[3] else None,
            "hue": int(torch.randint(-self.hue_delta, self.hue_delta, ())) / 180 if coin[4] else None,
        }

    @staticmethod
    def _saturate(image: torch.Tensor, factor: float) -> torch.Tensor:
        """HSV S *= factor (clipped to 1) with H and V kept: each channel c -> V - (V - c) * S'/S."""
        value = image.amax(dim=-3, keepdim=True)
        saturation = (value - image.amin(dim=-3, keepdim=True)) / value.clamp_min(1e-12)
        scale = (saturation * factor).clamp_max(1) / saturation.clamp_min(1e-12)
        return value - (value - image) * scale

    def transform(self, inpt, params: dict):
        image = inpt.as_subclass(torch.Tensor)
        if params["brightness"] is not None:
            image = (image + params["brightness"]).clamp(0, 1)
        if params["contrast_first"] and params["contrast"] is not None:
            image = (image * params["contrast"]).clamp(0, 1)
        if params["saturation"] is not None:
            image = self._saturate(image, params["saturation"]).clamp(0, 1)
        if params["hue"] is not None:
            image = F.adjust_hue(image, params["hue"])
        if not params["contrast_first"] and params["contrast"] is not None:
            image = (image * params["contrast"]).clamp(0, 1)
        return tv_tensors.wrap(image, like=inpt)


def segmentation_transforms(train: bool, *, crop_size: tuple[int, int] = (512, 512),
                            scale: tuple[int, int] = (2048, 512), ratio_range: tuple[float, float] = (0.5, 2.0),
                            cat_max_ratio: float = 0.75, hflip: float = 0.5, photometric: bool = True,
                            ignore_index: int = 255, fill: float | tuple[float, ...] = 0.0):
    """A v2 transform on (image float (3, H, W), mask (H, W)). train: mmseg 0.30's ADE20K training pipeline --
    `RandomRescale(scale, ratio_range)`, `CatRatioCrop(crop_size, cat_max_ratio)`, horizontal flip with probability
    `hflip`, `PhotometricDistortion` (if photometric), `PadTo(crop_size)` with `fill` / ignore_index -- so every sample
    is crop_size (H, W). eval: the identity (inference resizes itself; scoring is at the label's size).

    fill: the image padding in [0, 1] units (mmseg pads after normalising, i.e. with the normalisation mean; pass the
    mean here for that, the default 0 pads black).
    """
    if not train:
        return v2.Identity()
    steps = [RandomRescale(scale, ratio_range), CatRatioCrop(crop_size, cat_max_ratio, ignore_index)]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if photometric:
        steps.append(PhotometricDistortion())
    steps.append(PadTo(crop_size, fill, ignore_index))
    return v2.Compose(steps)
