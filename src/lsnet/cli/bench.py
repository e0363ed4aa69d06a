"""`lsnet bench`: compare models' params, GMACs, images/s, latency and peak memory in one interleaved run.

    lsnet bench lsnet_t efficientvit_m4 repvit_m0_9 --batch 1 32 --threads 2 --fuse --channels-last
    lsnet bench lsnet_t --onnxruntime --batch 1 --out results/bench_ort
    lsnet bench lsnet_t lsnet_s --accuracy accuracy.json     # {"lsnet_t": 74.9, ...} -> accuracy vs img/s plot
"""
from __future__ import annotations

import argparse

from .arguments import json_mapping, model_name, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("bench", help="benchmark models against each other (interleaved)")
    parser.add_argument("models", nargs="+", type=model_name, help="timm model names (lsnet models are registered)")
    parser.add_argument("--batch", nargs="+", type=positive_int, default=[1, 32])
    parser.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--img-size", type=positive_int, default=224)
    parser.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=True,
                        help="reparameterize (fuse BN / RepVGG branches) before timing")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--onnxruntime", action="store_true", help="also time each model exported to ONNX")
    parser.add_argument("--rounds", type=positive_int, default=10)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    parser.add_argument("--accuracy", type=json_mapping, help="JSON file {model: top-1} for the accuracy-vs-speed plot")
    parser.add_argument("--out", default="results/bench", help="folder for bench.csv / .json / .png")
    return parser


def run(args: argparse.Namespace) -> int:
    import platform

    import torch

    import lsnet  # noqa: F401
    from lsnet.analysis.benchmark import benchmark_models, format_table, write_results

    results = benchmark_models(
        args.models, batches=args.batch, threads=args.threads, img_size=args.img_size, fuse=args.fuse,
        channels_last=args.channels_last, rounds=args.rounds, onnxruntime=args.onnxruntime,
        measure_memory=not args.no_memory, accuracy=args.accuracy, workdir=f"{args.out}/onnx",
        progress=lambda msg: print(f"  {msg}", flush=True),
    )
    print(f"\n{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, {'fused' if args.fuse else 'unfused'}, "
          f"{'channels_last' if args.channels_last else 'NCHW'}, {args.img_size}px")
    print(format_table(results))
    for path in write_results(results, args.out):
        print(f"wrote {path}")
    return 0
