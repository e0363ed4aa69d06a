"""Fashion-scenes from the real Fashion-MNIST: deterministic bytes, train / test sources kept apart, masks that are the
visible pixels, boxes that are the masks' extents, the CLI, and the speed the issue asks for."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from lsnet.cli.main import main
from lsnet.data import CocoDetection, DatasetError, FashionMNIST, build_fashion_scenes
from lsnet.data.fashion_scenes import ITEM_THRESHOLD, MAX_SCALE, SPLITS

COUNTS = dict(num_train=30, num_val=15, num_test=15)


@pytest.fixture(scope="module")
def scenes(real_fashion_mnist, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes")
    summary = build_fashion_scenes(out, fashion_dir=real_fashion_mnist, seed=3, **COUNTS)
    assert summary["splits"]["val"]["images"] == 15
    return out


def load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(scenes, real_fashion_mnist, tmp_path):
    build_fashion_scenes(tmp_path / "again", fashion_dir=real_fashion_mnist, seed=3, **COUNTS)
    first, again = files(scenes), files(tmp_path / "again")
    assert len(first) == 4 + 2 * sum(COUNTS.values())  # 3 jsons, classes.txt, a scene and a label PNG per image
    assert first.keys() == again.keys() and all(first[k] == again[k] for k in first)
    build_fashion_scenes(tmp_path / "other", fashion_dir=real_fashion_mnist, seed=4, **COUNTS)
    assert files(tmp_path / "other")["annotations/instances_train.json"] != first["annotations/instances_train.json"]


def test_more_train_scenes_leave_val_and_test_unchanged(scenes, real_fashion_mnist, tmp_path):
    build_fashion_scenes(tmp_path, fashion_dir=real_fashion_mnist, seed=3, **dict(COUNTS, num_train=5))
    for split in ("val", "test"):
        assert load(tmp_path, split) == load(scenes, split)


def test_train_items_come_from_train_and_val_test_from_disjoint_test_items(scenes, real_fashion_mnist):
    labels = {split: FashionMNIST(real_fashion_mnist, split=split).targets for split in ("train", "test")}
    used = {}
    for split, source in (("train", "train"), ("val", "test"), ("test", "test")):
        anns = load(scenes, split)["annotations"]
        assert anns and {a["fashion_split"] for a in anns} == {source}
        assert all(a["category_id"] == labels[source][a["fashion_index"]] + 1 for a in anns)
        used[split] = {a["fashion_index"] for a in anns}
    assert not used["val"] & used["test"], "val and test scenes share Fashion-MNIST test items"


@pytest.mark.parametrize("split", SPLITS)
def test_masks_are_the_visible_pixels_and_boxes_their_extents(scenes, split):
    dataset = load(scenes, split)
    assert [c["name"] for c in dataset["categories"]] == list(FashionMNIST.classes)
    assert (scenes / "labels" / "classes.txt").read_text().splitlines() == ["background", *FashionMNIST.classes]
    by_image = {image["id"]: [] for image in dataset["images"]}
    for a in dataset["annotations"]:
        by_image[a["image_id"]].append(a)
    for image in dataset["images"]:
        scene = np.array(Image.open(scenes / split / image["file_name"]))
        semantic = np.array(Image.open(scenes / "labels" / split / image["file_name"]))
        assert scene.shape == semantic.shape == (256, 256) and scene.dtype == np.uint8
        anns = by_image[image["id"]]
        assert 1 <= len(anns) <= 8
        masks = np.stack([mask_utils.decode(a["segmentation"]) for a in anns]).astype(np.int64)
        assert masks.sum(0).max() == 1, "instance masks overlap: a pixel belongs to the item on top only"
        assert np.array_equal(masks.sum(0) == 1, scene > 0), "masks must cover exactly the item pixels"
        assert scene[scene > 0].min() > ITEM_THRESHOLD
        expected = (masks * np.array([a["category_id"] for a in anns])[:, None, None]).sum(0)
        assert np.array_equal(semantic, expected), "semantic labels = union of instance masks by class"
        for a, mask in zip(anns, masks):
            rows, cols = np.nonzero(mask)
            x0, y0 = cols.min(), rows.min()
            assert a["bbox"] == [x0, y0, cols.max() + 1 - x0, rows.max() + 1 - y0] and a["area"] == mask.sum()
            assert max(a["bbox"][2:]) <= MAX_SCALE and a["iscrowd"] == 0


def test_coco_detection_reads_the_build_strictly(scenes):
    ds = CocoDetection(scenes, "val", masks=True, strict=True)
    assert len(ds) == 15 and ds.classes == FashionMNIST.classes
    image, target = ds[0]
    assert image.shape == (3, 256, 256) and (image[0] == image[1]).all()
    anns = ds.coco.imgToAnns[ds.image_ids[0]]
    assert target["labels"].tolist() == [a["category_id"] - 1 for a in anns]
    assert np.array_equal(target["masks"].numpy(), np.stack([mask_utils.decode(a["segmentation"]) for a in anns]))


def test_cli_builds_and_refuses_to_overwrite(real_fashion_mnist, tmp_path, capsys):
    args = ["data", "fashion-scenes", "--out", str(tmp_path), "--fashion-dir", str(real_fashion_mnist),
            "--train", "4", "--val", "2", "--test", "0", "--size", "64", "--max-items", "3", "--seed", "1"]
    assert main(args) == 0
    assert "train: 4 scenes" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "annotations").iterdir()) == ["instances_train.json",
                                                                            "instances_val.json"]
    assert Image.open(tmp_path / "train" / "000004.png").size == (64, 64)
    assert main(args) == 1
    assert "already holds Fashion-scenes; pass --overwrite" in capsys.readouterr().err
    assert main([*args[:6], "--train", "2", "--val", "0", "--test", "0", "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["000001.png", "000002.png"]
    assert main(["data", "fashion-scenes", "--out", str(tmp_path / "new"), "--fashion-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: Fashion-MNIST test files") and "pass --fashion-dir" in err
    with pytest.raises(SystemExit):
        main(["data", "fashion-scenes", "--out", str(tmp_path), "--train", "-1"])
    assert "argument --train: expected an integer >= 0, got '-1'" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_train=0, num_val=0, num_test=0), "not all 0"),
    (dict(size=16), "--size 16 is smaller than the smallest item"),
    (dict(min_items=5, max_items=2), "need 0 <= --min-items <= --max-items; got 5 and 2"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_fashion_scenes(tmp_path, **kwargs)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError, match="Fashion-MNIST train files .* not found under .*; pass --fashion-dir"):
        build_fashion_scenes(tmp_path / "out", fashion_dir=tmp_path, num_train=1, num_val=0, num_test=0)


def test_two_thousand_scenes_build_in_seconds(real_fashion_mnist, tmp_path):
    start = time.perf_counter()
    summary = build_fashion_scenes(tmp_path, fashion_dir=real_fashion_mnist, num_train=1500, num_val=250,
                                   num_test=250)
    seconds = time.perf_counter() - start
    assert sum(s["images"] for s in summary["splits"].values()) == 2000
    assert seconds < 60, f"2000 scenes took {seconds:.1f} s"


def test_scenes_without_items_are_empty_images(real_fashion_mnist, tmp_path):
    build_fashion_scenes(tmp_path, fashion_dir=real_fashion_mnist, num_train=0, num_val=12, num_test=0, size=64,
                         min_items=0, max_items=1)
    dataset = load(tmp_path, "val")
    with_items = {a["image_id"] for a in dataset["annotations"]}
    assert 0 < len(with_items) < 12, "seed 0 draws both empty and non-empty scenes"
    for image in dataset["images"]:
        scene = np.array(Image.open(tmp_path / "val" / image["file_name"]))
        semantic = np.array(Image.open(tmp_path / "labels" / "val" / image["file_name"]))
        assert (scene.any() and semantic.any()) == (image["id"] in with_items)
    assert len(CocoDetection(tmp_path, "val")) == 12
