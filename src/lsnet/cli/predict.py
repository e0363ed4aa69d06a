"""`lsnet predict`: run a detector (`lsnet train --task detection`) or a semantic segmenter (`--task semantic`) on
image files; the task comes from the checkpoint.

    lsnet predict --checkpoint runs/<run>/best.pth images/*.png --out preds/
    lsnet predict --checkpoint runs/<run>/best.safetensors scene.jpg --out preds/ --score-threshold 0.5

The model is rebuilt from the checkpoint's stored config. A detector writes, under --out:
  <image stem>.png   the image with the detections of score >= --score-threshold drawn (boxes, "class score"
                     labels, instance masks for Mask R-CNN)
  results.json       COCO results of every detection the model returns (its own score floor, e.g. 0.05):
                     image_id, category_id (the training set's COCO ids), bbox [x, y, w, h] pixels, score, and
                     segmentation (RLE) for Mask R-CNN
  images.json        COCO `images` entries: image ids are the images' positions on the command line (1, 2, ...),
                     with file_name, width, height and the drawn picture's name
A semantic segmenter (the run's inference settings: --test-mode, --short-side, ...) writes:
  <image stem>.png         the image with each pixel's predicted class colour blended in (--alpha)
  <image stem>_labels.png  8-bit class indices 0..K-1 at the image's size (the run's class order)
  images.json              file_name, width, height, both PNGs' names and the pixel count of each predicted class
"""
from __future__ import annotations

import argparse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("predict", help="draw a trained detector's boxes or a segmenter's classes",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="best.pth / last.pth / best.safetensors of a detection or semantic run")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--out", required=True, help="folder for the pictures and the JSON files")
    parser.add_argument("--score-threshold", type=_fraction, default=0.3, help="detection: draw detections scoring "
                        "at least this (default: 0.3; results.json keeps every detection)")
    parser.add_argument("--alpha", type=_fraction, default=0.5,
                        help="semantic: opacity of the class colours over the image (default: 0.5)")
    parser.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                        help="use the EMA weights (default: when the checkpoint has them)")
    parser.add_argument("--device", default="auto")
    return parser


def run(args: argparse.Namespace) -> int:
    from lsnet.checkpoints import read_checkpoint_config

    if read_checkpoint_config(args.checkpoint).get("task") == "semantic":
        from lsnet.train.tasks.semantic import predict_images as segment_images

        done = segment_images(args.checkpoint, args.images, args.out, alpha=args.alpha, device=args.device,
                              use_ema=args.ema)
        print(f"{len(done['images'])} images: colour overlays and label PNGs ({len(done['classes'])} classes) in "
              f"{args.out}, listed in {args.out}/images.json")
        return 0
    from lsnet.train.tasks.detection import predict_images

    done = predict_images(args.checkpoint, args.images, args.out, score_threshold=args.score_threshold,
                          device=args.device, use_ema=args.ema)
    kept = sum(r["score"] >= args.score_threshold for r in done["results"])
    print(f"{len(done['images'])} images: {kept} detections with score >= {args.score_threshold} drawn, "
          f"{len(done['results'])} in {args.out}/results.json")
    return 0
