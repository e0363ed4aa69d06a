"""What an LS convolution looks at: SKA aggregation weights and LKP / SKA feature maps (LSNet supplementary, Sec. C.1,
Figs. 2 and 3), captured with forward hooks on `lsnet.layers.lsconv.LSConv` modules.

    from lsnet.analysis.aggregation import capture_ls_convs, token_weight_map, inspect_lsnet
    captures = capture_ls_convs(model, x)                 # {layer name: LSConvCapture}
    heat = token_weight_map(captures[name].weights)       # (B, H, W): cumulative |aggregation weight| per token
    inspect_lsnet(model, image, "results/inspect")        # PNG overlays + index.md / index.html

Aggregation weights (Fig. 2): SKA gives output pixel p the value sum_t w[g, t, p] * x[c, p + offset(t)] (g = c mod G,
G = C / 8 weight channels, t over the k x k taps). The cumulative weight of token q is the sum of |w[g, t, p]| over
every (p, t) with p + offset(t) = q, i.e. over all aggregations q takes part in (a col2im / `F.fold` of |w|); the map
shown is its mean over the G weight channels (equal to the mean over all C channels, as 8 channels share each kernel).
The paper shows the last LS conv of the third stage. Feature maps (Fig. 3): the output of LKP's large-kernel depthwise
conv and the SKA output (after its BN) of the first LS conv, as the mean |activation| over channels plus the
individual channels with the largest spatial spread.
"""
from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from lsnet.layers.lsconv import LSConv


@dataclass
class LSConvCapture:
    """Tensors seen by one LS conv during a forward pass (batch first)."""

    name: str
    input: torch.Tensor  # (B, C, H, W)
    weights: torch.Tensor  # (B, C // G_share, k*k, H, W) SKA weights from LKP
    lkp_features: torch.Tensor  # (B, C // 2, H, W) after LKP's large-kernel depthwise conv (its input if none)
    ska: torch.Tensor  # (B, C, H, W) SKA output after the LS conv's BN


def find_ls_convs(model: nn.Module) -> list[tuple[str, LSConv]]:
    """(name, module) of every LSConv in the model, in forward order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, LSConv)]


def default_layers(model: nn.Module) -> list[str]:
    """The paper's choices: the first LS conv (Fig. 3 feature maps) and the last LS conv of the third stage
    (Fig. 2 weights; the last LS conv overall when the model has no stages.2)."""
    names = [name for name, _ in find_ls_convs(model)]
    if not names:
        return []
    third = [n for n in names if n.startswith("stages.2.")]
    return list(dict.fromkeys([names[0], (third or names)[-1]]))


def select_layers(model: nn.Module, layers: Sequence[str | int] | None = None) -> list[str]:
    """Names of the LS convs to inspect: names, indices into `find_ls_convs` order, or None for `default_layers`."""
    names = [name for name, _ in find_ls_convs(model)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no LSConv layers; `lsnet inspect` needs an LSNet "
                         "(lsnet_t, lsnet_s, lsnet_b, lsnet_test)")
    if not layers:
        return default_layers(model)
    chosen = []
    for layer in layers:
        if isinstance(layer, int) or (isinstance(layer, str) and layer.lstrip("-").isdigit()):
            index = int(layer)
            if not -len(names) <= index < len(names):
                raise ValueError(f"LS conv index {index} out of range; the model has {len(names)}: {names}")
            chosen.append(names[index])
        elif layer in names:
            chosen.append(layer)
        else:
            raise ValueError(f"no LS conv named {layer!r}; choose an index or one of {names}")
    return list(dict.fromkeys(chosen))


@torch.no_grad()
def capture_ls_convs(model: nn.Module, x: torch.Tensor, layers: Sequence[str | int] | None = None,
                     ) -> dict[str, LSConvCapture]:
    """Run the model once (eval mode) and capture the LS conv tensors of `layers` with forward hooks."""
    modules = dict(find_ls_convs(model))
    names = select_layers(model, layers)
    store: dict[str, dict[str, torch.Tensor]] = {name: {} for name in names}
    handles = []

    def hook(name: str, key: str, use_input: bool = False):
        def fn(_module, inputs, output):
            store[name][key] = (inputs[0] if use_input else output).detach()
        return fn

    for name in names:
        conv = modules[name]
        handles += [
            conv.register_forward_hook(hook(name, "input", use_input=True)),
            conv.lkp.register_forward_hook(hook(name, "weights")),
            conv.lkp.dw_large.register_forward_hook(hook(name, "lkp_features")),
            conv.norm.register_forward_hook(hook(name, "ska")),
        ]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    missing = [n for n in names if len(store[n]) < 4]
    if missing:
        raise RuntimeError(f"LS convs {missing} did not run in the forward pass (pruned or skipped?)")
    return {name: LSConvCapture(name=name, **store[name]) for name in names}


def cumulative_weights(weights: torch.Tensor) -> torch.Tensor:
    """Per weight channel, the summed |aggregation weight| each token receives: (B, G, k*k, H, W) -> (B, G, H, W).

    Tap t = kh * k + kw of output pixel p reads token p + (kh - k//2, kw - k//2) (zero padding: taps that fall
    outside the map are dropped), matching `lsnet.ops.ska`.
    """
    if weights.dim() != 5:
        raise ValueError(f"weights must be (B, G, k*k, H, W); got shape {tuple(weights.shape)}")
    batch, groups, taps, height, width = weights.shape
    k = int(round(taps**0.5))
    if k * k != taps or k % 2 == 0:
        raise ValueError(f"weights must have k*k taps with odd k; got {taps}")
    cols = weights.abs().reshape(batch, groups * taps, height * width)
    return F.fold(cols, (height, width), kernel_size=k, padding=k // 2)


def token_weight_map(weights: torch.Tensor) -> torch.Tensor:
    """The Fig. 2 map: cumulative |aggregation weight| per token, averaged over weight channels. -> (B, H, W)."""
    return cumulative_weights(weights).mean(1)


def top_channels(features: torch.Tensor, count: int = 8) -> tuple[np.ndarray, list[int]]:
    """The `count` channels of a (C, H, W) map with the largest spatial standard deviation, and their indices."""
    spread = features.flatten(1).std(1)
    index = spread.argsort(descending=True)[:count].tolist()
    return features[index].numpy(), index


def inspect_lsnet(model: nn.Module, image: np.ndarray, out_dir: str | os.PathLike, *, mean: Sequence[float],
                  std: Sequence[float], layers: Sequence[str | int] | None = None, num_channels: int = 8,
                  title: str = "") -> Path:
    """Write, for each selected LS conv, overlays of the SKA weight map and the LKP / SKA feature maps on `image`,
    channel grids, the raw maps (maps.npz) and an index (index.md, index.html). Returns the index.html path.

    image: (H, W) or (H, W, 3) uint8, already at the model's input size; mean / std: the model's normalization.
    """
    from lsnet.analysis import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image = np.asarray(image)
    in_chans = 1 if image.ndim == 2 else image.shape[2]
    x = torch.tensor(image, dtype=torch.float32).reshape(*image.shape[:2], in_chans).permute(2, 0, 1) / 255.0
    x = ((x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1))[None]
    captures = capture_ls_convs(model, x, layers)
    plots.save_image(image, out / "image.png")
    arrays, sections = {}, []
    for name, cap in captures.items():
        stem = name.replace(".", "_")
        heat = token_weight_map(cap.weights)[0].numpy()
        lkp = cap.lkp_features[0].abs().mean(0).numpy()
        ska = cap.ska[0].abs().mean(0).numpy()
        arrays.update({f"{stem}/ska_weights": heat, f"{stem}/lkp_mean_abs": lkp, f"{stem}/ska_mean_abs": ska})
        h, w = heat.shape
        files = [
            (plots.overlay(image, heat, out / f"{stem}_ska_weights.png", f"{name}: SKA weights ({h}x{w})"),
             "cumulative |SKA aggregation weight| per token, mean over weight channels (paper Fig. 2)"),
            (plots.overlay(image, lkp, out / f"{stem}_lkp.png", f"{name}: LKP features"),
             "mean |activation| after LKP's large-kernel depthwise conv (paper Fig. 3, 'LKP')"),
            (plots.overlay(image, ska, out / f"{stem}_ska.png", f"{name}: SKA features"),
             "mean |activation| of the SKA output after BN (paper Fig. 3, 'SKA')"),
        ]
        for key, feats in (("lkp", cap.lkp_features[0]), ("ska", cap.ska[0])):
            maps, index = top_channels(feats, num_channels)
            files.append((plots.channel_grid(maps, out / f"{stem}_{key}_channels.png",
                                             f"{name}: {key.upper()} channels with the largest spatial spread",
                                             [f"ch {i}" for i in index]),
                          f"{key.upper()} feature channels with the largest spatial std"))
        sections.append((name, tuple(cap.input.shape[1:]), files))
    np.savez_compressed(out / "maps.npz", **arrays)
    return _write_index(out, sections, title or type(model).__name__)


def _write_index(out: Path, sections, title: str) -> Path:
    md = [f"# {title}: LS convolution inspection", "", "![input](image.png)", ""]
    body = [f"<h1>{html.escape(title)}: LS convolution inspection</h1>", '<img src="image.png" height="224">']
    for name, shape, files in sections:
        md += [f"## {name} (input {shape})", ""]
        body.append(f"<h2>{html.escape(name)} (input {shape})</h2>")
        for path, caption in files:
            md += [f"![{caption}]({path.name})", f"*{caption}*", ""]
            body.append(f'<figure><img src="{path.name}"><figcaption>{html.escape(caption)}</figcaption></figure>')
    md.append("Raw maps: `maps.npz` (keys `<layer>/ska_weights`, `<layer>/lkp_mean_abs`, `<layer>/ska_mean_abs`).")
    (out / "index.md").write_text("\n".join(md) + "\n")
    page = out / "index.html"
    page.write_text("<!doctype html><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
                    "<style>figure{display:inline-block;margin:6px}figcaption{font-size:12px;max-width:420px}</style>"
                    + "\n".join(body) + "\n")
    return page
