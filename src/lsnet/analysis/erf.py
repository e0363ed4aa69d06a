"""Effective receptive fields (Luo et al., NeurIPS 2016), measured the way RepLKNet and UniConvNet do.

For every input image, the output of one stage is reduced to its centre pixel summed over channels, and the gradient
of that scalar with respect to the input is taken. Its absolute value, summed over the input channels and averaged
over N images, is the contribution map: how much each input pixel moves the centre unit. Model-agnostic through timm's
`forward_intermediates` (any timm model with features: lsnet_t, efficientvit_m4, resnet18, ...).

    from lsnet.analysis.erf import erf_map, analyze_erf
    from lsnet.analysis.images import load_images
    from lsnet.analysis.models import load_model, model_input
    model = load_model("lsnet_t:lkp_kernel_size=0")                    # the paper's "w/o LKP" ablation
    images = load_images("photos", 50, **model_input(model))          # scikit-image's bundled photos, offline
    contrib = erf_map(model, images, stage=-1)                        # (H, W) float64
    analyze_erf(contrib)    # {'area_ratio': {...}, 'area_ratio_raw': {...}, 'radial': {...}}

Numbers (`analyze_erf`):
  * high-contribution area ratio (RepLKNet, CVPR 2022, Sec. 4.2 / erf/analyze_erf.py): the contribution map is
    log-scaled as log10(1 + x) (rescaling to max 1 does not change ratios), then for each threshold t the smallest
    odd-sided square centred on the ERF whose summed score reaches t of the whole map's sum; the ratio is its area over
    the map's area. `area_ratio_raw` is the same on the unscaled contributions (a pure fraction of gradient mass; the
    log10(1 + x) of RepLKNet depends on the absolute gradient scale, so it is comparable only between models whose
    gradients have similar magnitude).
  * radial profile (UniConvNet's "asymptotically Gaussian distribution"): the mean contribution on rings of integer
    radius around the ERF centre, a least-squares fit of A exp(-r^2 / 2 sigma^2) with its R^2, a monotonicity score
    (1 = never rises going outwards) and the radii holding 50% / 90% of the contribution.
"""
from __future__ import annotations

import inspect
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .images import load_images
from .models import ModelSpec, load_model, model_input, parse_model_spec

_logger = logging.getLogger(__name__)

THRESHOLDS = (0.2, 0.3, 0.5, 0.99)


# --------------------------------------------------------------------------------------------------------- ERF
@torch.no_grad()
def rescale_zero_init(model: nn.Module, tol: float = 1e-4) -> list[str]:
    """Set zero-initialised residual scales to 1 (random-init analysis only); returns the parameter names changed.

    Many families start their residual branches at (almost) zero: BN gamma 0 at a branch's end (LSNet's FFN and
    attention, timm ResNets), layer scale 1e-6 (Conv2Former, UniConvNet). A random-init ERF then only shows the stem
    and the downsampling layers. Scale vectors (weights that are 1-D or (C, 1, ..., 1), not biases) whose entries are
    all below `tol` in magnitude are filled with 1, so every block contributes as it would after some training.
    """
    changed = []
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "bias" or "bias" in leaf or param.numel() == 0:
            continue
        if param.dim() > 1 and any(s != 1 for s in param.shape[1:]):
            continue
        if param.abs().max() < tol:
            param.fill_(1.0)
            changed.append(name)
    return changed


def resolve_stage(model: nn.Module, stage: int | str) -> int:
    """Index into the model's feature stages: an int (negative counts from the end) or 'sN' = the stage of stride N
    (e.g. 's32'; the last stage with that reduction when several share it)."""
    info = getattr(model, "feature_info", None)
    if info is None or not hasattr(model, "forward_intermediates"):
        return -1
    reductions = [i["reduction"] for i in (info if isinstance(info, list) else info.get_dicts())]
    if isinstance(stage, str) and not re.fullmatch(r"-?\d+", stage):
        match = re.fullmatch(r"s(\d+)", stage)
        if not match or int(match.group(1)) not in reductions:
            raise ValueError(f"stage {stage!r}: expected an index or 'sN' with N one of the strides {reductions}")
        return len(reductions) - 1 - reductions[::-1].index(int(match.group(1)))
    index = int(stage)
    if not -len(reductions) <= index < len(reductions):
        raise ValueError(f"stage {index} out of range: the model has {len(reductions)} stages (strides {reductions})")
    return index % len(reductions)


def stage_output(model: nn.Module, x: torch.Tensor, stage: int) -> torch.Tensor:
    """Feature map (B, C, h, w) of `stage` via forward_intermediates; a model without it is its own feature map."""
    if not hasattr(model, "forward_intermediates"):
        out = model(x)
    else:
        kwargs = dict(indices=[stage], intermediates_only=True)
        if "stop_early" in inspect.signature(model.forward_intermediates).parameters:
            kwargs["stop_early"] = True
        out = model.forward_intermediates(x, **kwargs)[0]
    if out.dim() != 4:
        raise ValueError(f"stage output must be a (B, C, h, w) map; got shape {tuple(out.shape)}")
    return out


def erf_map(model: nn.Module, images: torch.Tensor | Iterable[torch.Tensor], stage: int | str = -1,
            batch_size: int = 8, mode: str = "abs") -> np.ndarray:
    """Mean contribution map (H, W) of the input pixels to the centre unit of `stage`.

    images: (N, C, H, W) normalized tensor, or an iterable of such batches.
    mode: 'abs' — |d(sum_c y[c, h//2, w//2]) / dx| summed over input channels (Luo et al.);
          'replknet' — RepLKNet's script: relu on the centre features before summing, relu on the gradient.
    Images whose gradient is not finite are skipped (logged). The model runs in eval mode (BN statistics fixed, so
    the images of a batch do not interact and one backward gives every image's own gradient).
    """
    if mode not in ("abs", "replknet"):
        raise ValueError(f"mode must be 'abs' or 'replknet'; got {mode!r}")
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W); got shape {tuple(images.shape)}")
        batches: Iterable[torch.Tensor] = images.split(batch_size)
    else:
        batches = images
    model.eval()
    index = resolve_stage(model, stage)
    total, count, skipped = None, 0, 0
    for batch in batches:
        x = batch.detach().float().clone().requires_grad_(True)
        with torch.enable_grad():
            features = stage_output(model, x, index)
            centre = features[:, :, features.shape[2] // 2, features.shape[3] // 2]
            if mode == "replknet":
                centre = centre.relu()
            (grad,) = torch.autograd.grad(centre.sum(), x)
        grad = grad.relu() if mode == "replknet" else grad.abs()
        per_image = grad.sum(1).double()  # (B, H, W)
        finite = torch.isfinite(per_image).flatten(1).all(1)
        skipped += int((~finite).sum())
        per_image = per_image[finite]
        total = per_image.sum(0) if total is None else total + per_image.sum(0)
        count += len(per_image)
    if count == 0:
        raise RuntimeError("erf_map: no image gave a finite gradient" if skipped else "erf_map: no images")
    if skipped:
        _logger.warning(f"erf_map: skipped {skipped} image(s) with non-finite gradients")
    return (total / count).numpy()


# ----------------------------------------------------------------------------------------------------- metrics
def erf_centre(contrib: np.ndarray) -> tuple[int, int]:
    """Centre of mass of a contribution map, rounded to a pixel.

    With even input sizes and stride-2 convolutions the centre unit's receptive field sits up to half a stride off the
    image centre (e.g. 16 px for ResNet-18 at 224 px), so squares and rings are centred here, not at (H//2, W//2).
    For a centred ERF (RepLKNet's 1024-px setting) both agree.
    """
    contrib = np.asarray(contrib, dtype=np.float64)
    total = contrib.sum()
    if not total > 0:
        return contrib.shape[0] // 2, contrib.shape[1] // 2
    rows, cols = np.indices(contrib.shape)
    return int(round((rows * contrib).sum() / total)), int(round((cols * contrib).sum() / total))


def area_ratio(contrib: np.ndarray, thresholds: Sequence[float] = THRESHOLDS, *, log_scale: bool = True,
               centre: tuple[int, int] | None = None) -> dict[float, dict[str, float]]:
    """RepLKNet's high-contribution area ratio: {t: {'side': s, 'ratio': r}}.

    The map is scaled with log10(1 + x) when `log_scale` (RepLKNet's analyze_erf.py). For each t, s is the side of the
    smallest odd square (1, 3, 5, ...) centred at `centre` (default (H//2, W//2)) whose summed score reaches t of the
    map's total, and r its area (clipped to the map) over the map's area. Differences from RepLKNet's script: sides
    start at 1 rather than 3, 'reaches' is >= rather than >, and the square grows until it covers the whole map
    (their loop stops at side H-1 and returns None).
    """
    data = np.asarray(contrib, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"area_ratio: contrib must be a 2-D map; got shape {data.shape}")
    if np.any(data < 0) or not np.isfinite(data).all():
        raise ValueError("area_ratio: contrib must be finite and non-negative")
    if log_scale:
        data = np.log10(data + 1.0)
    height, width = data.shape
    cy, cx = centre if centre is not None else (height // 2, width // 2)
    total = data.sum()
    # cumulative sum of centred squares of half-size 0, 1, 2, ...
    integral = np.pad(data, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    max_half = max(cy, cx, height - 1 - cy, width - 1 - cx)
    halves = np.arange(max_half + 1)
    top, bottom = np.clip(cy - halves, 0, height), np.clip(cy + halves + 1, 0, height)
    left, right = np.clip(cx - halves, 0, width), np.clip(cx + halves + 1, 0, width)
    sums = integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]
    areas = (bottom - top) * (right - left)
    out = {}
    for t in thresholds:
        if not 0 < t <= 1:
            raise ValueError(f"area_ratio: thresholds must be in (0, 1]; got {t}")
        reached = np.nonzero(sums >= t * total * (1 - 1e-12))[0] if total > 0 else np.array([0])
        half = int(reached[0]) if len(reached) else max_half
        out[float(t)] = {"side": 2 * half + 1, "ratio": float(areas[half] / (height * width))}
    return out


def radial_profile(contrib: np.ndarray, centre: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean contribution on rings of integer radius (nearest-integer distance) around `centre`, out to the largest
    radius whose ring lies fully inside the map. Returns (radii, means)."""
    data = np.asarray(contrib, dtype=np.float64)
    height, width = data.shape
    cy, cx = centre if centre is not None else (height // 2, width // 2)
    rows, cols = np.indices(data.shape)
    ring = np.rint(np.hypot(rows - cy, cols - cx)).astype(int)
    r_max = max(0, min(cy, cx, height - 1 - cy, width - 1 - cx))
    sums = np.bincount(ring.ravel(), data.ravel(), minlength=r_max + 1)[: r_max + 1]
    counts = np.bincount(ring.ravel(), minlength=r_max + 1)[: r_max + 1]
    return np.arange(r_max + 1), sums / np.maximum(counts, 1)


def profile_stats(contrib: np.ndarray, centre: tuple[int, int] | None = None) -> dict[str, float]:
    """How Gaussian / monotone the ERF is, from its radial profile p(r) normalized to p(0..R) max 1:

    sigma, gaussian_r2: least-squares fit of A exp(-r^2 / (2 sigma^2)) (grid over sigma, A closed form) and its R^2
      (1 = exactly Gaussian; UniConvNet argues a good ERF decays like one from the centre outwards);
    monotonicity: 1 - (sum of rises) / (sum of |steps|) going outwards (1 = never rises, 0 = never falls);
    r50, r90: radius of the smallest centred disc holding 50% / 90% of the contribution (whole map).
    """
    data = np.asarray(contrib, dtype=np.float64)
    height, width = data.shape
    cy, cx = centre if centre is not None else (height // 2, width // 2)
    radii, profile = radial_profile(data, (cy, cx))
    out: dict[str, float] = {}
    peak = profile.max() if len(profile) else 0.0
    if peak > 0 and len(profile) > 2:
        p = profile / peak
        r2 = radii.astype(np.float64) ** 2
        best = (math.inf, math.nan, math.nan)
        for sigma in np.geomspace(0.25, 4.0 * max(radii[-1], 1), 400):
            g = np.exp(-r2 / (2 * sigma**2))
            amplitude = float(p @ g / (g @ g))
            sse = float(((p - amplitude * g) ** 2).sum())
            if sse < best[0]:
                best = (sse, float(sigma), amplitude)
        sst = float(((p - p.mean()) ** 2).sum())
        out["sigma"] = best[1]
        out["gaussian_r2"] = 1.0 - best[0] / sst if sst > 0 else 1.0
        steps = np.diff(p)
        variation = np.abs(steps).sum()
        out["monotonicity"] = float(1.0 - steps.clip(min=0).sum() / variation) if variation > 0 else 1.0
    else:
        out.update(sigma=math.nan, gaussian_r2=math.nan, monotonicity=math.nan)
    rows, cols = np.indices(data.shape)
    dist = np.hypot(rows - cy, cols - cx).ravel()
    order = np.argsort(dist, kind="stable")
    cumulative = np.cumsum(data.ravel()[order])
    total = cumulative[-1]
    for name, t in (("r50", 0.5), ("r90", 0.9)):
        out[name] = float(dist[order][np.searchsorted(cumulative, t * total)]) if total > 0 else math.nan
    return out


def analyze_erf(contrib: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """Every number for one contribution map: centre, both area-ratio variants, radial statistics and profile."""
    centre = erf_centre(contrib)
    radii, profile = radial_profile(contrib, centre)
    peak = profile.max() if len(profile) and profile.max() > 0 else 1.0
    return {
        "shape": list(np.shape(contrib)),
        "centre": list(centre),
        "area_ratio": {str(t): v for t, v in area_ratio(contrib, thresholds, log_scale=True, centre=centre).items()},
        "area_ratio_raw": {str(t): v for t, v in area_ratio(contrib, thresholds, log_scale=False,
                                                              centre=centre).items()},
        "radial": profile_stats(contrib, centre),
        "radial_profile": {"radius": radii.tolist(), "value": (profile / peak).tolist()},
        "max": float(np.max(contrib)),
        "sum": float(np.sum(contrib)),
    }


# ----------------------------------------------------------------------------------------------- comparisons
@dataclass
class ERFResult:
    label: str
    model: str
    stage: int
    stride: int | None
    img_size: int
    num_images: int
    contrib: np.ndarray
    metrics: dict[str, Any]


def compute_erfs(specs: Sequence[ModelSpec | str], images: str = "photos", num_images: int = 50, *,
                 stage: int | str = -1, img_size: int | None = None, batch_size: int = 8, mode: str = "abs",
                 seed: int = 0, thresholds: Sequence[float] = THRESHOLDS, data_dir: str | None = None,
                 no_zero_init: bool = False) -> list[ERFResult]:
    """ERF of several models on the same images (re-loaded per model only when input settings differ).

    no_zero_init: for models without a checkpoint, apply `rescale_zero_init` (residual branches start at 1, not 0).
    """
    results = []
    cache: dict[tuple, torch.Tensor] = {}
    for spec in specs:
        spec = parse_model_spec(spec) if isinstance(spec, str) else spec
        torch.manual_seed(seed)  # random-init models are reproducible too
        model = load_model(spec)
        if no_zero_init and spec.checkpoint is None:
            changed = rescale_zero_init(model)
            _logger.info(f"{spec.label}: {len(changed)} zero-initialised scale(s) set to 1")
        settings = model_input(model)
        if img_size is not None:
            settings["img_size"] = img_size
        key = (settings["img_size"], settings["in_chans"], settings["mean"], settings["std"])
        if key not in cache:
            cache[key] = load_images(images, num_images, seed=seed, data_dir=data_dir, **settings)
        index = resolve_stage(model, stage)
        stride = None
        if getattr(model, "feature_info", None) is not None:
            info = model.feature_info if isinstance(model.feature_info, list) else model.feature_info.get_dicts()
            stride = int(info[index]["reduction"])
        _logger.info(f"ERF of {spec.label}: stage {index} (stride {stride}), {len(cache[key])} images "
                     f"at {settings['img_size']} px")
        contrib = erf_map(model, cache[key], index, batch_size=batch_size, mode=mode)
        results.append(ERFResult(spec.label, spec.name, index, stride, settings["img_size"], len(cache[key]),
                                 contrib, analyze_erf(contrib, thresholds)))
    return results


def safe_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "model"


def results_table(results: Sequence[ERFResult], thresholds: Sequence[float] = THRESHOLDS) -> str:
    """Markdown table: area ratios (RepLKNet log-scaled, then raw) and radial statistics, one row per model."""
    ts = [str(float(t)) for t in thresholds]
    pct = [f"{float(t) * 100:g}%" for t in thresholds]
    head = (["model", "stage (stride)"] + [f"A{p}" for p in pct] + [f"raw A{p}" for p in pct]
            + ["r50 px", "r90 px", "Gauss R²", "monotone"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        m = r.metrics
        row = [r.label, f"{r.stage} (s{r.stride})" if r.stride else str(r.stage)]
        row += [f"{m['area_ratio'][t]['ratio']:.3f}" for t in ts]
        row += [f"{m['area_ratio_raw'][t]['ratio']:.3f}" for t in ts]
        row += [f"{m['radial']['r50']:.1f}", f"{m['radial']['r90']:.1f}", f"{m['radial']['gaussian_r2']:.3f}",
                f"{m['radial']['monotonicity']:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_results(results: Sequence[ERFResult], out_dir: str | os.PathLike,
                  thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Path]:
    """erf.json (everything), erf_area_ratio.csv, erf_radial.csv, erf.md (table), erf_<label>.npy (raw maps)."""
    import csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "erf.json", "area_csv": out / "erf_area_ratio.csv", "radial_csv": out / "erf_radial.csv",
             "table": out / "erf.md"}
    payload = [dict(label=r.label, model=r.model, stage=r.stage, stride=r.stride, img_size=r.img_size,
                    num_images=r.num_images, **r.metrics) for r in results]
    paths["json"].write_text(json.dumps(payload, indent=2))
    with open(paths["area_csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "stage", "stride", "scale", "threshold", "side", "ratio"])
        for r in results:
            for scale, key in (("log10(1+x)", "area_ratio"), ("raw", "area_ratio_raw")):
                for t, v in r.metrics[key].items():
                    writer.writerow([r.label, r.stage, r.stride, scale, t, v["side"], f"{v['ratio']:.6f}"])
    with open(paths["radial_csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "radius", "value", "sigma", "gaussian_r2", "monotonicity", "r50", "r90"])
        for r in results:
            s = r.metrics["radial"]
            for radius, value in zip(r.metrics["radial_profile"]["radius"], r.metrics["radial_profile"]["value"]):
                writer.writerow([r.label, radius, f"{value:.6g}", f"{s['sigma']:.4g}", f"{s['gaussian_r2']:.4f}",
                                 f"{s['monotonicity']:.4f}", f"{s['r50']:.2f}", f"{s['r90']:.2f}"])
    paths["table"].write_text(results_table(results, thresholds))
    for r in results:
        np.save(out / f"erf_{safe_name(r.label)}.npy", r.contrib)
    return paths
