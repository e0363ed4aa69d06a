"""Figures for the analysis tools (matplotlib, imported lazily; `pip install lsnet[viz]`).

    from lsnet.analysis import plots
    plots.erf_heatmap(contrib, "erf.png", title="lsnet_t")
    plots.erf_comparison(results, "erf_compare.png")           # results from lsnet.analysis.erf.compute_erfs
    plots.overlay(image_uint8, heat, "overlay.png")
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DECADES = 3.0  # ERF heatmaps show log10(contribution / peak) over this many decades


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, or an ImportError with the install hint."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'lsnet[viz]' (or pip install matplotlib)") from err
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, tight: bool = True, dpi: float | None = None) -> Path:
    """Lay out (unless `tight` is False), write `fig` to `path` (at `dpi`, default the figure's), close it."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return Path(path)


def log_relative(contrib: np.ndarray, decades: float = DECADES) -> np.ndarray:
    """log10(contrib / max), clipped to [-decades, 0]: scale-free, so models with different gradient magnitudes
    share one colour scale."""
    data = np.asarray(contrib, dtype=np.float64)
    peak = data.max()
    if not peak > 0:
        return np.full(data.shape, -decades)
    return np.log10(np.maximum(data / peak, 10.0 ** -decades))


def erf_heatmap(contrib: np.ndarray, path: str | os.PathLike, title: str = "", decades: float = DECADES) -> Path:
    """One ERF as a log-scaled heatmap PNG (colour = log10 of the contribution relative to the peak)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.6), dpi=120)
    image = ax.imshow(log_relative(contrib, decades), cmap="RdYlGn", vmin=-decades, vmax=0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, orientation="horizontal", fraction=0.05, pad=0.03,
                 label="log10(contribution / peak)")
    return save_figure(fig, path)


def erf_comparison(results: Sequence[Any], path: str | os.PathLike, decades: float = DECADES,
                   thresholds: Sequence[float] = (0.2, 0.5, 0.99), suptitle: str = "") -> Path:
    """Side-by-side ERFs (one heatmap per model, RepLKNet area ratios underneath) and their radial profiles."""
    plt = pyplot()
    n = len(results)
    fig = plt.figure(figsize=(2.6 * n + 3.6, 3.6), dpi=130)
    grid = fig.add_gridspec(1, n + 1, width_ratios=[1] * n + [1.35], wspace=0.08)
    image = None
    for i, r in enumerate(results):
        ax = fig.add_subplot(grid[0, i])
        image = ax.imshow(log_relative(r.contrib, decades), cmap="RdYlGn", vmin=-decades, vmax=0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(r.label, fontsize=9)
        ratios = " ".join(f"{float(t) * 100:g}%:{r.metrics['area_ratio'][str(float(t))]['ratio']:.2f}"
                          for t in thresholds)
        ax.set_xlabel(f"s{r.stride} | {ratios}" if r.stride else ratios, fontsize=7)
    ax = fig.add_subplot(grid[0, n])
    for r in results:
        profile = r.metrics["radial_profile"]
        ax.semilogy(profile["radius"], np.maximum(profile["value"], 1e-6), label=r.label, lw=1.3)
    ax.set_xlabel("radius (px)", fontsize=8)
    ax.set_ylabel("ring mean / peak", fontsize=8)
    ax.set_ylim(10.0 ** -decades, 1.5)
    ax.tick_params(labelsize=7)
    ax.yaxis.set_label_position("right")
    ax.yaxis.tick_right()
    ax.legend(fontsize=6, loc="lower left")
    ax.set_title("radial profile", fontsize=9)
    if image is not None:
        cax = fig.add_axes([0.13, 0.06, 0.3, 0.025])
        fig.colorbar(image, cax=cax, orientation="horizontal")
        cax.tick_params(labelsize=6)
        cax.set_title("log10(contribution / peak)   (below each map: RepLKNet area ratio at t)", fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.92, top=0.86, bottom=0.2)
    return save_figure(fig, path, tight=False)


def upsample(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of an (h, w) map to size=(H, W)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    tensor = torch.as_tensor(np.asarray(heat, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def normalize01(heat: np.ndarray) -> np.ndarray:
    heat = np.asarray(heat, dtype=np.float64)
    low, high = np.percentile(heat, 1), np.percentile(heat, 99.5)
    return np.clip((heat - low) / (high - low), 0, 1) if high > low else np.zeros_like(heat)


def overlay(image: np.ndarray, heat: np.ndarray, path: str | os.PathLike, title: str = "", alpha: float = 0.5,
            cmap: str = "jet") -> Path:
    """Upsample `heat` (h, w) to the image, stretch to [0, 1] (1st-99.5th percentile), blend and save a PNG."""
    plt = pyplot()
    image = np.asarray(image)
    heat = normalize01(upsample(heat, image.shape[:2]))
    fig, ax = plt.subplots(figsize=(3.4, 3.6), dpi=120)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
    ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return save_figure(fig, path)


def channel_grid(maps: np.ndarray, path: str | os.PathLike, title: str = "", labels: Sequence[str] = ()) -> Path:
    """A row of feature maps (k, h, w), each stretched to its own range."""
    plt = pyplot()
    k = len(maps)
    fig, axes = plt.subplots(1, k, figsize=(1.5 * k, 1.9), dpi=120, squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.imshow(normalize01(maps[i]), cmap="viridis")
        ax.set_axis_off()
        if i < len(labels):
            ax.set_title(labels[i], fontsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    return save_figure(fig, path)


def save_image(image: np.ndarray, path: str | os.PathLike) -> Path:
    from PIL import Image

    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
    return Path(path)


def robustness_plot(summary: dict[str, Any], path: str | os.PathLike) -> Path:
    """Per-corruption accuracy (mean over severities) per model as grouped bars, and accuracy against severity."""
    plt = pyplot()
    models = list(summary["models"])
    corruptions = list(summary["corruptions"])
    severities = list(summary["severities"])
    fig, (ax_bar, ax_sev) = plt.subplots(1, 2, figsize=(13, 4.2), dpi=120, gridspec_kw=dict(width_ratios=[3, 1]))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(corruptions))
    for i, model in enumerate(models):
        acc = [summary["accuracy"][model][c]["mean"] for c in corruptions]
        ax_bar.bar(x + (i - (len(models) - 1) / 2) * width, acc, width, label=model)
        clean = summary["clean_accuracy"][model]
        ax_bar.axhline(clean, color=f"C{i}", ls="--", lw=0.8)
        by_severity = [np.mean([summary["accuracy"][model][c][str(s)] for c in corruptions]) for s in severities]
        ax_sev.plot([0, *severities], [clean, *by_severity], marker="o", label=model)
    ax_bar.set_xticks(x, [c.replace("_", "\n") for c in corruptions], fontsize=7)
    ax_bar.set_ylabel("top-1 accuracy (%), mean over severities")
    ax_bar.set_title("per corruption (dashed: clean)", fontsize=9)
    ax_bar.legend(fontsize=7)
    ax_sev.set_xlabel("severity (0 = clean)")
    ax_sev.set_ylabel("mean accuracy over corruptions (%)")
    ax_sev.set_xticks([0, *severities])
    ax_sev.legend(fontsize=7)
    return save_figure(fig, path)
