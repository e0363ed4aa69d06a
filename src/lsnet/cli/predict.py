"""`lsnet predict`: run a detector trained with `lsnet train --task detection` on image files.

    lsnet predict --checkpoint runs/<run>/best.pth images/*.png --out preds/
    lsnet predict --checkpoint runs/<run>/best.safetensors scene.jpg --out preds/ --score-threshold 0.5

The detector is rebuilt from the checkpoint's stored config. Writes, under --out:
  <image stem>.png   the image with the detections of score >= --score-threshold drawn (boxes, "class score"
                     labels, instance masks for Mask R-CNN)
  results.json       COCO results of every detection the model returns (its own score floor, e.g. 0.05):
                     image_id, category_id (the training set's COCO ids), bbox [x, y, w, h] pixels, score, and
                     segmentation (RLE) for Mask R-CNN
  images.json        COCO `images` entries: image ids are the images' positions on the command line (1, 2, ...),
                     with file_name, width, height and the drawn picture's name
"""
from __future__ import annotations

import argparse


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a score in [0, 1], got {text!r}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("predict", help="draw a trained detector's boxes and masks, write COCO results",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="best.pth / last.pth / best.safetensors of a detection run")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--out", required=True, help="folder for the pictures, results.json and images.json")
    parser.add_argument("--score-threshold", type=_score, default=0.3, help="draw detections scoring at least this "
                        "(default: 0.3; results.json keeps every detection)")
    parser.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                        help="use the EMA weights (default: when the checkpoint has them)")
    parser.add_argument("--device", default="auto")
    return parser


def run(args: argparse.Namespace) -> int:
    from lsnet.train.tasks.detection import predict_images

    done = predict_images(args.checkpoint, args.images, args.out, score_threshold=args.score_threshold,
                          device=args.device, use_ema=args.ema)
    kept = sum(r["score"] >= args.score_threshold for r in done["results"])
    print(f"{len(done['images'])} images: {kept} detections with score >= {args.score_threshold} drawn, "
          f"{len(done['results'])} in {args.out}/results.json")
    return 0
