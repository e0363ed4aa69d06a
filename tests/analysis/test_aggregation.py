"""SKA aggregation-weight maps and LS conv captures."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lsnet.analysis.aggregation import (
    capture_ls_convs,
    cumulative_weights,
    default_layers,
    find_ls_convs,
    inspect_lsnet,
    select_layers,
    token_weight_map,
)
from lsnet.analysis.models import load_model


def brute_force_cumulative(weights: torch.Tensor) -> torch.Tensor:
    batch, groups, taps, height, width = weights.shape
    k = int(taps**0.5)
    out = torch.zeros(batch, groups, height, width, dtype=weights.dtype)
    for t in range(taps):
        dy, dx = t // k - k // 2, t % k - k // 2
        for y in range(height):
            for x in range(width):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    out[:, :, y + dy, x + dx] += weights[:, :, t, y, x].abs()
    return out


@pytest.mark.parametrize("k", [3, 5])
def test_cumulative_weights_match_brute_force(k):
    weights = torch.randn(2, 3, k * k, 6, 7, dtype=torch.float64)
    assert torch.allclose(cumulative_weights(weights), brute_force_cumulative(weights))


def test_cumulative_weights_are_the_input_gradient_of_ska():
    """Token q's cumulative |weight| is d(sum of SKA(x, |w|)) / dx[q]: the same tap convention as the op."""
    from lsnet.ops import ska

    groups, channels = 2, 8  # channel c uses weight channel c % groups
    weights = torch.randn(1, groups, 9, 5, 6, dtype=torch.float64)
    x = torch.randn(1, channels, 5, 6, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(ska(x, weights.abs()).sum(), x)
    cumulative = cumulative_weights(weights)
    for c in range(channels):
        assert torch.allclose(grad[0, c], cumulative[0, c % groups])
    assert torch.allclose(token_weight_map(weights), cumulative.mean(1))


def test_cumulative_weights_validate_shape():
    with pytest.raises(ValueError, match="k\\*k"):
        cumulative_weights(torch.randn(1, 2, 8, 4, 4))
    with pytest.raises(ValueError, match="B, G"):
        cumulative_weights(torch.randn(2, 9, 4, 4))


def test_capture_matches_aggregate():
    torch.manual_seed(0)
    model = load_model("lsnet_test")
    names = [name for name, _ in find_ls_convs(model)]
    assert default_layers(model) == names[:1] and select_layers(model, [0]) == names[:1]
    with pytest.raises(ValueError, match="no LS conv"):
        select_layers(model, ["stem"])
    captures = capture_ls_convs(model, torch.randn(1, 3, 64, 64))
    cap = captures[names[0]]
    conv = dict(find_ls_convs(model))[names[0]]
    mixed, weights = conv.aggregate(cap.input)
    assert cap.weights.shape == (1, cap.input.shape[1] // 8, 9, *cap.input.shape[2:])
    assert torch.allclose(cap.weights, weights) and torch.allclose(cap.ska, mixed)
    assert cap.lkp_features.shape == (1, cap.input.shape[1] // 2, *cap.input.shape[2:])
    assert not model.training and not conv._forward_hooks  # hooks removed


def test_select_layers_needs_an_lsnet():
    import timm

    with pytest.raises(ValueError, match="no LSConv"):
        select_layers(timm.create_model("resnet18"), None)


def test_inspect_writes_overlays_and_index(tmp_path):
    pytest.importorskip("matplotlib")
    torch.manual_seed(0)
    model = load_model("lsnet_test")
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    page = inspect_lsnet(model, image, tmp_path, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_channels=4)
    stem = find_ls_convs(model)[0][0].replace(".", "_")
    for suffix in ("ska_weights", "lkp", "ska", "lkp_channels", "ska_channels"):
        assert (tmp_path / f"{stem}_{suffix}.png").is_file(), suffix
    assert page.is_file() and f"{stem}_ska_weights.png" in (tmp_path / "index.md").read_text()
    maps = np.load(tmp_path / "maps.npz")
    assert maps[f"{stem}/ska_weights"].shape == (4, 4)  # stages.1 of a 64-px input (stride 16)


def test_inspect_cli(image_dir, tmp_path):
    pytest.importorskip("matplotlib")
    from lsnet.cli.main import main

    image = sorted(image_dir.iterdir())[0]
    assert main(["inspect", "--model", "lsnet_test", "--image", str(image), "--output", str(tmp_path),
                 "--layers", "-1"]) == 0
    assert (tmp_path / "index.html").is_file() and (tmp_path / "config.yaml").is_file()
