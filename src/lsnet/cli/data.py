"""`lsnet data`: build data sets.

    lsnet data fashion-scenes --out data/fashion-scenes                     # 3000 / 500 / 500 scenes, seed 0
    lsnet data fashion-scenes --out /tmp/scenes --train 200 --val 50 --test 0 --size 128 --max-items 4
    lsnet data fashion-scenes --out data/fashion-scenes --fashion-dir ~/fmnist --overwrite

fashion-scenes writes a COCO-format detection / instance-segmentation set (annotations/instances_<split>.json,
<split>/*.png) of Fashion-MNIST items on canvases, with semantic label PNGs (labels/<split>/*.png,
labels/classes.txt: the pairs layout of lsnet.data.segmentation); see lsnet/data/fashion_scenes.py.
"""
from __future__ import annotations

import argparse

from .arguments import non_negative_int, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("data", help="build data sets (fashion-scenes)", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    scenes = actions.add_parser("fashion-scenes", help="a COCO-format detection set of Fashion-MNIST items")
    scenes.add_argument("--out", required=True, help="output folder")
    scenes.add_argument("--fashion-dir", default=None,
                        help="folder with the Fashion-MNIST IDX files (default: $LSNET_FASHION_MNIST, "
                             "/usr/share/datasets/fashion-mnist, ~/.cache/lsnet/data)")
    scenes.add_argument("--train", type=non_negative_int, default=3000, help="train scenes (Fashion-MNIST train items)")
    scenes.add_argument("--val", type=non_negative_int, default=500, help="val scenes (half of the test items)")
    scenes.add_argument("--test", type=non_negative_int, default=500, help="test scenes (the other half)")
    scenes.add_argument("--size", type=positive_int, default=256, help="canvas side in px")
    scenes.add_argument("--min-items", type=non_negative_int, default=1)
    scenes.add_argument("--max-items", type=non_negative_int, default=8)
    scenes.add_argument("--seed", type=non_negative_int, default=0)
    scenes.add_argument("--overwrite", action="store_true", help="replace splits an earlier build wrote in --out")
    return parser


def run(args: argparse.Namespace) -> int:
    import time

    from lsnet.data.fashion_scenes import build_fashion_scenes

    start = time.perf_counter()
    summary = build_fashion_scenes(args.out, fashion_dir=args.fashion_dir, num_train=args.train, num_val=args.val,
                                   num_test=args.test, size=args.size, min_items=args.min_items,
                                   max_items=args.max_items, seed=args.seed, overwrite=args.overwrite)
    for split, counts in summary["splits"].items():
        print(f"{split}: {counts['images']} scenes, {counts['annotations']} objects")
    print(f"wrote {summary['root']} in {time.perf_counter() - start:.1f} s")
    return 0
