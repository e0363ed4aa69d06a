"""The CPU tables of the Fashion-scenes runs (benchmarks/detection_cpu.sh, benchmarks/segmentation_cpu.sh): one row
per run folder, from its files; detection and semantic runs each get their own table.

    python benchmarks/fashion_scenes_table.py runs/fashion_scenes > results/fashion_scenes/table.md
    python benchmarks/fashion_scenes_table.py runs/fashion_scenes --copy results/fashion_scenes   # + summaries

Semantic rows also give the segmenter's GMACs of one 512x512 forward (lsnet.analysis.flops.count_macs, the run's
class count, no auxiliary head), rebuilt from the run's best.safetensors.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import yaml

SUMMARY_FILES = ("config.yaml", "eval.json", "metrics.jsonl", "report.md")
DETECTION_HEADER = ("| run | test bbox AP / AP50 | test segm AP / AP50 | val bbox AP of best.pth | params (M) | "
                    "train img/s | test img/s (model) | training images seen | train min |\n"
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
SEMANTIC_HEADER = ("| run | test mIoU | test mAcc / aAcc | val mIoU of best.pth | params (M) | GMACs 512x512 | "
                   "train img/s | test img/s (model) | training images seen | train min |\n"
                   "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def _training(run: Path) -> tuple[str, float, float, float]:
    """(params in M from report.md, images seen, train img/s, train minutes) of a run folder."""
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    params = re.search(r"\| parameters \| ([\d.]+) M \|", (run / "report.md").read_text()).group(1)
    seconds = sum(r["train_seconds"] for r in history)
    seen = sum(r["train_images_per_sec"] * r["train_seconds"] for r in history)
    return params, seen, seen / seconds, seconds / 60


def detection_row(run: Path, result: dict) -> str:
    params, seen, rate, minutes = _training(run)
    segm = result.get("segm", {})
    segm_text = f"{segm['AP']:.2f} / {segm['AP50']:.2f}" if segm else "-"
    return (f"| {run.name} | {result['bbox']['AP']:.2f} / {result['bbox']['AP50']:.2f} | {segm_text} | "
            f"{result['best_val_bbox_AP']:.2f} (epoch {result['best_epoch']}) | {params} | {rate:.2f} | "
            f"{result['images_per_sec']:.1f} | {round(seen)} | {minutes:.1f} |")


def semantic_gmacs(run: Path) -> float:
    from lsnet.analysis.flops import count_macs
    from lsnet.segmentation import build_segmenter
    from lsnet.train.tasks.base import run_metadata

    meta = run_metadata(run / "best.safetensors", "semantic", "segmenter_config")
    return count_macs(build_segmenter(**meta["segmenter_config"]), (3, 512, 512)) / 1e9


def semantic_row(run: Path, result: dict) -> str:
    params, seen, rate, minutes = _training(run)
    return (f"| {run.name} | {result['mIoU']:.2f} | {result['mAcc']:.2f} / {result['aAcc']:.2f} | "
            f"{result['best_val_mIoU']:.2f} (epoch {result['best_epoch']}) | {params} | {semantic_gmacs(run):.2f} | "
            f"{rate:.2f} | {result['images_per_sec']:.1f} | {round(seen)} | {minutes:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="folder holding the run folders")
    parser.add_argument("--copy", type=Path, help="also copy each run's summary files into this folder")
    args = parser.parse_args()
    tables: dict[str, list[str]] = {"detection": [], "semantic": []}
    for run in sorted(p for p in args.runs.iterdir() if (p / "eval.json").exists()):
        task = yaml.safe_load((run / "config.yaml").read_text()).get("task", "classification")
        if task not in tables:
            continue
        result = json.loads((run / "eval.json").read_text())
        tables[task].append(detection_row(run, result) if task == "detection" else semantic_row(run, result))
        if args.copy:
            (args.copy / run.name).mkdir(parents=True, exist_ok=True)
            for name in SUMMARY_FILES:
                shutil.copy2(run / name, args.copy / run.name / name)
    for task, header in (("detection", DETECTION_HEADER), ("semantic", SEMANTIC_HEADER)):
        if tables[task]:
            print(f"## {task} (test split; best.pth chosen on val)\n\n{header}\n" + "\n".join(tables[task]) + "\n")


if __name__ == "__main__":
    main()
