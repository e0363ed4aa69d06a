"""Side-by-side picture of several PNGs (e.g. `lsnet predict` outputs) for the README.

    lsnet predict --checkpoint runs/<run>/best.pth data/fashion-scenes/test/00000{1,2,3,4}.png --out /tmp/pred
    python benchmarks/montage.py /tmp/pred/00000{1,2,3,4}.png --out docs/figures/<name>.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image


def montage(paths: list[Path], gap: int = 4) -> Image.Image:
    """The images left to right on white, `gap` px apart, top-aligned."""
    images = [Image.open(p).convert("RGB") for p in paths]
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, max(im.height for im in images)), "white")
    x = 0
    for im in images:
        canvas.paste(im, (x, 0))
        x += im.width + gap
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gap", type=int, default=4)
    args = parser.parse_args()
    montage(args.images, args.gap).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
