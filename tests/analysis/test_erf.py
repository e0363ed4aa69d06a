"""ERF: exact supports of small conv stacks, the area-ratio and radial metrics on maps with known answers, and the
model-agnostic pipeline on the tiny LSNet."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lsnet.analysis.erf import (
    analyze_erf,
    area_ratio,
    erf_centre,
    erf_map,
    profile_stats,
    radial_profile,
    rescale_zero_init,
    resolve_stage,
)
from lsnet.analysis.images import load_images
from lsnet.analysis.models import load_model, parse_model_spec


def support(contrib: np.ndarray) -> tuple[slice, slice]:
    rows, cols = np.nonzero(contrib)
    return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


@pytest.mark.parametrize("size", [9, 10])
def test_single_3x3_conv_has_exactly_3x3_support(size):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    contrib = erf_map(conv, torch.randn(2, 3, size, size))
    c = size // 2
    assert contrib.shape == (size, size)
    assert support(contrib) == (slice(c - 1, c + 2), slice(c - 1, c + 2))
    assert np.all(contrib[c - 1:c + 2, c - 1:c + 2] > 0)
    # linear: d(sum_o y[o, c, c]) / dx[i, c - 1 + kh, c - 1 + kw] = sum_o w[o, i, kh, kw], the same for every image
    expected = conv.weight.detach().sum(0).abs().sum(0).double().numpy()
    assert np.allclose(contrib[c - 1:c + 2, c - 1:c + 2], expected)


def test_two_stacked_3x3_convs_have_5x5_support():
    torch.manual_seed(0)
    stack = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1))
    contrib = erf_map(stack, torch.randn(2, 3, 11, 11))
    assert support(contrib) == (slice(3, 8), slice(3, 8))
    assert np.all(contrib[3:8, 3:8] > 0)


def test_replknet_mode_is_nonnegative_and_within_support():
    torch.manual_seed(0)
    stack = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))
    contrib = erf_map(stack, torch.randn(3, 3, 11, 11), mode="replknet")
    assert contrib.min() >= 0 and np.count_nonzero(contrib[:3]) == 0


def test_non_finite_images_are_skipped():
    conv = nn.Conv2d(1, 1, 3, padding=1)
    images = torch.randn(3, 1, 7, 7)
    images[1, 0, 3, 3] = float("nan")
    contrib = erf_map(conv, images, batch_size=1)
    assert np.isfinite(contrib).all()


def test_area_ratio_of_a_centred_block():
    contrib = np.zeros((21, 21))
    contrib[8:13, 8:13] = 1.0  # a 5x5 block around the centre (10, 10)
    for log_scale in (True, False):
        out = area_ratio(contrib, (0.2, 0.99), log_scale=log_scale)
        assert out[0.99] == {"side": 5, "ratio": pytest.approx(25 / 441)}
        assert out[0.2]["side"] == 3  # 9 of 25 pixels = 36% >= 20%, one pixel (4%) is not


def test_area_ratio_of_a_uniform_map():
    out = area_ratio(np.ones((11, 11)), (0.2, 0.3, 0.5, 0.99), log_scale=False)
    # smallest odd square holding t of 121 pixels: 5x5 (25 >= 24.2), 7x7 (49 >= 36.3), 9x9 (81 >= 60.5), 11x11
    assert [v["side"] for v in out.values()] == [5, 7, 9, 11]
    assert out[0.5]["ratio"] == pytest.approx(81 / 121)


def test_area_ratio_clips_squares_at_the_border_and_uses_the_given_centre():
    contrib = np.zeros((10, 10))
    contrib[0:2, 0:2] = 1.0
    out = area_ratio(contrib, (0.99,), log_scale=False, centre=(0, 0))
    assert out[0.99] == {"side": 3, "ratio": pytest.approx(4 / 100)}  # the 3x3 square clipped to 2x2


def test_area_ratio_log_scale_is_replknets_log10_1p():
    contrib = np.zeros((9, 9))
    contrib[4, 4], contrib[0, 0] = 999.0, 9.0  # log10(1+x): 3 and 1, so the centre holds 75%
    assert area_ratio(contrib, (0.75,))[0.75]["side"] == 1
    assert area_ratio(contrib, (0.76,))[0.76]["side"] == 9
    assert area_ratio(contrib, (0.99,), log_scale=False)[0.99]["side"] == 1  # raw: the centre holds 99.1%


def test_area_ratio_rejects_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        area_ratio(-np.ones((5, 5)))
    with pytest.raises(ValueError, match="thresholds"):
        area_ratio(np.ones((5, 5)), (1.5,))


def test_gaussian_map_is_recognized():
    rows, cols = np.indices((41, 41))
    sigma = 4.0
    contrib = np.exp(-((rows - 20) ** 2 + (cols - 20) ** 2) / (2 * sigma**2))
    stats = profile_stats(contrib)
    assert stats["gaussian_r2"] > 0.995
    assert stats["sigma"] == pytest.approx(sigma, rel=0.1)
    assert stats["monotonicity"] == pytest.approx(1.0)
    # 2-D Gaussian: the disc holding fraction q has radius sigma * sqrt(-2 ln(1 - q))
    assert stats["r50"] == pytest.approx(sigma * math.sqrt(2 * math.log(2)), abs=1.0)


def test_ring_map_is_neither_gaussian_nor_monotone():
    rows, cols = np.indices((41, 41))
    radius = np.hypot(rows - 20, cols - 20)
    contrib = np.exp(-((radius - 12) ** 2) / 8) + 0.01
    stats = profile_stats(contrib)
    assert stats["monotonicity"] < 0.6
    assert stats["gaussian_r2"] < 0.5


def test_radial_profile_and_centre():
    contrib = np.zeros((15, 15))
    contrib[5, 9] = 2.0
    assert erf_centre(contrib) == (5, 9)
    radii, profile = radial_profile(contrib, (5, 9))
    assert radii[-1] == 5 and profile[0] == 2.0 and profile[1:].sum() == 0


def test_analyze_erf_is_json_ready():
    import json

    rows, cols = np.indices((21, 21))
    numbers = analyze_erf(np.exp(-((rows - 10) ** 2 + (cols - 10) ** 2) / 18.0))
    json.dumps(numbers)
    assert set(numbers["area_ratio"]) == {"0.2", "0.3", "0.5", "0.99"}
    ratios = [v["ratio"] for v in numbers["area_ratio"].values()]
    assert ratios == sorted(ratios)


def test_parse_model_spec():
    spec = parse_model_spec("w/o LKP=lsnet_t:lkp_kernel_size=0,embed_dim=[8, 16],checkpoint=a/b.pth")
    assert (spec.label, spec.name, spec.checkpoint) == ("w/o LKP", "lsnet_t", "a/b.pth")
    assert spec.kwargs == {"lkp_kernel_size": 0, "embed_dim": [8, 16]}
    assert parse_model_spec("resnet18").label == "resnet18"
    assert parse_model_spec("lsnet_t:lkp_kernel_size=0").label == "lsnet_t lkp_kernel_size=0"
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_model_spec("lsnet_t:oops")


def test_lsnet_erf_through_forward_intermediates():
    torch.manual_seed(0)
    model = load_model("lsnet_test")
    assert resolve_stage(model, -1) == 3 and resolve_stage(model, "s16") == 1
    with pytest.raises(ValueError, match="strides"):
        resolve_stage(model, "s7")
    with pytest.raises(ValueError, match="out of range"):
        resolve_stage(model, 4)
    images = torch.randn(2, 3, 64, 64)
    contrib = erf_map(model, images, stage="s16", batch_size=1)
    assert contrib.shape == (64, 64) and np.isfinite(contrib).all() and contrib.min() >= 0 and contrib.max() > 0
    # batching does not change the result (eval mode: images do not interact)
    assert np.allclose(contrib, erf_map(model, images, stage="s16", batch_size=2), rtol=1e-4, atol=1e-9)


def test_lkp_widens_the_ls_conv_erf_from_3x3_to_7x7():
    from lsnet.layers.lsconv import LSConv

    share = {}
    for k in (7, 0):
        torch.manual_seed(0)
        contrib = erf_map(LSConv(16, large_kernel=k), torch.randn(4, 16, 15, 15))
        share[k] = (contrib[6:9, 6:9].sum() / contrib.sum(), contrib[4:11, 4:11].sum() / contrib.sum())
    # SKA alone reads a 3x3 neighbourhood; LKP's 7x7 depthwise conv makes the kernels depend on a 7x7 one.
    # (LKP's GroupNorm statistics span the whole map, so a little mass lies everywhere.)
    assert share[0][0] > 0.95
    assert share[7][0] < 0.8 and share[7][1] > 0.98


def test_rescale_zero_init_touches_only_zero_scales():
    model = load_model("lsnet_test")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    changed = rescale_zero_init(model)
    assert changed and all("bias" not in name for name in changed)
    after = model.state_dict()
    for name in changed:
        assert torch.all(after[name] == 1) and torch.all(before[name].abs() < 1e-4)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in changed)


def test_load_images_from_a_folder_and_fashion_mnist(image_dir, fmnist_dir):
    images = load_images(image_dir, 2, img_size=32, in_chans=3, seed=1)
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.float32
    assert torch.equal(images, load_images(image_dir, 2, img_size=32, in_chans=3, seed=1))
    gray = load_images("fashion-mnist", 4, img_size=40, in_chans=1, mean=(0.5,), std=(0.5,), data_dir=str(fmnist_dir))
    assert gray.shape == (4, 1, 40, 40)


def test_load_bundled_photos():
    pytest.importorskip("skimage")
    images = load_images("photos", 8, img_size=24, in_chans=3)
    assert images.shape == (8, 3, 24, 24)


def test_load_model_from_a_training_checkpoint(tmp_path):
    import timm

    import lsnet  # noqa: F401

    torch.manual_seed(1)
    trained = timm.create_model("lsnet_test", num_classes=10, in_chans=1, img_size=48)
    config = {"model": "lsnet_test", "dataset": "fashion-mnist", "img_size": 48, "in_chans": 1, "num_classes": 10,
              "mean": [0.3], "std": [0.4]}
    import json

    from safetensors.torch import save_file

    pth, safetensors = tmp_path / "best.pth", tmp_path / "best.safetensors"
    torch.save({"model": trained.state_dict(), "config": config, "epoch": 3}, pth)
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(safetensors),
              metadata={"format": "pt", "lsnet": json.dumps(config)})
    for path in (pth, safetensors):
        model = load_model("lsnet_test", checkpoint=path)
        assert model.num_classes == 10 and model.in_chans == 1
        for key, value in trained.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key
        assert model.analysis_input["img_size"] == 48 and model.analysis_input["mean"] == (0.3,)


def test_erf_cli(image_dir, tmp_path):
    pytest.importorskip("matplotlib")
    from lsnet.cli.main import main

    out = tmp_path / "erf"
    assert main(["erf", "--models", "lsnet_test", "nolkp=lsnet_test:lkp_kernel_size=0", "--images", str(image_dir),
                 "--num-images", "2", "--img-size", "32", "--stage", "s16", "--output", str(out),
                 "--no-zero-init"]) == 0
    for name in ("erf.json", "erf.md", "erf_area_ratio.csv", "erf_radial.csv", "erf_compare.png", "erf_nolkp.png",
                 "erf_lsnet_test.npy", "config.yaml"):
        assert (out / name).is_file(), name
    assert "nolkp" in (out / "erf.md").read_text()


def test_erf_cli_missing_image_folder_is_one_line(tmp_path, capsys):
    from lsnet.cli.main import main

    missing = str(tmp_path / "nowhere")
    args = ["erf", "--models", "lsnet_test", "--images", missing, "--num-images", "1", "--img-size", "32",
            "--output", str(tmp_path / "out")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: image folder") and missing in err and "pass 'photos'" in err
    with pytest.raises(FileNotFoundError):  # -v keeps the traceback
        main(["-v", *args])
