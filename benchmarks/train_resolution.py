"""Training-step speed of the `make run` model (LSNet-T, 1 channel, 10 classes) against input size.

    python benchmarks/train_resolution.py                      # 48..96 px, batch 128, 2 threads
    python benchmarks/train_resolution.py --sizes 64 96 --batch 256 --threads 1

Interleaved (each round times one AdamW step of every size), channels_last as the preset trains. The ratio column
is time per image relative to `--base` (the preset's 64 px). This is why the CPU preset trains at 64 px: LSNet's
stride-64 layout leaves 1x1 maps in stage 4 there, and sizes just above it pay for 2x2 maps in full.
"""
from __future__ import annotations

import argparse

import timm
import torch
import torch.nn.functional as F

import lsnet  # noqa: F401
from lsnet.analysis.timing import time_interleaved


def training_step(size: int, batch: int, model_name: str):
    """One AdamW step of a fresh model on a fixed random batch of shape (batch, 1, size, size)."""
    model = timm.create_model(model_name, in_chans=1, num_classes=10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(batch, 1, size, size).to(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (batch,))

    def step():
        loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 64, 72, 80, 96])
    parser.add_argument("--base", type=int, default=64, help="size the ratios refer to (one of --sizes)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--model", default="lsnet_t")
    args = parser.parse_args()
    if args.base not in args.sizes:
        parser.error(f"--base {args.base} is not among --sizes {args.sizes}; add it or pick another --base")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = {size: training_step(size, args.batch, args.model) for size in args.sizes}
    timings = time_interleaved(steps, rounds=args.rounds, threads=args.threads)
    base = timings[args.base].median
    print(f"{args.model} training steps, batch {args.batch}, {args.threads} thread(s), {args.rounds} rounds")
    print(f"| input | img/s (median) | time per image vs {args.base} px |")
    print("|---|---|---|")
    for size in args.sizes:
        seconds = timings[size].median
        print(f"| {size} px | {args.batch / seconds:.0f} | {seconds / base:.2f}x |")


if __name__ == "__main__":
    main()
