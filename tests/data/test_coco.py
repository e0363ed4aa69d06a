"""CocoDetection on tiny hand-written COCO folders: what it returns (boxes, labels, polygon / RLE masks, crowd, empty
images), the v2 transforms, and every bad-input message."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from lsnet.data import CocoDetection, DatasetError, coco_splits, detection_collate, detection_transforms

W, H = 20, 16


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE written out by hand: run lengths of the column-major pixels, starting with zeros."""
    flat = mask.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def block(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def write_coco(root: Path, split: str, annotations: list[dict], *, images=None, categories=None,
               pixels: dict[int, np.ndarray] | None = None) -> Path:
    """root/annotations/instances_<split>.json and root/<split>/<id>.png (seeded random pixels unless given)."""
    images = images or [{"id": 1, "file_name": "1.png", "width": W, "height": H},
                        {"id": 2, "file_name": "2.png", "width": W, "height": H}]
    categories = categories or [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for image in images:
        array = (pixels or {}).get(image["id"])
        if array is None:
            array = rng.integers(0, 256, (image["height"], image["width"], 3), dtype=np.uint8)
        Image.fromarray(array).save(root / split / image["file_name"])
    dataset = {"images": images, "annotations": annotations, "categories": categories}
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(dataset))
    return path


def ann(ann_id: int, image_id: int, category_id: int, bbox, segmentation=None, iscrowd: int = 0) -> dict:
    entry = {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": iscrowd,
             "area": float(bbox[2] * bbox[3])}
    if segmentation is not None:
        entry["segmentation"] = segmentation
    return entry


def compressed(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


@pytest.fixture
def mixed(tmp_path) -> Path:
    """Image 1: a polygon (category 7), a compressed RLE (3), an uncompressed RLE (7), a crowd RLE (3).
    Image 2: no annotations."""
    annotations = [
        ann(1, 1, 7, [2, 3, 6, 6], [[2, 3, 8, 3, 8, 9, 2, 9]]),
        ann(2, 1, 3, [10, 1, 5, 4], compressed(block(1, 5, 10, 15))),
        ann(3, 1, 7, [0, 10, 20, 6], uncompressed_rle(block(10, 16, 0, 20))),
        ann(4, 1, 3, [12, 8, 4, 4], uncompressed_rle(block(8, 12, 12, 16)), iscrowd=1),
    ]
    write_coco(tmp_path, "train", annotations)
    return tmp_path


def test_boxes_labels_and_masks_from_polygons_and_both_rle_kinds(mixed):
    ds = CocoDetection(mixed, "train", masks=True)
    assert ds.classes == ("three", "seven") and ds.cat_ids == (3, 7), "labels follow sorted category ids"
    assert ds.image_ids == (1, 2) and len(ds) == 2
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, H, W)
    assert torch.equal(image, torch.from_numpy(np.array(Image.open(mixed / "train" / "1.png"))).permute(2, 0, 1))
    assert target["image_id"] == 1
    assert target["boxes"].tolist() == [[2, 3, 8, 9], [10, 1, 15, 5], [0, 10, 20, 16]]  # XYXY; crowd dropped
    assert tuple(target["boxes"].canvas_size) == (H, W)
    assert target["labels"].tolist() == [1, 0, 1] and target["labels"].dtype == torch.int64
    assert target["iscrowd"].tolist() == [0, 0, 0] and target["area"].tolist() == [36.0, 20.0, 120.0]
    masks = target["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (3, H, W)
    # polygon (2,3)-(8,9) in pycocotools' rasterisation covers the pixels x 2..7, y 3..8
    for got, want in zip(masks, [block(3, 9, 2, 8), block(1, 5, 10, 15), block(10, 16, 0, 20)]):
        assert np.array_equal(got.numpy(), want)


def test_crowd_stays_in_the_ground_truth_and_empty_images_are_valid(mixed):
    ds = CocoDetection(mixed, "train", masks=True, transforms=detection_transforms(True))
    assert [a["id"] for a in ds.coco.imgToAnns[1]] == [1, 2, 3, 4] and ds.coco.anns[4]["iscrowd"] == 1
    image, target = ds[1]  # image 2: no annotations
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,) and target["masks"].shape == (0, H, W)
    images, targets = detection_collate([ds[0], ds[1]])
    assert [t["image_id"] for t in targets] == [1, 2] and len(images) == 2 and len(targets[0]["boxes"]) == 3


def test_subset_cuts_images_and_ground_truth(mixed):
    ds = CocoDetection(mixed, "train", subset=1)
    assert len(ds) == 1 and ds.image_ids == (1,) and sorted(ds.coco.imgs) == [1]
    assert sorted(ds.coco.anns) == [1, 2, 3, 4] and len(ds.coco.dataset["annotations"]) == 4
    ds = CocoDetection(mixed, "train", subset=0)
    assert len(ds) == 0 and not ds.coco.anns


def test_transforms_flip_boxes_and_masks_and_end_in_float(mixed):
    plain = CocoDetection(mixed, "train", masks=True)
    flipped = CocoDetection(mixed, "train", masks=True, transforms=detection_transforms(True, hflip=1.0))
    (image, target), (image_f, target_f) = plain[0], flipped[0]
    assert torch.allclose(image_f, image.flip(-1).float() / 255)
    boxes = target["boxes"].clone()
    assert target_f["boxes"].tolist() == torch.stack([W - boxes[:, 2], boxes[:, 1], W - boxes[:, 0], boxes[:, 3]],
                                                     1).tolist()
    assert torch.equal(target_f["masks"], target["masks"].flip(-1))
    evaluation = CocoDetection(mixed, "train", transforms=detection_transforms(False))
    image_e, target_e = evaluation[0]
    assert torch.allclose(image_e, image.float() / 255) and target_e["boxes"].tolist() == target["boxes"].tolist()


def test_scale_jitter_zooms_about_the_centre_and_sanitises(tmp_path):
    # 32x32 image; zoom x2 about (16, 16): [12, 12, 20, 20] -> [8, 8, 24, 24]; [0, 0, 4, 4] leaves the canvas
    images = [{"id": 1, "file_name": "1.png", "width": 32, "height": 32}]
    mask = np.zeros((32, 32), np.uint8)
    mask[12:20, 12:20] = 1
    corner = np.zeros((32, 32), np.uint8)
    corner[:4, :4] = 1
    write_coco(tmp_path, "train", [ann(1, 1, 3, [12, 12, 8, 8], compressed(mask)),
                                   ann(2, 1, 7, [0, 0, 4, 4], compressed(corner))], images=images)
    ds = CocoDetection(tmp_path, "train", masks=True, transforms=detection_transforms(True, hflip=0.0,
                                                                                         scale_jitter=(2.0, 2.0)))
    _, target = ds[0]
    assert target["boxes"].tolist() == [[8, 8, 24, 24]]
    assert target["labels"].tolist() == [0] and target["area"].tolist() == [64.0] and len(target["iscrowd"]) == 1
    assert target["masks"].shape == (1, 32, 32) and target["masks"][0, 8:24, 8:24].all()
    assert target["masks"].sum() == 256
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        detection_transforms(True, scale_jitter=(1.5, 0.5))


def test_coco_splits_lists_the_annotation_files(mixed):
    write_coco(mixed, "val", [])
    assert coco_splits(mixed) == ["train", "val"]
    assert coco_splits(mixed / "nothing") == []


# ---- bad input: one line naming the file and the fix ----

def test_missing_annotation_file_names_the_splits_present(mixed):
    with pytest.raises(DatasetError, match=r"instances_val2017\.json.*splits present.*: train\);"):
        CocoDetection(mixed, "val2017")
    with pytest.raises(DatasetError, match=r"splits present .*: none\)"):
        CocoDetection(mixed / "elsewhere", "train")


def test_missing_image_folder(mixed):
    (mixed / "annotations" / "instances_val.json").write_text(json.dumps(
        {"images": [], "annotations": [], "categories": []}))
    with pytest.raises(DatasetError, match=r"no image folder .*val'.*put the val images in"):
        CocoDetection(mixed, "val")


def test_not_a_coco_file(tmp_path):
    path = write_coco(tmp_path, "train", [])
    path.write_text("{not json")
    with pytest.raises(DatasetError, match=r"cannot read COCO annotation file .*instances_train\.json"):
        CocoDetection(tmp_path, "train")
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match=r"not a COCO instances file: no list annotations, categories"):
        CocoDetection(tmp_path, "train")
    path.write_text("[]")
    with pytest.raises(DatasetError, match=r"not a COCO instances file: no list images, annotations, categories"):
        CocoDetection(tmp_path, "train")


def test_image_entry_without_size(tmp_path):
    write_coco(tmp_path, "train", [], images=[{"id": 4, "file_name": "4.png", "width": W}],
               pixels={4: np.zeros((H, W, 3), np.uint8)})
    with pytest.raises(DatasetError, match=r"instances_train\.json'?: image entry 4 has no height; every image needs"):
        CocoDetection(tmp_path, "train")


def test_unknown_category_id(tmp_path):
    write_coco(tmp_path, "train", [ann(5, 1, 3, [1, 1, 2, 2]), ann(6, 1, 99, [1, 1, 2, 2])])
    with pytest.raises(DatasetError, match=r"instances_train\.json.*annotation 6 has category_id 99, which is not in "
                                           r"'categories' \(ids \[3, 7\]\); add the category"):
        CocoDetection(tmp_path, "train")


def test_annotation_of_an_unknown_image(tmp_path):
    write_coco(tmp_path, "train", [ann(5, 42, 3, [1, 1, 2, 2])])
    with pytest.raises(DatasetError, match=r"annotation 5 has image_id 42, which is not in 'images'; add the image"):
        CocoDetection(tmp_path, "train")


def test_unreadable_and_missing_image_files_are_named(mixed):
    (mixed / "train" / "2.png").write_bytes(b"not a png")
    ds = CocoDetection(mixed, "train")
    with pytest.raises(DatasetError, match=r"unreadable image .*train/2\.png'.*image 2 of instances_train\.json"):
        ds[1]
    (mixed / "train" / "2.png").unlink()
    with pytest.raises(DatasetError, match=r"unreadable image .*train/2\.png'.*replace the file"):
        ds[1]


def test_image_size_differing_from_the_json(tmp_path):
    images = [{"id": 1, "file_name": "1.png", "width": W, "height": H}]
    write_coco(tmp_path, "train", [], images=images, pixels={1: np.zeros((H + 1, W, 3), np.uint8)})
    with pytest.raises(DatasetError, match=rf"1\.png' is {W}x{H + 1} \(WxH\) on disk but {W}x{H} in "
                                           r"instances_train\.json; fix the json's width/height"):
        CocoDetection(tmp_path, "train")[0]


def test_mask_without_segmentation(tmp_path):
    write_coco(tmp_path, "train", [ann(8, 1, 3, [1, 1, 2, 2])])
    assert CocoDetection(tmp_path, "train")[0][1]["boxes"].tolist() == [[1, 1, 3, 3]]
    with pytest.raises(DatasetError, match=r"annotation 8 has no segmentation; .*masks=False"):
        CocoDetection(tmp_path, "train", masks=True)[0]


BAD_BOXES = [ann(11, 1, 3, [15, 2, 8, 4]),      # x + w = 23 > 20 + tolerance
             ann(12, 1, 3, [4, 4, 0, 3]),       # zero width
             ann(13, 1, 7, [4, 4, 3, -1]),      # negative height
             ann(14, 2, 7, [-3, 0, 4, 4])]      # starts left of the image


def test_bad_boxes_are_skipped_with_one_count(tmp_path):
    good = [ann(10, 1, 3, [2, 2, 5, 5]), ann(15, 2, 7, [19.5, 15.5, 1, 1])]  # the second within BOX_TOLERANCE
    write_coco(tmp_path, "train", good + BAD_BOXES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDetection(tmp_path, "train")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "instances_train.json: skipped 4 annotations with boxes outside the image or of non-positive size " \
           "(first: id 11); fix them, or pass --strict" in messages[0]
    assert sorted(ds.coco.anns) == [10, 15], "skipped boxes leave the ground truth too"
    assert ds[0][1]["boxes"].tolist() == [[2, 2, 7, 7]]
    assert ds[1][1]["boxes"].tolist() == [[19.5, 15.5, 20, 16]], "clipped to the image"


def test_strict_fails_on_the_first_bad_box(tmp_path):
    write_coco(tmp_path, "train", [ann(10, 1, 3, [2, 2, 5, 5])] + BAD_BOXES)
    with pytest.raises(DatasetError, match=r"instances_train\.json'?: annotation 11 \(image 1\): bbox \[15, 2, 8, 4\] "
                                           r"lies outside the 20x16 image; fix or remove it, or run without --strict"):
        CocoDetection(tmp_path, "train", strict=True)
    write_coco(tmp_path, "train", [BAD_BOXES[1]])
    with pytest.raises(DatasetError, match=r"annotation 12 \(image 1\): bbox \[4, 4, 0, 3\] has non-positive size"):
        CocoDetection(tmp_path, "train", strict=True)


def test_loads_in_worker_processes(mixed):
    ds = CocoDetection(mixed, "train", masks=True, transforms=detection_transforms(True))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=detection_collate)
    (images, targets), = list(loader)
    assert [t["image_id"] for t in targets] == [1, 2] and [len(t["labels"]) for t in targets] == [3, 0]
    assert all(image.dtype == torch.float32 for image in images)
