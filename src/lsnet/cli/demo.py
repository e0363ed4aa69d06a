"""`lsnet demo`: build every LSNet variant, check fused == unfused, time inference (interleaved), print a table.

    lsnet demo
    lsnet demo --models lsnet_t --img-size 224 --batch 8 --channels-last
"""
from __future__ import annotations

import argparse

from .arguments import model_name, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("demo", help="build, fuse and time the LSNet models (random weights)")
    parser.add_argument("--models", nargs="+", type=model_name, default=["lsnet_t", "lsnet_s", "lsnet_b"])
    parser.add_argument("--img-size", type=positive_int, default=224)
    parser.add_argument("--batch", type=positive_int, default=8)
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="timed rounds, all models interleaved (median reported)")
    parser.add_argument("--channels-last", action="store_true", help="run in channels_last memory format")
    return parser


def run(args: argparse.Namespace) -> int:
    import functools

    import timm
    import torch

    import lsnet  # noqa: F401
    from lsnet.analysis.timing import time_interleaved
    from lsnet.deploy import fuse

    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch, 3, args.img_size, args.img_size).contiguous(memory_format=fmt)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.img_size}px, "
          f"{'channels_last' if args.channels_last else 'NCHW'}")
    print(f"{'model':<20}{'params (M)':>12}{'fused (M)':>11}{'max rel diff':>14}{'img/s':>10}")
    rows, runners = {}, {}
    for name in args.models:
        model = timm.create_model(name).eval().to(memory_format=fmt)
        fused = fuse(model)
        with torch.inference_mode():
            reference, out = model(x), fused(x)
        diff = ((out - reference).abs().max() / reference.abs().max()).item()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        fused_params = sum(p.numel() for p in fused.parameters()) / 1e6
        rows[name], runners[name] = (params, fused_params, diff), functools.partial(fused, x)
    with torch.inference_mode():
        timings = time_interleaved(runners, rounds=args.rounds)
    for name, (params, fused_params, diff) in rows.items():
        throughput = args.batch / timings[name].median
        print(f"{name:<20}{params:>12.3f}{fused_params:>11.3f}{diff:>14.2e}{throughput:>10.1f}")
    return 0
