"""Fashion-scenes: a COCO-format detection / instance-segmentation set of canvases holding Fashion-MNIST items.

    lsnet data fashion-scenes --out ~/data/fashion-scenes --train 3000 --val 500 --test 500
    build_fashion_scenes(Path("scenes"), num_train=3000, num_val=500, num_test=500, seed=0)

    out/annotations/instances_{train,val,test}.json   COCO instances: boxes, RLE masks, 10 categories (ids 1..10)
    out/{train,val,test}/000001.png                   the scenes: 8-bit grey PNGs (CocoDetection reads them as RGB)
    out/labels/{train,val,test}/000001.png            semantic labels of the same scenes: 0 background, 1..10 class
    out/labels/classes.txt                            their names in label order: background + the 10 classes
                                                      (the pairs layout lsnet.data.segmentation reads)

A scene is a `size` x `size` black canvas (Fashion-MNIST's own background) with `min_items`..`max_items` items,
each a Fashion-MNIST image resized (bilinear) to a random square side in [MIN_SCALE, MAX_SCALE] px, at a random
position inside the canvas, pasted in order (later items on top). An item's pixels are those above `ITEM_THRESHOLD`;
its instance mask is what stays visible after the later items, its box is the mask's extent, and an item hidden
completely is left out. Train scenes use only Fashion-MNIST's train images, val and test scenes only its test images
(the test images are split in two disjoint halves, one for val, one for test); every annotation records its source
image in `fashion_split` / `fashion_index`. Each split draws from its own seeded generator (numpy's frozen legacy
one), so a seed gives byte-identical files, and changing --train leaves val and test as they were.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DatasetError
from .idx import CLASSES, FashionMNIST, find_fashion_mnist

MIN_SCALE, MAX_SCALE = 24, 112  # item side in px
ITEM_THRESHOLD = 10  # grey value above which a resized Fashion-MNIST pixel belongs to the item
SPLITS = ("train", "val", "test")
PNG_LEVEL = 1  # zlib level: ~2x faster than PIL's default 6 for ~10% larger files
_SOURCE = {"train": "train", "val": "test", "test": "test"}  # Fashion-MNIST split each scene split draws from


class _ItemPool:
    """Fashion-MNIST item indices handed out in a seeded random order, re-shuffled after each full pass."""

    def __init__(self, indices: np.ndarray, rng: np.random.RandomState):
        self.indices, self.rng, self.order = indices, rng, np.empty(0, np.int64)

    def take(self, n: int) -> np.ndarray:
        while len(self.order) < n:
            self.order = np.concatenate([self.order, self.indices[self.rng.permutation(len(self.indices))]])
        taken, self.order = self.order[:n], self.order[n:]
        return taken


def _source_indices(num_test_images: int, seed: int) -> dict[str, np.ndarray | None]:
    """Which Fashion-MNIST images each split may use: train all of train; val / test disjoint halves of test."""
    order = np.random.RandomState([seed, len(SPLITS)]).permutation(num_test_images)
    half = num_test_images // 2
    return {"train": None, "val": np.sort(order[:half]), "test": np.sort(order[half:])}


def _paste_scene(rng: np.random.RandomState, pool: _ItemPool, images: np.ndarray, size: int, min_items: int,
                 max_items: int):
    """One scene: canvas (size, size) uint8, owner (size, size) int16 (index of the visible item, -1 background),
    the Fashion-MNIST indices of its items in paste order."""
    canvas = np.zeros((size, size), np.uint8)
    owner = np.full((size, size), -1, np.int16)
    items = pool.take(rng.randint(min_items, max_items + 1))
    max_scale = min(MAX_SCALE, size)
    for k, index in enumerate(items):
        side = rng.randint(MIN_SCALE, max_scale + 1)
        y, x = rng.randint(0, size - side + 1, size=2)
        item = np.asarray(Image.fromarray(images[index]).resize((side, side), Image.BILINEAR))
        on = item > ITEM_THRESHOLD
        canvas[y:y + side, x:x + side][on] = item[on]
        owner[y:y + side, x:x + side][on] = k
    return canvas, owner, items


def _annotations(owner: np.ndarray, items: np.ndarray, labels: np.ndarray, image_id: int, first_id: int,
                 source: str) -> list[dict]:
    """COCO annotations of a scene's visible items: RLE mask, box = the mask's extent, area = its pixel count."""
    from pycocotools import mask as mask_utils

    # (N, W, H) C-order is (H, W, N) Fortran order: the layout pycocotools encodes, all items in one call
    masks = np.ascontiguousarray(owner.T)[None] == np.arange(len(items), dtype=owner.dtype)[:, None, None]
    rles = mask_utils.encode(masks.view(np.uint8).transpose(2, 1, 0))
    anns = []
    for index, rle, box, area in zip(items, rles, mask_utils.toBbox(rles), mask_utils.area(rles)):
        if area == 0:  # hidden by later items
            continue
        anns.append({
            "id": first_id + len(anns), "image_id": image_id, "category_id": int(labels[index]) + 1,
            "bbox": [int(v) for v in box], "area": int(area), "iscrowd": 0,
            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "fashion_split": source, "fashion_index": int(index),
        })
    return anns


def _check_arguments(counts: dict[str, int], size: int, min_items: int, max_items: int, seed: int) -> None:
    if any(n < 0 for n in counts.values()) or not any(counts.values()):
        raise ValueError(f"fashion-scenes: scene counts must be >= 0 and not all 0; got {counts}")
    if size < MIN_SCALE:
        raise ValueError(f"fashion-scenes: --size {size} is smaller than the smallest item ({MIN_SCALE} px); "
                         f"use --size >= {MIN_SCALE}")
    if not 0 <= min_items <= max_items:
        raise ValueError(f"fashion-scenes: need 0 <= --min-items <= --max-items; got {min_items} and {max_items}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"fashion-scenes: --seed must be in 0..2**32-1; got {seed}")


def _read_source(fashion_dir: str | Path | None, split: str) -> FashionMNIST:
    try:
        find_fashion_mnist(fashion_dir, split)
    except DatasetError as err:  # its fix names train's flags; say this command's
        where = str(err).split("; ")[0]
        raise DatasetError(f"{where}; pass --fashion-dir (or set $LSNET_FASHION_MNIST) pointing at the four "
                           "*-ubyte[.gz] files, or `sudo apt-get install dataset-fashion-mnist`") from None
    return FashionMNIST(fashion_dir, split=split)


def build_fashion_scenes(out: str | Path, *, fashion_dir: str | Path | None = None, num_train: int = 3000,
                         num_val: int = 500, num_test: int = 500, size: int = 256, min_items: int = 1,
                         max_items: int = 8, seed: int = 0, overwrite: bool = False) -> dict:
    """Write the Fashion-scenes splits (a count of 0 leaves that split out) under `out` (see the module docstring).

    fashion_dir: the Fashion-MNIST IDX files (None: the usual search, $LSNET_FASHION_MNIST, Debian's package, ...).
    overwrite: replace the splits an earlier build wrote there (otherwise an existing split is an error).
    Returns `{"root": out, "splits": {split: {"images": n, "annotations": m}}}`.
    """
    counts = {"train": num_train, "val": num_val, "test": num_test}
    _check_arguments(counts, size, min_items, max_items, seed)
    out = Path(out).expanduser()
    splits = [split for split in SPLITS if counts[split]]
    for split in splits:
        ann_file = out / "annotations" / f"instances_{split}.json"
        if ann_file.exists() and not overwrite:
            raise DatasetError(f"{str(ann_file)!r} exists: {str(out)!r} already holds Fashion-scenes; pass "
                               "--overwrite to replace it, or a new --out folder")
    sources = {name: _read_source(fashion_dir, name) for name in sorted({_SOURCE[s] for s in splits})}
    allowed = _source_indices(len(sources["test"]), seed) if "test" in sources else {}
    categories = [{"id": i + 1, "name": name, "supercategory": "fashion"} for i, name in enumerate(CLASSES)]
    summary = {"root": out, "splits": {}}
    for split in splits:
        source = sources[_SOURCE[split]]
        rng = np.random.RandomState([seed, SPLITS.index(split)])
        indices = allowed.get(split)
        pool = _ItemPool(np.arange(len(source)) if indices is None else indices, rng)
        image_dir, label_dir = out / split, out / "labels" / split
        for folder in (image_dir, label_dir):
            if overwrite and folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, counts[split] + 1):
            canvas, owner, items = _paste_scene(rng, pool, source.images, size, min_items, max_items)
            file_name = f"{image_id:06d}.png"
            Image.fromarray(canvas).save(image_dir / file_name, compress_level=PNG_LEVEL)
            semantic = np.append(source.targets[items] + 1, 0).astype(np.uint8)[owner]  # owner -1: the 0 appended
            Image.fromarray(semantic).save(label_dir / file_name, compress_level=PNG_LEVEL)
            images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
            annotations += _annotations(owner, items, source.targets, image_id, len(annotations) + 1, _SOURCE[split])
        dataset = {
            "info": {"description": f"Fashion-scenes {split}: Fashion-MNIST {_SOURCE[split]} items on {size}x{size} "
                                    "canvases", "seed": seed, "size": size, "min_items": min_items,
                     "max_items": max_items},
            "licenses": [], "images": images, "annotations": annotations, "categories": categories,
        }
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(dataset))
        summary["splits"][split] = {"images": len(images), "annotations": len(annotations)}
    (out / "labels" / "classes.txt").write_text("".join(f"{name}\n" for name in ("background", *CLASSES)))
    return summary
