"""`lsnet bench`: compare models' params, GMACs, images/s, latency, GFLOP/s and peak memory on several runtimes and
precisions, every combination timed in one interleaved run per thread count.

    lsnet bench lsnet_t efficientvit_m4 repvit_m0_9 --batch 1 32 --threads 1 2 --channels-last
    lsnet bench lsnet_t efficientvit_m4 --batch 1 --threads 1 --runtime eager,onnxruntime --precision fp32,int8 \
        --calibration fashion-mnist --out results/bench_int8
    lsnet bench lsnet_t --runtime eager,compile --precision fp32,bf16 --batch 1 32
    lsnet bench lsnet_t lsnet_s --accuracy accuracy.json     # {"lsnet_t": 74.9, ...} -> accuracy vs img/s plot

A combination that cannot run here (e.g. onnxruntime bf16, eager int8) is an 'n/a' row with the reason.
"""
from __future__ import annotations

import argparse

from .arguments import comma_list, json_mapping, model_name, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    from lsnet.deploy.runtimes import PRECISIONS, RUNTIMES

    parser = subparsers.add_parser("bench", help="benchmark models against each other (interleaved)")
    parser.add_argument("models", nargs="+", type=model_name, help="timm model names (lsnet models are registered)")
    parser.add_argument("--batch", nargs="+", type=positive_int, default=[1, 32])
    parser.add_argument("--threads", nargs="+", type=positive_int, default=None,
                        help="intra-op thread counts, one interleaved run each (default: torch's)")
    parser.add_argument("--img-size", type=positive_int, default=224)
    parser.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=True,
                        help="reparameterize (fuse BN / RepVGG branches) before timing")
    parser.add_argument("--channels-last", action="store_true", help="channels_last model and input (torch runtimes)")
    parser.add_argument("--runtime", type=comma_list(RUNTIMES), default=("eager",),
                        help=f"comma-separated: {', '.join(RUNTIMES)} (default: eager)")
    parser.add_argument("--precision", type=comma_list(PRECISIONS), default=("fp32",),
                        help=f"comma-separated: {', '.join(PRECISIONS)} (default: fp32)")
    parser.add_argument("--calibration", metavar="DATA",
                        help="int8 calibration images from the training split of DATA: fashion-mnist or an image "
                             "folder (train/<class>/<image>)")
    parser.add_argument("--calibration-images", type=positive_int, default=256)
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

    if "int8" in args.precision and "onnxruntime" in args.runtime and not args.calibration:
        raise ValueError("onnxruntime int8 needs calibration images: add --calibration fashion-mnist (or an image "
                         "folder), or drop int8 from --precision")
    if args.calibration and "int8" not in args.precision:
        raise ValueError("--calibration is for int8; add int8 to --precision or drop --calibration")
    results = benchmark_models(
        args.models, batches=args.batch, threads=args.threads, img_size=args.img_size, fuse=args.fuse,
        channels_last=args.channels_last, rounds=args.rounds, runtimes=args.runtime, precisions=args.precision,
        calibration=args.calibration, calibration_images=args.calibration_images, measure_memory=not args.no_memory,
        accuracy=args.accuracy, workdir=f"{args.out}/onnx", progress=lambda msg: print(f"  {msg}", flush=True),
    )
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{'fused' if args.fuse else 'unfused'}, {'channels_last' if args.channels_last else 'NCHW'} (torch "
          f"runtimes), {args.img_size}px; rel err and top-1 = against eager fp32 on the timing input")
    print(format_table(results))
    for path in write_results(results, args.out):
        print(f"wrote {path}")
    return 0
