"""Common-corruption robustness, ImageNet-C style (Hendrycks & Dietterich, ICLR 2019), on any evaluation set.

The 15 benchmark corruptions x 5 severities come from the `corrupt-tta` package (a maintained port of the ImageNet-C
code; `pip install corrupt-tta` or `lsnet[robustness]`). Each image is brought to the model's input geometry first
(resize + centre crop, as ImageNet-C corrupts the 224-px crops), corrupted as HxWx3 uint8, then converted to a tensor
and normalized. Every (corruption, severity, image index) draws from its own seed, so results are deterministic given
`seed` and the same corrupted image is shown to every model.

    from lsnet.analysis.robustness import corrupt_image, evaluate_robustness
    noisy = corrupt_image(gray_28x28_uint8, "gaussian_noise", severity=3, seed=0)   # (28, 28) uint8
    gray28 = dict(img_size=28, in_chans=1, mean=(0.286,), std=(0.353,), crop_pct=1.0, interpolation="bilinear")
    summary = evaluate_robustness({"lsnet_t": model, "baseline": other}, dataset,
                                  settings={"lsnet_t": gray28, "baseline": gray28}, baseline="baseline")
    summary["mce"]["lsnet_t"]     # mean corruption error, % of the baseline's

Grayscale images (Fashion-MNIST) are repeated to 3 channels for the corruption and brought back to one channel with
the ITU-R 601 luma weights PIL uses for 'L'; colour-only effects (frost's blue tint, per-channel impulse noise) thus
become gray levels. The severity constants are ImageNet-C's, calibrated for 224-px images: at 64 px blurs, zoom and
elastic distortions are relatively stronger than on ImageNet.

Metrics (Hendrycks & Dietterich, Sec. 3): E(m, c, s) = top-1 error. CE_c = sum_s E(m, c, s) / sum_s E(base, c, s);
mCE = mean over c of CE_c (both in %). Relative CE_c = sum_s (E(m, c, s) - E_clean(m)) / sum_s (E(base, c, s) -
E_clean(base)); relative mCE its mean.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

_logger = logging.getLogger(__name__)

# the 15 ImageNet-C benchmark corruptions, in the paper's order (noise, blur, weather, digital)
CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
# ImageNet-C's 4 held-out validation corruptions
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)
_IMPULSE_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)  # corrupt-tta / ImageNet-C impulse_noise constants
_LUMA = np.array([0.299, 0.587, 0.114])


def _corrupt_tta():
    try:
        import corrupt_tta
    except ImportError as err:
        raise ImportError("corruptions need corrupt-tta: pip install 'lsnet[robustness]' (or pip install corrupt-tta)"
                          ) from err
    return corrupt_tta


def corruption_seed(seed: int, corruption: str, severity: int, index: int) -> int:
    """A 32-bit seed of its own for every (seed, corruption, severity, image index)."""
    names = CORRUPTIONS + EXTRA_CORRUPTIONS
    key = names.index(corruption) if corruption in names else sum(map(ord, corruption))
    return int(np.random.SeedSequence([seed, key, severity, index]).generate_state(1)[0])


def _impulse_noise(rgb: np.ndarray, severity: int, seed: int) -> np.ndarray:
    # corrupt-tta's impulse_noise draws from skimage's own unseeded generator; same constants, seeded here
    from skimage.util import random_noise

    noisy = random_noise(rgb / 255.0, mode="s&p", amount=_IMPULSE_AMOUNT[severity - 1], rng=seed)
    return np.clip(noisy, 0, 1) * 255


def corrupt_image(image: np.ndarray, corruption: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupt one uint8 image, (H, W), (H, W, 1) or (H, W, 3); returns uint8 of the same shape.

    Deterministic given `seed` (numpy's global generator, which corrupt-tta uses, is seeded for the call and restored
    afterwards). The float result is rounded and clipped to 0..255. severity 0 returns a copy.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"corrupt_image expects uint8 pixels in 0..255; got {image.dtype} (convert with "
                        "np.clip(x * 255, 0, 255).astype(np.uint8))")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))) or min(image.shape[:2]) < 2:
        raise ValueError(f"corrupt_image expects (H, W), (H, W, 1) or (H, W, 3) with H, W >= 2; got {image.shape}")
    if severity == 0:
        return image.copy()
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 0 (clean) or 1..5; got {severity!r}")
    if corruption not in CORRUPTIONS + EXTRA_CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; choose from {', '.join(CORRUPTIONS + EXTRA_CORRUPTIONS)}")
    gray = image.ndim == 2 or image.shape[2] == 1
    rgb = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2) if gray else image
    rgb = np.ascontiguousarray(rgb)
    if corruption == "impulse_noise":
        out = _impulse_noise(rgb, severity, seed)
    else:
        corrupt = _corrupt_tta().corrupt
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            out = corrupt(rgb, severity=severity, corruption_name=corruption)
        finally:
            np.random.set_state(state)
    out = np.asarray(out, dtype=np.float64)
    if out.shape != rgb.shape:
        raise RuntimeError(f"{corruption} returned shape {out.shape} for an image of shape {rgb.shape}")
    if gray:
        out = out @ _LUMA
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(image.shape)


class CorruptedDataset(torch.utils.data.Dataset):
    """(tensor, label) pairs from a dataset of (PIL image, label), at the model's input geometry, optionally corrupted.

    Pipeline: resize (short side to img_size / crop_pct) + centre crop img_size -> uint8 array -> corrupt_image ->
    [0, 1] tensor -> normalize(mean, std). in_chans 1 -> 'L', 3 -> 'RGB'.
    """

    def __init__(self, base, *, img_size: int, in_chans: int, mean: Sequence[float], std: Sequence[float],
                 corruption: str | None = None, severity: int = 0, seed: int = 0, crop_pct: float = 1.0,
                 interpolation: str = "bilinear"):
        from torchvision import transforms

        self.base = base
        self.corruption, self.severity, self.seed = corruption, severity, seed
        self.mode = "L" if in_chans == 1 else "RGB"
        mode = transforms.InterpolationMode(interpolation if interpolation != "random" else "bilinear")
        self.geometry = transforms.Compose([transforms.Resize(math.floor(img_size / crop_pct), mode),
                                            transforms.CenterCrop(img_size)])
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        array = np.asarray(self.geometry(image.convert(self.mode)), dtype=np.uint8)
        if self.corruption and self.severity:
            seed = corruption_seed(self.seed, self.corruption, self.severity, index)
            array = corrupt_image(array, self.corruption, self.severity, seed)
        x = torch.from_numpy(np.array(array, dtype=np.float32)).div_(255.0)
        x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
        return (x - self.mean) / self.std, int(label)


def ce_table(errors: Mapping[str, Mapping[str, Mapping[int, float]]], clean: Mapping[str, float], baseline: str,
             ) -> dict[str, dict[str, Any]]:
    """CE / relative CE per corruption and their means, every model against `baseline` (all in %).

    errors[model][corruption][severity] = top-1 error (%); clean[model] = clean error (%).
    """
    if baseline not in errors:
        raise ValueError(f"baseline {baseline!r} is not among the evaluated models {list(errors)}")
    out: dict[str, dict[str, Any]] = {}
    base = errors[baseline]
    for model, by_corruption in errors.items():
        ce, rel = {}, {}
        for corruption, by_severity in by_corruption.items():
            severities = list(by_severity)
            base_sum = sum(base[corruption][s] for s in severities)
            model_sum = sum(by_severity[s] for s in severities)
            ce[corruption] = 100.0 * model_sum / base_sum if base_sum > 0 else math.nan
            base_rel = base_sum - len(severities) * clean[baseline]
            model_rel = model_sum - len(severities) * clean[model]
            rel[corruption] = 100.0 * model_rel / base_rel if base_rel != 0 else math.nan
        out[model] = {"ce": ce, "relative_ce": rel, "mce": _nanmean(ce.values()),
                      "relative_mce": _nanmean(rel.values())}
    return out


def _nanmean(values) -> float:
    """Mean over the defined entries (a corruption where the baseline's error sum or rise is 0 gives NaN)."""
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def example_grid(image: np.ndarray, corruptions: Sequence[str], severities: Sequence[int] = SEVERITIES,
                 seed: int = 0) -> np.ndarray:
    """One uint8 mosaic: rows = corruptions, columns = clean + severities (for eyeballing the pipeline)."""
    tiles = [[image] + [corrupt_image(image, c, s, corruption_seed(seed, c, s, 0)) for s in severities]
             for c in corruptions]
    return np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0)


@torch.inference_mode()
def evaluate_robustness(models: Mapping[str, nn.Module], dataset, *, settings: Mapping[str, Mapping[str, Any]],
                        baseline: str | None = None, corruptions: Sequence[str] = CORRUPTIONS,
                        severities: Sequence[int] = SEVERITIES, seed: int = 0, batch_size: int = 128,
                        workers: int = 0, channels_last: bool = True,
                        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Top-1 accuracy of every model, clean and under every (corruption, severity); CE / mCE against `baseline`.

    dataset: (PIL image, label) pairs. settings[label]: img_size, in_chans, mean, std, crop_pct, interpolation of that
    model; models sharing settings share each corrupted batch. channels_last: run the models (converted in place) and
    inputs in channels_last memory format. Returns a JSON-ready summary (accuracies in %).
    """
    if not models:
        raise ValueError("evaluate_robustness: no models")
    baseline = baseline or next(iter(models))
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not among the models {list(models)}")
    groups: dict[tuple, list[str]] = {}
    for label in models:
        s = settings[label]
        key = (s["img_size"], s["in_chans"], tuple(s["mean"]), tuple(s["std"]), s.get("crop_pct", 1.0),
               s.get("interpolation", "bilinear"))
        groups.setdefault(key, []).append(label)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for model in models.values():
        model.eval().to(memory_format=memory_format)

    def accuracy(corruption: str | None, severity: int) -> dict[str, float]:
        correct = dict.fromkeys(models, 0)
        total = 0
        for key, labels in groups.items():
            img_size, in_chans, mean, std, crop_pct, interpolation = key
            data = CorruptedDataset(dataset, img_size=img_size, in_chans=in_chans, mean=mean, std=std,
                                    corruption=corruption, severity=severity, seed=seed, crop_pct=crop_pct,
                                    interpolation=interpolation)
            loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=workers)
            count = 0
            for x, y in loader:
                x = x.contiguous(memory_format=memory_format)
                for label in labels:
                    logits = models[label](x)
                    logits = logits[0] if isinstance(logits, tuple) else logits
                    correct[label] += int((logits.argmax(1) == y).sum())
                count += len(y)
            total = count
        return {label: 100.0 * correct[label] / max(total, 1) for label in models}

    clean = accuracy(None, 0)
    if progress:
        progress("clean: " + ", ".join(f"{k} {v:.2f}%" for k, v in clean.items()))
    acc: dict[str, dict[str, dict[str, float]]] = {label: {} for label in models}
    errors: dict[str, dict[str, dict[int, float]]] = {label: {} for label in models}
    for corruption in corruptions:
        for label in models:
            acc[label][corruption] = {}
            errors[label][corruption] = {}
        for severity in severities:
            result = accuracy(corruption, severity)
            for label, value in result.items():
                acc[label][corruption][str(severity)] = value
                errors[label][corruption][severity] = 100.0 - value
            if progress:
                progress(f"{corruption} s{severity}: " + ", ".join(f"{k} {v:.2f}%" for k, v in result.items()))
        for label in models:
            acc[label][corruption]["mean"] = float(np.mean([acc[label][corruption][str(s)] for s in severities]))
    table = ce_table(errors, {k: 100.0 - v for k, v in clean.items()}, baseline)
    return {
        "models": list(models),
        "baseline": baseline,
        "corruptions": list(corruptions),
        "severities": list(severities),
        "seed": seed,
        "num_images": len(dataset),
        "clean_accuracy": clean,
        "accuracy": acc,
        "corruption_accuracy": {k: float(np.mean([acc[k][c]["mean"] for c in corruptions])) for k in models},
        "ce": {k: v["ce"] for k, v in table.items()},
        "relative_ce": {k: v["relative_ce"] for k, v in table.items()},
        "mce": {k: v["mce"] for k, v in table.items()},
        "relative_mce": {k: v["relative_mce"] for k, v in table.items()},
        "settings": {k: {kk: (list(vv) if isinstance(vv, tuple) else vv) for kk, vv in settings[k].items()}
                     for k in models},
    }


def summary_table(summary: Mapping[str, Any]) -> str:
    """Markdown: one row per model: clean accuracy, mean corrupted accuracy, mCE, relative mCE, CE per corruption."""
    corruptions = summary["corruptions"]
    head = ["model", "clean acc", "corr. acc", "mCE", "rel. mCE"] + [c.replace("_", " ") for c in corruptions]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in summary["models"]:
        row = [model + (" (baseline)" if model == summary["baseline"] else ""),
               f"{summary['clean_accuracy'][model]:.2f}", f"{summary['corruption_accuracy'][model]:.2f}",
               f"{summary['mce'][model]:.1f}", f"{summary['relative_mce'][model]:.1f}"]
        row += [f"{summary['ce'][model][c]:.1f}" for c in corruptions]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_summary(summary: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """robustness.json (everything), robustness.csv (model, corruption, severity, accuracy, error), robustness.md."""
    import csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "robustness.json", "csv": out / "robustness.csv", "table": out / "robustness.md"}
    paths["json"].write_text(json.dumps(summary, indent=2))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "corruption", "severity", "accuracy", "error"])
        for model in summary["models"]:
            writer.writerow([model, "clean", 0, f"{summary['clean_accuracy'][model]:.4f}",
                             f"{100 - summary['clean_accuracy'][model]:.4f}"])
            for corruption in summary["corruptions"]:
                for severity in summary["severities"]:
                    value = summary["accuracy"][model][corruption][str(severity)]
                    writer.writerow([model, corruption, severity, f"{value:.4f}", f"{100 - value:.4f}"])
    paths["table"].write_text(
        f"{summary['num_images']} images, seed {summary['seed']}, severities {summary['severities']}; accuracies in %, "
        f"CE / mCE in % of the baseline ({summary['baseline']}).\n\n" + summary_table(summary))
    return paths
