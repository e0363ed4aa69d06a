"""Corruption pipeline (shape, dtype, determinism, grayscale round trip) and the CE / mCE arithmetic."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("corrupt_tta")

from lsnet.analysis.robustness import (  # noqa: E402
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    CorruptedDataset,
    ce_table,
    corrupt_image,
    corruption_seed,
    evaluate_robustness,
)

GRAY = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
RGB = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", CORRUPTIONS + EXTRA_CORRUPTIONS)
def test_every_corruption_keeps_shape_and_dtype_and_is_deterministic(name):
    for image in (GRAY, GRAY[..., None], RGB):
        for severity in (1, 5):
            out = corrupt_image(image, name, severity, seed=3)
            assert out.shape == image.shape and out.dtype == np.uint8
            assert np.array_equal(out, corrupt_image(image, name, severity, seed=3))


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "glass_blur", "frost", "fog", "elastic_transform"])
def test_random_corruptions_follow_the_seed_only(name):
    outputs = {seed: corrupt_image(GRAY, name, 3, seed=seed) for seed in (0, 1)}
    assert not np.array_equal(outputs[0], outputs[1])
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    again = corrupt_image(GRAY, name, 3, seed=0)
    assert np.array_equal(again, outputs[0])
    assert np.array_equal(np.random.get_state()[1], state)  # numpy's global generator is left as it was


def test_corruptions_change_the_image_and_severity_zero_does_not():
    assert np.array_equal(corrupt_image(GRAY, "fog", 0), GRAY)
    assert not np.array_equal(corrupt_image(GRAY, "contrast", 1), GRAY)
    # contrast keeps a gray image gray and shrinks its spread more at higher severity
    assert corrupt_image(GRAY, "contrast", 5).std() < corrupt_image(GRAY, "contrast", 1).std() < GRAY.std()


def test_corrupt_image_validates_input():
    with pytest.raises(TypeError, match="uint8"):
        corrupt_image(GRAY.astype(np.float32), "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt_image(GRAY, "fog", 6)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_image(GRAY, "rain", 1)
    with pytest.raises(ValueError, match="H, W"):
        corrupt_image(np.zeros((4, 4, 2), np.uint8), "fog", 1)


def test_corruption_seeds_differ_per_key():
    seeds = {corruption_seed(0, c, s, i) for c in CORRUPTIONS for s in (1, 2) for i in range(3)}
    assert len(seeds) == len(CORRUPTIONS) * 2 * 3


class PilDataset(torch.utils.data.Dataset):
    def __init__(self, count: int = 6, mode: str = "L"):
        rng = np.random.default_rng(0)
        shape = (28, 28) if mode == "L" else (28, 28, 3)
        self.images = [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode) for _ in range(count)]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], index % 10


def test_corrupted_dataset_gives_normalized_tensors_deterministically():
    kwargs = dict(img_size=40, in_chans=1, mean=(0.5,), std=(0.25,), corruption="shot_noise", severity=2, seed=7)
    data = CorruptedDataset(PilDataset(), **kwargs)
    x, y = data[1]
    assert x.shape == (1, 40, 40) and x.dtype == torch.float32 and y == 1
    assert torch.equal(x, CorruptedDataset(PilDataset(), **kwargs)[1][0])
    assert not torch.equal(x, data[2][0])
    clean = CorruptedDataset(PilDataset(), img_size=40, in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3)[0][0]
    assert clean.shape == (3, 40, 40) and clean.min() >= -2 and clean.max() <= 2


def test_ce_table_arithmetic():
    errors = {"base": {"fog": {1: 20.0, 2: 40.0}, "noise": {1: 50.0, 2: 50.0}},
              "model": {"fog": {1: 10.0, 2: 20.0}, "noise": {1: 50.0, 2: 25.0}}}
    clean = {"base": 10.0, "model": 5.0}
    table = ce_table(errors, clean, "base")
    assert table["base"]["mce"] == pytest.approx(100.0)
    assert table["model"]["ce"] == pytest.approx({"fog": 50.0, "noise": 75.0})
    assert table["model"]["mce"] == pytest.approx(62.5)
    # relative: (10 + 20 - 2 * 5) / (20 + 40 - 2 * 10) = 50%, (50 + 25 - 10) / (100 - 20) = 81.25%
    assert table["model"]["relative_ce"] == pytest.approx({"fog": 50.0, "noise": 81.25})
    with pytest.raises(ValueError, match="baseline"):
        ce_table(errors, clean, "alexnet")
    assert math.isnan(ce_table({"b": {"fog": {1: 0.0}}}, {"b": 0.0}, "b")["b"]["mce"])


def test_evaluate_robustness_end_to_end():
    from lsnet.analysis.models import load_model

    torch.manual_seed(0)
    models = {"a": load_model("lsnet_test", num_classes=10, in_chans=1),
              "b": load_model("lsnet_test", num_classes=10, in_chans=1, lkp_kernel_size=0)}
    settings = dict(img_size=32, in_chans=1, mean=(0.3,), std=(0.35,), crop_pct=1.0, interpolation="bilinear")
    run = lambda: evaluate_robustness(models, PilDataset(8), settings={"a": settings, "b": settings}, baseline="b",
                                      corruptions=["gaussian_noise", "pixelate"], severities=[1, 5], batch_size=4)
    summary = run()
    assert summary["models"] == ["a", "b"] and summary["num_images"] == 8
    assert set(summary["accuracy"]["a"]["pixelate"]) == {"1", "5", "mean"}
    assert summary["mce"]["b"] == pytest.approx(100.0) or math.isnan(summary["mce"]["b"])
    assert run() == summary  # deterministic


def test_robustness_cli(fmnist_dir, tmp_path):
    pytest.importorskip("matplotlib")
    from lsnet.cli.main import main

    assert main(["robustness", "--models", "lsnet_test", "nolkp=lsnet_test:lkp_kernel_size=0", "--baseline", "nolkp",
                 "--data-dir", str(fmnist_dir), "--subset", "6", "--corruptions", "fog", "contrast",
                 "--severities", "1", "2", "--img-size", "32", "--output", str(tmp_path)]) == 0
    for name in ("robustness.json", "robustness.csv", "robustness.md", "robustness.png", "corruption_examples.png",
                 "config.yaml"):
        assert (tmp_path / name).is_file(), name
    rows = (tmp_path / "robustness.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * (1 + 2 * 2)  # header + per model: clean + 2 corruptions x 2 severities
