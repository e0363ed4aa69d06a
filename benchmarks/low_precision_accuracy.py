"""Top-1 of a trained classifier through every deploy path (runtime x precision), on its validation and test splits.

    python benchmarks/low_precision_accuracy.py runs/<run>/best.pth
    python benchmarks/low_precision_accuracy.py runs/<run>/best.pth --paths eager:fp32 onnxruntime:int8 --out x.md

Each path scores the run's own splits with `lsnet.train.evaluate_checkpoint(..., runtime=, precision=)`: the held-out
validation images (the run's seed) and the test split; int8 is calibrated on --calibration-images images of the
training split only (never the held-out or test images). The table gives each path's top-1 and its change against
eager fp32 on the same split, in points. Paths that cannot run here are listed with the reason.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lsnet  # noqa: F401  (registers the models)
from lsnet.deploy import Unsupported
from lsnet.train import evaluate_checkpoint

PATHS = ["eager:fp32", "eager:bf16", "onnxruntime:fp32", "onnxruntime:int8"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a classification run's best.pth")
    parser.add_argument("--paths", nargs="+", default=PATHS, help="runtime:precision pairs; eager:fp32 is the baseline")
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--calibration", default="fashion-mnist")
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--out", default=None, help="markdown file for the table")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if "eager:fp32" not in args.paths:
        args.paths.insert(0, "eager:fp32")
    top1: dict[tuple[str, str], float] = {}
    skipped = {}
    for split in args.splits:
        for path in args.paths:
            runtime, precision = path.split(":")
            try:
                result = evaluate_checkpoint(args.checkpoint, split=split, runtime=runtime, precision=precision,
                                             calibration=args.calibration,
                                             calibration_images=args.calibration_images, fuse=True, workers=0)
            except Unsupported as err:
                skipped[path] = str(err)
                continue
            top1[(split, path)] = result.top1
            print(f"{split:>5} {path:<18} top-1 {result.top1:.2f}% ({result.num_images} images)", flush=True)
    lines = [f"Checkpoint `{args.checkpoint}`; command: `python benchmarks/low_precision_accuracy.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             "| path | " + " | ".join(f"{s} top-1 | change" for s in args.splits) + " |",
             "|---" * (1 + 2 * len(args.splits)) + "|"]
    for path in args.paths:
        if path in skipped:
            continue
        cells = []
        for split in args.splits:
            value, base = top1[(split, path)], top1[(split, "eager:fp32")]
            cells += [f"{value:.2f}", "-" if path == "eager:fp32" else f"{value - base:+.2f}"]
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    lines += [f"- `{path}` n/a: {reason}" for path, reason in skipped.items()]
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
