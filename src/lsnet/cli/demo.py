"""`lsnet demo`: build every LSNet variant, check fused == unfused, time inference, print a table.

    lsnet demo
    lsnet demo --models lsnet_t --img-size 224 --batch 8 --channels-last
"""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("demo", help="build, fuse and time the LSNet models (random weights)")
    parser.add_argument("--models", nargs="+", default=["lsnet_t", "lsnet_s", "lsnet_b"])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per model (median reported)")
    parser.add_argument("--channels-last", action="store_true", help="run in channels_last memory format")
    return parser


def run(args: argparse.Namespace) -> int:
    import statistics
    import time

    import timm
    import torch

    import lsnet  # noqa: F401
    from lsnet.deploy import fuse

    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch, 3, args.img_size, args.img_size).contiguous(memory_format=fmt)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.img_size}px, "
          f"{'channels_last' if args.channels_last else 'NCHW'}")
    print(f"{'model':<20}{'params (M)':>12}{'fused (M)':>11}{'max rel diff':>14}{'img/s':>10}")
    for name in args.models:
        model = timm.create_model(name).eval().to(memory_format=fmt)
        fused = fuse(model)
        with torch.inference_mode():
            reference, out = model(x), fused(x)
            diff = ((out - reference).abs().max() / reference.abs().max()).item()
            fused(x)  # warm-up
            times = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                fused(x)
                times.append(time.perf_counter() - start)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        fused_params = sum(p.numel() for p in fused.parameters()) / 1e6
        throughput = args.batch / statistics.median(times)
        print(f"{name:<20}{params:>12.3f}{fused_params:>11.3f}{diff:>14.2e}{throughput:>10.1f}")
    return 0
