"""The CPU table of the detection runs (benchmarks/detection_cpu.sh): one row per run folder, from its files.

    python benchmarks/detection_table.py runs/fashion_scenes > results/fashion_scenes/table.md
    python benchmarks/detection_table.py runs/fashion_scenes --copy results/fashion_scenes   # + summaries
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

SUMMARY_FILES = ("config.yaml", "eval.json", "metrics.jsonl", "report.md")


def row(run: Path) -> str:
    result = json.loads((run / "eval.json").read_text())
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    report = (run / "report.md").read_text()
    params = re.search(r"\| parameters \| ([\d.]+) M \|", report).group(1)
    seen = sum(r["train_images_per_sec"] * r["train_seconds"] for r in history)
    train_rate = seen / sum(r["train_seconds"] for r in history)
    segm = result.get("segm", {})
    segm_text = f"{segm['AP']:.2f} / {segm['AP50']:.2f}" if segm else "-"
    return (f"| {run.name} | {result['bbox']['AP']:.2f} / {result['bbox']['AP50']:.2f} | {segm_text} | "
            f"{result['best_val_bbox_AP']:.2f} (epoch {result['best_epoch']}) | {params} | {train_rate:.2f} | "
            f"{result['images_per_sec']:.1f} | {round(seen)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="folder holding the run folders")
    parser.add_argument("--copy", type=Path, help="also copy each run's summary files into this folder")
    args = parser.parse_args()
    runs = sorted(p for p in args.runs.iterdir() if (p / "eval.json").exists())
    print("| run | test bbox AP / AP50 | test segm AP / AP50 | val bbox AP of best.pth | params (M) | "
          "train img/s | test img/s (model) | training images seen |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        print(row(run))
        if args.copy:
            (args.copy / run.name).mkdir(parents=True, exist_ok=True)
            for name in SUMMARY_FILES:
                shutil.copy2(run / name, args.copy / run.name / name)


if __name__ == "__main__":
    main()
