"""Run-folder artifacts: curves and a short markdown report per task (classification: loss/accuracy curves and the
confusion matrix; detection: each training loss, val AP, the COCO AP and per-class AP tables; semantic: the loss,
val mIoU and the per-class IoU table).

matplotlib is optional (`pip install lsnet[viz]`); without it the plots are skipped with a warning and the report
still gets written.
"""
from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Any

import torch

from ..analysis.plots import pyplot, save_figure

_logger = logging.getLogger(__name__)


def _pyplot():
    """matplotlib.pyplot, or None (with a warning) when it is not installed: the report is written anyway."""
    try:
        return pyplot()
    except ImportError:
        _logger.warning("matplotlib is not installed; skipping plots (pip install 'lsnet[viz]')")
        return None


def plot_curves(history: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Train/val loss and val top-1 per epoch."""
    plt = _pyplot()
    if plt is None or not history:
        return None
    epochs = [row["epoch"] for row in history]
    evaluated = [row for row in history if "val_top1" in row]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    if evaluated:
        ax_loss.plot([r["epoch"] for r in evaluated], [r["val_loss"] for r in evaluated], marker="o", label="val")
        ax_acc.plot([r["epoch"] for r in evaluated], [r["val_top1"] for r in evaluated], marker="o", label="val top-1")
        if any("ema_val_top1" in r for r in evaluated):
            ax_acc.plot([r["epoch"] for r in evaluated], [r.get("ema_val_top1") for r in evaluated], marker="o",
                        label="EMA val top-1")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path, dpi=120)


def plot_confusion(confusion: torch.Tensor, classes: tuple[str, ...], path: str | Path, title: str = "") -> Path | None:
    """Row-normalized confusion matrix (rows: true class) with counts in the cells."""
    plt = _pyplot()
    if plt is None:
        return None
    counts = confusion.double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(counts)
    names = list(classes) if classes else [str(i) for i in range(n)]
    size = max(5.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
        ax.set_xticks(range(n), names, rotation=45, ha="right")
        ax.set_yticks(range(n), names)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    return save_figure(fig, path, dpi=120)


def machine_summary() -> str:
    import os

    threads = torch.get_num_threads()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores visible, {threads} torch "
            f"threads, {gpu}; torch {torch.__version__}, Python {platform.python_version()}")


def _run_table(config: dict[str, Any], result, summary: dict[str, Any], input_text: str) -> list[str]:
    """The markdown table of how a run trained: epochs, lr, throughput, time, size, input, processes, machine."""
    split = summary["final_split"]
    lines = [
        "| | |",
        "|---|---|",
        f"| epochs | {summary['epochs_done']} (+{config.get('cooldown_epochs', 0)} cooldown) |",
        f"| learning rate | {summary['lr']:.3g} peak, global batch {summary['global_batch']} |",
        f"| training throughput | {summary['train_images_per_sec']:.0f} img/s |",
        f"| evaluation throughput ({split}) | {result.images_per_sec:.0f} img/s (model), "
        f"{result.end_to_end_images_per_sec:.0f} img/s (with data loading) |",
        f"| wall time | {summary['wall_seconds'] / 60:.1f} min ({summary['train_seconds'] / 60:.1f} min training) |",
        f"| parameters | {summary['params'] / 1e6:.3f} M |",
        f"| input | {input_text} |",
        f"| processes | {summary['world_size']} on {summary['device']} |",
        f"| machine | {machine_summary()} |",
    ]
    if summary.get("skipped_images"):
        lines.append(f"| unreadable images skipped | {summary['skipped_images']} |")
    return lines


def write_report(run_dir: str | Path, *, config: dict[str, Any], result, history: list[dict[str, Any]],
                 summary: dict[str, Any]) -> Path:
    """report.md: what was trained, how, the final numbers, per-class accuracy, and the artifacts."""
    run_dir = Path(run_dir)
    split, weights = summary["final_split"], ", EMA weights" if config.get("model_ema") else ""
    best = summary["best_val_top1"]
    if best is None:
        selection = f"No validation split (`--val-size 0`): `best.pth` is the last epoch ({summary['best_epoch']})."
    else:
        selection = (f"Validation: best val top-1 {best:.2f}% at epoch {summary['best_epoch']} on {summary['num_val']} "
                     f"val images ({summary['val_source']}); `best.pth` / `best.safetensors` are that epoch.")
    if split == "val":
        headline = (f"Val top-1 **{result.top1:.2f}%**, top-{result.topk} {result.top5:.2f}% on {result.num_images} "
                    f"val images (`best.pth`{weights}; the data set has no test split).")
    else:
        headline = (f"Test top-1 **{result.top1:.2f}%**, top-{result.topk} {result.top5:.2f}% on {result.num_images} "
                    f"{split} images, evaluated once at the end with `best.pth` (epoch {summary['best_epoch']}"
                    f"{weights}).")
    size = f"{config['in_chans']} x {config['img_size']} x {config['img_size']}"
    lines = [f"# {config['model']} on {config['dataset']}", "", headline, selection, "",
             *_run_table(config, result, summary, size)]
    lines += ["", "## Recipe", "", "```yaml"]
    keys = ("config", "opt", "lr", "weight_decay", "batch_size", "epochs", "warmup_epochs", "sched", "min_lr",
            "smoothing", "aa", "scale", "reprob", "mixup", "cutmix", "clip_grad", "clip_mode", "drop_path", "model_ema",
            "distillation_type", "teacher", "seed", "val_size")
    lines += [f"{k}: {json.dumps(config.get(k))}" for k in keys if k in config]
    lines += ["```", "", f"## Per-class accuracy ({split})", "", f"| class | {split} accuracy (%) |", "|---|---|"]
    names = result.classes or tuple(str(i) for i in range(len(result.confusion)))
    lines += [f"| {name} | {acc:.2f} |" for name, acc in zip(names, result.per_class_accuracy)]
    lines += ["", "## Curves", "", "![curves](curves.png)", "", "![confusion matrix](confusion_matrix.png)", "",
              "## Files", "",
              "- `config.yaml`: the resolved configuration (re-run with `lsnet train --config config.yaml`)",
              "- `metrics.jsonl`: one line per epoch (train loss, val loss / top-1 / top-5)",
              f"- `eval.json`: the {split} evaluation of `best.pth`, per-class and confusion matrix",
              "- `last.pth`: full training state (resume with `lsnet train --resume <this folder>`)",
              "- `best.pth`, `best.safetensors`: the epoch with the best val top-1 (full state / weights only)", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


# ------------------------------------------------------------------------------------------------------ detection
def plot_loss_and_metric_curves(history: list[dict[str, Any]], path: str | Path, *,
                                metrics: tuple[tuple[str, str], ...], metric_axis: tuple[str, str],
                                loss_title: str = "training losses") -> Path | None:
    """Each named training loss (and their sum) per epoch on the left; the `metrics` rows' keys (key, label) per
    evaluated epoch on the right, `metric_axis` = (y label, title). The curves of detection and semantic runs."""
    plt = _pyplot()
    if plt is None or not history:
        return None
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], marker="o", label="sum", color="black")
    for name in history[-1].get("train_losses", {}):
        ax_loss.plot(epochs, [row.get("train_losses", {}).get(name) for row in history], marker=".", label=name)
    for key, label in metrics:
        rows = [row for row in history if key in row]
        if rows:
            ax_metric.plot([row["epoch"] for row in rows], [row[key] for row in rows], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title=loss_title)
    ax_metric.set(xlabel="epoch", ylabel=metric_axis[0], title=metric_axis[1])
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)


def write_detection_report(run_dir: str | Path, *, config: dict[str, Any], result, history: list[dict[str, Any]],
                           summary: dict[str, Any]) -> Path:
    """report.md of a detection run: the COCO AP table of best.pth, per-class AP, the run, the recipe, curves."""
    run_dir = Path(run_dir)
    split, weights = summary["final_split"], ", EMA weights" if config.get("model_ema") else ""
    best = summary.get("best_val_bbox_AP")
    if best is None:
        selection = f"No validation split: `best.pth` is the last epoch ({summary['best_epoch']})."
    else:
        selection = (f"Validation: best val bbox AP {best:.2f} at epoch {summary['best_epoch']} on "
                     f"{summary['num_val']} val images ({summary['val_source']}); `best.pth` / `best.safetensors` "
                     "are that epoch.")
    scored = ", ".join(f"{kind} AP **{scores['AP']:.2f}**" for kind, scores in result.scores.items())
    if split == "val":
        headline = f"Val {scored} on {result.num_images} val images (`best.pth`{weights}; no test split)."
    else:
        headline = (f"Test {scored} on {result.num_images} {split} images, evaluated once at the end with `best.pth` "
                    f"(epoch {summary['best_epoch']}{weights}).")
    stats = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    lines = [f"# {config['detector']} {config['model']} on {config['dataset']}", "", headline, selection, "",
             *_run_table(config, result, summary, f"resized to min side {config['min_size']} / max side "
                                                  f"{config['max_size']} px"),
             "", f"## COCO AP ({split}, pycocotools COCOeval, percent)", "", "| | " + " | ".join(stats) + " |",
             "|---" * (len(stats) + 1) + "|"]
    lines += [f"| {kind} | " + " | ".join(f"{scores[s]:.2f}" for s in stats) + " |"
              for kind, scores in result.scores.items()]
    kinds = list(result.scores)
    lines += ["", f"## Per-class AP ({split})", "", "| class | " + " | ".join(f"{k} AP" for k in kinds) + " |",
              "|---" * (len(kinds) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{result.scores[k]['per_class'][name]:.2f}" for k in kinds) + " |"
              for name in result.classes]
    lines += ["", "## Recipe", "", "```yaml"]
    keys = ("config", "detector", "model", "backbone_checkpoint", "initial_checkpoint", "freeze_bn", "min_size",
            "max_size", "hflip", "scale_jitter", "opt", "lr", "weight_decay", "batch_size", "epochs", "sched",
            "decay_milestones", "decay_rate", "warmup_updates", "warmup_epochs", "warmup_lr", "clip_grad",
            "model_ema", "seed")
    lines += [f"{k}: {json.dumps(config.get(k))}" for k in keys if k in config]
    lines += ["```", "", "## Curves", "", "![curves](curves.png)", "", "## Files", "",
              "- `config.yaml`: the resolved configuration (re-run with `lsnet train --config config.yaml`)",
              "- `metrics.jsonl`: one line per epoch (train loss and each named loss, val AP)",
              f"- `eval.json`: the {split} evaluation of `best.pth` (every COCO AP, per class)",
              "- `last.pth`: full training state (resume with `lsnet train --resume <this folder>`)",
              "- `best.pth`, `best.safetensors`: the epoch with the best val bbox AP (full state / weights only); "
              "`lsnet predict --checkpoint best.pth IMAGES --out DIR` draws its detections", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


# ------------------------------------------------------------------------------------------- semantic segmentation
def write_semantic_report(run_dir: str | Path, *, config: dict[str, Any], result, history: list[dict[str, Any]],
                          summary: dict[str, Any]) -> Path:
    """report.md of a semantic-segmentation run: mIoU / mAcc / aAcc of best.pth, per-class IoU and Acc, the run,
    the recipe, curves."""
    run_dir = Path(run_dir)
    split, weights = summary["final_split"], ", EMA weights" if config.get("model_ema") else ""
    best = summary.get("best_val_mIoU")
    if best is None:
        selection = f"No validation split: `best.pth` is the last epoch ({summary['best_epoch']})."
    else:
        selection = (f"Validation: best val mIoU {best:.2f} at epoch {summary['best_epoch']} on {summary['num_val']} "
                     f"val images ({summary['val_source']}); `best.pth` / `best.safetensors` are that epoch.")
    scores = result.scores
    scored = f"mIoU **{scores['mIoU']:.2f}**, mAcc {scores['mAcc']:.2f}, aAcc {scores['aAcc']:.2f}"
    if split == "val":
        headline = f"Val {scored} on {result.num_images} val images (`best.pth`{weights}; no test split)."
    else:
        headline = (f"Test {scored} on {result.num_images} {split} images, evaluated once at the end with `best.pth` "
                    f"(epoch {summary['best_epoch']}{weights}).")
    side = f"short side {config['short_side']}" if config.get("short_side") else "native size"
    inference = (f"{config['test_mode']} inference at {side}" + (" + flip" if config.get("test_flip") else "")
                 + (f", scales {config['test_scales']}" if list(config.get("test_scales", [1.0])) != [1.0] else ""))
    crop = f"{config['crop_size'][0]} x {config['crop_size'][1]} training crops; {inference}"
    lines = [f"# {config['segmenter']} {config['model']} on {config['dataset']}", "", headline, selection, "",
             *_run_table(config, result, summary, crop),
             "", f"## Per-class IoU ({split}, percent; classes absent from labels and predictions: nan, not "
                 "averaged)", "", "| class | IoU | Acc |", "|---|---|---|"]
    lines += [f"| {name} | {entry['IoU']:.2f} | {entry['Acc']:.2f} |" for name, entry in scores["per_class"].items()]
    lines += ["", "## Recipe", "", "```yaml"]
    keys = ("config", "segmenter", "model", "backbone_checkpoint", "initial_checkpoint", "freeze_bn", "crop_size",
            "seg_scale", "ratio_range", "cat_max_ratio", "hflip", "photometric", "aux_weight", "ignore_index", "opt",
            "lr", "weight_decay", "batch_size", "epochs", "sched", "decay_rate", "min_lr", "warmup_updates",
            "warmup_epochs", "warmup_lr", "drop_path", "clip_grad", "model_ema", "seed")
    lines += [f"{k}: {json.dumps(config.get(k))}" for k in keys if k in config]
    lines += ["```", "", "## Curves", "", "![curves](curves.png)", "", "## Files", "",
              "- `config.yaml`: the resolved configuration (re-run with `lsnet train --config config.yaml`)",
              "- `metrics.jsonl`: one line per epoch (train loss and its parts, val mIoU / mAcc / aAcc)",
              f"- `eval.json`: the {split} evaluation of `best.pth` (scores, per class, confusion matrix)",
              "- `last.pth`: full training state (resume with `lsnet train --resume <this folder>`)",
              "- `best.pth`, `best.safetensors`: the epoch with the best val mIoU (full state / weights only); "
              "`lsnet predict --checkpoint best.pth IMAGES --out DIR` writes colour overlays and label PNGs", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
