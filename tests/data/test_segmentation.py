"""Semantic segmentation data: the ADE20K layout's reduce_zero_label by values, the pairs layout on a real
Fashion-scenes build, every bad-input message, and mmseg's training pipeline (crop size, image / mask alignment
through resize / crop / flip, ignore padding, nearest labels, the category-ratio cap, the photometric steps)."""
from __future__ import annotations

import colorsys
import math
import pickle
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from lsnet.data import DatasetError, FashionMNIST, build_fashion_scenes
from lsnet.data.segmentation import (
    ADE20K_CLASSES,
    CatRatioCrop,
    PhotometricDistortion,
    RandomRescale,
    SegmentationFolder,
    segmentation_collate,
    segmentation_splits,
    segmentation_transforms,
)


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array), mode).save(path)


def pairs_folder(root, split="train", n=2, size=(6, 8), classes=("background", "cat", "dog")):
    """n good pairs: grey images i*10, labels cycling through the classes and 255."""
    for folder in (root / split, root / "labels" / split):
        folder.mkdir(parents=True, exist_ok=True)
    for folder in (root / split, root / "labels" / split):
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        save(root / split / f"{i:03d}.png", np.full((*size, 3), i * 10, np.uint8))
        values = np.resize(np.array([*range(len(classes)), 255], np.uint8), size[0] * size[1]).reshape(size)
        save(root / "labels" / split / f"{i:03d}.png", values)
    (root / "labels" / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_ade20k_layout_reduces_the_zero_label(tmp_path):
    raw = np.array([[0, 1, 2, 150], [255, 7, 0, 149]], np.uint8)
    for split in ("training", "validation"):
        save(tmp_path / "images" / split / "ADE_000001.jpg", np.full((2, 4, 3), 128, np.uint8))
        save(tmp_path / "annotations" / split / "ADE_000001.png", raw)
    assert segmentation_splits(tmp_path) == ["training", "validation"]
    data = SegmentationFolder(tmp_path, "val", strict=True)  # val -> validation, as ImageFolder's aliases
    assert data.layout == "ade20k" and data.num_classes == 150 and data.classes == ADE20K_CLASSES
    assert (data.classes[0], data.classes[7], data.classes[149]) == ("wall", "bed ", "flag") and data.skipped == {}
    image, mask, meta = data[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.float32 and image.shape == (3, 2, 4)
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64
    assert mask.tolist() == [[255, 0, 1, 149], [255, 6, 255, 148]]
    assert meta == {"file": str(tmp_path / "images" / "validation" / "ADE_000001.jpg"),
                    "label_file": str(tmp_path / "annotations" / "validation" / "ADE_000001.png"),
                    "index": 0, "size": (2, 4)}
    other = SegmentationFolder(tmp_path, "training", ignore_index=-1)
    assert other.load_mask(0).tolist() == [[-1, 0, 1, 149], [-1, 6, -1, 148]]
    with pytest.raises(ValueError, match="ignore_index 5 is one of the 150 classes"):
        SegmentationFolder(tmp_path, "training", ignore_index=5)


def test_pairs_layout_values_ignore_and_subset(tmp_path):
    pairs_folder(tmp_path, n=3)
    data = SegmentationFolder(tmp_path, "train", subset=2)
    assert data.layout == "pairs" and data.classes == ("background", "cat", "dog") and len(data) == 2
    image, mask, meta = data[1]
    assert torch.equal(image, torch.full((3, 6, 8), 10 / 255)) and meta["size"] == (6, 8)
    assert mask.flatten()[:5].tolist() == [0, 1, 2, 255, 0]
    assert SegmentationFolder(tmp_path, "train", ignore_index=3).load_mask(0).flatten()[:4].tolist() == [0, 1, 2, 3]
    assert segmentation_splits(tmp_path) == ["train"] and segmentation_splits(tmp_path / "train") == []


def test_pairs_layout_reads_a_fashion_scenes_build(real_fashion_mnist, tmp_path):
    build_fashion_scenes(tmp_path, fashion_dir=real_fashion_mnist, num_train=2, num_val=3, num_test=0, size=64,
                         seed=1)
    assert segmentation_splits(tmp_path) == ["train", "val"]  # annotations/ (COCO json) is no split
    data = SegmentationFolder(tmp_path, "val", strict=True)
    assert data.layout == "pairs" and data.classes == ("background", *FashionMNIST.classes) and data.num_classes == 11
    assert len(data) == 3 and data.skipped == {}
    for i in range(3):
        image, mask, meta = data[i]
        scene = np.array(Image.open(tmp_path / "val" / f"{i + 1:06d}.png"), np.float32) / 255
        label = np.array(Image.open(tmp_path / "labels" / "val" / f"{i + 1:06d}.png"))
        assert np.array_equal(image.numpy(), np.stack([scene] * 3)) and np.array_equal(mask.numpy(), label)
        assert mask.max() <= 10 and (mask > 0).any() and meta["file"].endswith(f"val/{i + 1:06d}.png")
    images, masks, metas = segmentation_collate([data[0], data[1]])
    assert [m["index"] for m in metas] == [0, 1] and torch.equal(masks[1], data[1][1]) and len(images) == 2
    train = SegmentationFolder(tmp_path, "train", transforms=pickle.loads(pickle.dumps(
        segmentation_transforms(True, crop_size=(48, 40), scale=(128, 64)))))  # loader workers pickle it
    images, masks, metas = next(iter(torch.utils.data.DataLoader(train, batch_size=2, collate_fn=segmentation_collate)))
    assert torch.stack(images).shape == (2, 3, 48, 40) and torch.stack(masks).shape == (2, 48, 40)
    assert set(torch.stack(masks).unique().tolist()) <= set(range(11)) | {255} and metas[1]["size"] == (64, 64)


def _bad_pair(root, case):
    """A third pair in a good pairs folder that is bad in one way; returns the bad file."""
    image, label = root / "train" / "bad.png", root / "labels" / "train" / "bad.png"
    save(image, np.zeros((6, 8, 3), np.uint8))
    if case == "size mismatch":
        save(label, np.zeros((6, 9), np.uint8))
    elif case == "label out of range":
        save(label, np.array([[0, 2, 3, 255]] * 6, np.uint8).repeat(2, 1))
    elif case == "colour label":
        save(label, np.zeros((6, 8, 3), np.uint8))
    elif case == "missing label":
        return label
    elif case == "unreadable image":
        image.write_bytes(b"not a png")
        save(label, np.zeros((6, 8), np.uint8))
        return image
    elif case == "unreadable label":
        label.write_bytes(b"not a png")
    return label


@pytest.mark.parametrize("case, message", [
    ("size mismatch", r"label '.*bad.png' is 9x6 \(WxH\) but its image '.*bad.png' is 8x6; write the label at the "
                      r"image's size"),
    ("label out of range", r"label '.*bad.png' has values \[3\] above the 3 classes \(0..2, 255 = ignore\); fix the "
                           "label or the class list"),
    ("colour label", r"label '.*bad.png' is a mode-RGB image; labels must be single-channel class indices .* map its "
                     "colours to class indices"),
    ("missing label", r"no label PNG '.*labels/train/bad.png' for image '.*train/bad.png'; add it, or remove the "
                      "image"),
    ("unreadable image", r"unreadable image '.*train/bad.png' \(.*\); replace it, or remove it and its label"),
    ("unreadable label", r"unreadable label '.*labels/train/bad.png' \(.*\); replace it, or remove it and its image"),
])
def test_bad_pairs_are_skipped_with_a_count_or_fail_when_strict(tmp_path, case, message):
    bad = _bad_pair(pairs_folder(tmp_path), case)
    with pytest.warns(UserWarning, match=f"skipped 1 image/label pairs .*{case}.*; fix them, or pass --strict"):
        data = SegmentationFolder(tmp_path, "train")
    assert len(data) == 2 and data.skipped == {case: 1} and all(p.stem != "bad" for pair in data.samples
                                                                 for p in pair)
    with pytest.raises(DatasetError, match=message + "; or run without --strict to skip such pairs") as err:
        SegmentationFolder(tmp_path, "train", strict=True)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)


def test_ade20k_values_above_150_are_bad(tmp_path):
    save(tmp_path / "images" / "training" / "a.jpg", np.zeros((2, 3, 3), np.uint8))
    save(tmp_path / "annotations" / "training" / "a.png", np.array([[0, 150, 151], [255, 200, 1]], np.uint8))
    with pytest.raises(DatasetError, match=r"has values \[151, 200\] above the 150 classes \(1..150, 255 = ignore"):
        SegmentationFolder(tmp_path, "training", strict=True)


def test_palette_and_16_bit_labels_are_class_indices(tmp_path):
    pairs_folder(tmp_path, n=0)
    save(tmp_path / "train" / "p.png", np.zeros((2, 2, 3), np.uint8))
    palette = Image.fromarray(np.array([[0, 1], [2, 255]], np.uint8), "P")
    palette.putpalette([200, 10, 10] * 256)
    palette.save(tmp_path / "labels" / "train" / "p.png")
    save(tmp_path / "train" / "q.png", np.zeros((2, 2, 3), np.uint8))
    Image.fromarray(np.array([[2, 1], [0, 255]], np.uint16)).save(tmp_path / "labels" / "train" / "q.png")
    data = SegmentationFolder(tmp_path, "train", strict=True)
    assert data[0][1].tolist() == [[0, 1], [2, 255]] and data[1][1].tolist() == [[2, 1], [0, 255]]


def test_truncated_image_fails_on_reading_with_the_file(tmp_path):
    pairs_folder(tmp_path, n=1, size=(64, 64))
    image = tmp_path / "train" / "000.png"
    save(image, np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    image.write_bytes(image.read_bytes()[:2000])  # the header still reads
    data = SegmentationFolder(tmp_path, "train", strict=True)
    with pytest.raises(DatasetError, match=f"unreadable file '{image}' .*; replace it, or remove the pair"):
        data[0]


@pytest.mark.parametrize("make, message", [
    (lambda root: root, "is no segmentation folder: it needs images/<split>/ \\+ annotations/<split>/ \\(ADE20K\\)"),
    (lambda root: pairs_folder(root), r"no 'val' split with labels under .* \(pairs layout; splits present: train\); "
                                      "pass one of them"),
    (lambda root: (pairs_folder(root), (root / "labels" / "classes.txt").unlink()),
     r"no class list '.*classes.txt'; write one class name per line, line i naming label value i"),
    (lambda root: (pairs_folder(root), (root / "labels" / "classes.txt").write_text("a\n\nb\n")),
     r"class list '.*classes.txt' has empty line\(s\) \[2\]; write one class name per line"),
    (lambda root: (pairs_folder(root), (root / "labels" / "classes.txt").write_text("\n\n")),
     r"class list '.*classes.txt' is empty; write one class name per line"),
    (lambda root: (pairs_folder(root), (root / "labels" / "classes.txt").write_text("c\n" * 256)),
     r"class list '.*classes.txt' names 256 classes, but label value 255 means 'ignore'; use at most 255 classes"),
    (lambda root: (pairs_folder(root, n=0), save(root / "train" / "x.png", np.zeros((2, 2), np.uint8))),
     r"no usable image/label pairs in '.*train' and '.*labels/train' \(1 images, skipped: {'missing label': 1}\); put"),
])
def test_bad_folders(tmp_path, make, message):
    make(tmp_path)
    split = "val" if "'val'" in message else "train"
    warns = pytest.warns(UserWarning) if "skipped: {" in message else nullcontext()
    with pytest.raises(DatasetError, match=message) as err, warns:
        SegmentationFolder(tmp_path, split)
    assert "\n" not in str(err.value)


# --- transforms ---------------------------------------------------------------------------------------------------

CODES = torch.tensor([[0.1, 0.9, 0.3], [0.5, 0.2, 0.8], [0.9, 0.6, 0.1], [0.3, 0.4, 0.6], [0.7, 0.1, 0.5]])


def blocks(height, width, block, seed):
    """A label map of `block`-px squares of random labels 0..4 (one corner 255) and an image whose colour at each
    pixel is its label's code (ignored pixels black)."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.randint(0, 5, (height // block + 1, width // block + 1), generator=g)
    grid[0, 0] = 255
    mask = grid.repeat_interleave(block, 0).repeat_interleave(block, 1)[:height, :width]
    image = torch.where(mask == 255, 0.0, CODES[mask.clamp_max(4)].permute(2, 0, 1))
    return tv_tensors.Image(image.float()), tv_tensors.Mask(mask)


def interior(mask, radius, ignore=255):
    """Pixels whose (2 radius + 1)^2 neighbourhood lies in the crop and holds one label that is not ignore (the
    bilinear image blends the two sides of a label edge over one source pixel, `factor` output pixels)."""
    m = torch.nn.functional.pad(mask.float()[None, None], (radius,) * 4, value=-2.0)
    hi = torch.nn.functional.max_pool2d(m, 2 * radius + 1, 1)[0, 0]
    lo = -torch.nn.functional.max_pool2d(-m, 2 * radius + 1, 1)[0, 0]
    return (hi == lo) & (mask != ignore)


@pytest.mark.parametrize("size, ratio", [((90, 130), 0.5), ((90, 130), 1.0), ((300, 200), 0.6), ((40, 70), 1.5),
                                         ((40, 70), 2.0)])
@pytest.mark.parametrize("seed", range(3))
def test_training_crops_are_crop_size_with_aligned_masks(size, ratio, seed):
    factor = min(256 * ratio / max(size), 96 * ratio / min(size))  # mmseg's keep-ratio rescale
    image, mask = blocks(*size, block=max(16, round(20 / factor)), seed=seed)
    transform = segmentation_transforms(True, crop_size=(96, 96), scale=(256, 96), ratio_range=(ratio, ratio),
                                        photometric=False)
    torch.manual_seed(seed)
    out_image, out_mask = transform(image, mask)
    assert out_image.shape == (3, 96, 96) and out_mask.shape == (96, 96) and out_mask.dtype == torch.int64
    assert isinstance(out_image, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask)
    assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist()), "nearest resampling makes no new labels"
    inside = interior(out_mask, radius=math.ceil(factor / 2) + 1)
    assert inside.sum() > 500
    expected = CODES[out_mask.clamp_max(4)].permute(2, 0, 1)
    assert torch.allclose(out_image[:, inside], expected[:, inside], atol=1e-5), "image and mask moved apart"


def test_flip_mirrors_image_and_mask_together():
    image, mask = blocks(120, 160, block=10, seed=1)
    outs = []
    for hflip in (0.0, 1.0):
        torch.manual_seed(3)
        outs.append(segmentation_transforms(True, crop_size=(64, 64), scale=(200, 100), hflip=hflip,
                                            photometric=False)(image, mask))
    (image0, mask0), (image1, mask1) = outs
    assert torch.equal(image1, image0.flip(-1)) and torch.equal(mask1, mask0.flip(-1)) and not torch.equal(mask0,
                                                                                                        mask1)


def test_small_images_are_padded_with_zero_and_ignore():
    image, mask = blocks(40, 50, block=10, seed=2)
    transform = segmentation_transforms(True, crop_size=(64, 72), scale=(50, 40), ratio_range=(1.0, 1.0), hflip=0.0,
                                        photometric=False, ignore_index=255)
    out_image, out_mask = transform(image, mask)
    assert out_image.shape == (3, 64, 72)
    assert torch.equal(out_mask[:40, :50], mask) and torch.equal(out_image[:, :40, :50], image)
    assert (out_mask[40:] == 255).all() and (out_mask[:, 50:] == 255).all()
    assert (out_image[:, 40:] == 0).all() and (out_image[:, :, 50:] == 0).all()
    grey = segmentation_transforms(True, crop_size=(64, 72), scale=(50, 40), ratio_range=(1.0, 1.0), hflip=0.0,
                                   photometric=False, ignore_index=-1, fill=(0.5, 0.25, 0.75))
    out_image, out_mask = grey(image, mask)
    assert (out_mask[40:] == -1).all() and torch.equal(out_image[:, 50, 60], torch.tensor([0.5, 0.25, 0.75]))


@pytest.mark.parametrize("ratio, size", [(1.0, (512, 683)), (0.5, (256, 342)), (2.0, (1024, 1366)),
                                         (0.25, (128, 171))])
def test_rescale_follows_mmseg_keep_ratio_rule(ratio, size):
    # mmcv.imrescale to (2048r, 512r): factor min(2048r / 683, 512r / 512) = r, sides int(side * r + 0.5)
    mask = tv_tensors.Mask(torch.zeros(512, 683, dtype=torch.int64))
    assert RandomRescale((2048, 512), (ratio, ratio))(mask).shape == size
    tall = tv_tensors.Mask(torch.zeros(2000, 100, dtype=torch.int64))  # long side binds: 2048 / 2000
    assert RandomRescale((2048, 512), (1.0, 1.0))(tall).shape == (2048, int(100 * 2048 / 2000 + 0.5))


def test_nearest_labels_keep_sparse_values():
    mask = tv_tensors.Mask(torch.tensor([[0, 10], [20, 30]]).repeat_interleave(3, 0).repeat_interleave(3, 1))
    for ratio in (0.37, 1.9, 3.3):
        out = RandomRescale((6, 6), (ratio, ratio))(mask)
        assert set(out.unique().tolist()) == {0, 10, 20, 30}


def _balanced(mask, top, left, size, ratio, ignore=255):
    crop = mask[top:top + size, left:left + size].flatten()
    counts = np.bincount(crop[crop != ignore].numpy())
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < ratio


def test_category_ratio_cap_redraws_up_to_ten_times():
    # label 0 on the right half, ignore on the bottom-left, a 1/2 checkerboard in the top-left 24x24 corner
    mask = torch.zeros(60, 60, dtype=torch.int64)
    mask[30:, :30] = 255
    mask[:24, :24] = 1 + (torch.arange(24)[:, None] + torch.arange(24)) % 2
    size, offsets = 20, range(60 - 20 + 1)
    p = np.mean([_balanced(mask, t, s, size, 0.75) for t in offsets for s in offsets])
    assert 0.1 < p < 0.35, p  # the construction: few crops are balanced
    trials = 300
    for cap, expected in ((0.75, 1 - (1 - p) ** 11), (1.0, p)):
        crop = CatRatioCrop((size, size), cat_max_ratio=cap)
        torch.manual_seed(0)
        hits = 0
        for _ in range(trials):
            params = crop.make_params([tv_tensors.Mask(mask)])
            hits += _balanced(mask, params["top"], params["left"], size, 0.75)
        assert abs(hits / trials - expected) < 0.08, (cap, hits / trials, expected)


def test_photometric_steps_against_colorsys():
    torch.manual_seed(0)
    image = tv_tensors.Image(torch.rand(3, 4, 5))
    params = {"brightness": 0.05, "contrast_first": False, "contrast": 1.2, "saturation": 1.4, "hue": 7 / 180}
    out = PhotometricDistortion().transform(image, params)
    assert isinstance(out, tv_tensors.Image)
    for y in range(4):
        for x in range(5):
            rgb = [min(max(v + 0.05, 0.0), 1.0) for v in image[:, y, x].tolist()]
            h, s, v = colorsys.rgb_to_hsv(*rgb)
            rgb = colorsys.hsv_to_rgb((h + 7 / 180) % 1.0, min(s * 1.4, 1.0), v)
            expected = [min(c * 1.2, 1.0) for c in rgb]
            assert torch.allclose(out[:, y, x], torch.tensor(expected), atol=2e-3), (y, x)
    mask = tv_tensors.Mask(torch.arange(20).reshape(4, 5))
    torch.manual_seed(1)
    jittered, same = PhotometricDistortion()(image, mask)
    assert torch.equal(same, mask) and jittered.min() >= 0 and jittered.max() <= 1


def test_eval_transforms_are_the_identity_and_inputs_need_a_mask():
    image, mask = blocks(30, 20, block=5, seed=0)
    out_image, out_mask = segmentation_transforms(False)(image, mask)
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)
    with pytest.raises(TypeError, match=r"take \(image, tv_tensors.Mask\); got 0 masks .* wrap the label"):
        segmentation_transforms(True)(image, mask.as_subclass(torch.Tensor))
