"""The 1x1-convolution GEMM peak of this CPU: the reference for "how close to the limit" a whole model runs.

    python benchmarks/gemm_peak.py                          # 1 and 2 threads, LSNet-T's 1x1 shapes at batch 32
    python benchmarks/gemm_peak.py --threads 2 --rounds 9 --out results/gemm_peak.json

Most of a fused LSNet's multiply-adds are 1x1 convolutions (GEMMs). Each candidate is a fp32 1x1 conv of a batch-32
channels_last input (oneDNN, what a fused model runs), timed interleaved with the others; GFLOP/s = 2 * MACs / time.
The peak of a thread count is the best candidate's median. Shapes: LSNet-T's pointwise layers at 224 px (dims 64,
128, 256, 384 at 28, 14, 7, 4 px; FFN expansion 2) plus two square GEMM-like ones that reach the best GFLOP/s oneDNN
gets on this CPU. A whole model measured above 100% of this peak means the peak is wrong, not the model.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from lsnet.analysis.timing import time_interleaved

# (in channels, out channels, map size)
SHAPES = [(64, 128, 28), (128, 64, 28), (128, 256, 14), (256, 128, 14), (256, 512, 7), (512, 256, 7),
          (384, 768, 4), (768, 384, 4), (256, 256, 28), (512, 512, 14)]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", default=None, help="JSON file for every shape's median seconds and GFLOP/s")
    return parser.parse_args(argv)


def gemm_peak(threads: int, batch: int = 32, rounds: int = 9) -> dict[str, dict[str, float]]:
    """{shape name: {"seconds": median, "gflops": GFLOP/s}} of every 1x1 conv shape, timed interleaved."""
    candidates, flops = {}, {}
    for in_chs, out_chs, size in SHAPES:
        name = f"{in_chs}->{out_chs}@{size}"
        x = torch.randn(batch, in_chs, size, size).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(out_chs, in_chs, 1, 1).contiguous(memory_format=torch.channels_last)
        bias = torch.randn(out_chs)

        def conv(x=x, weight=weight, bias=bias):
            with torch.inference_mode():
                return F.conv2d(x, weight, bias)

        candidates[name] = conv
        flops[name] = 2.0 * batch * in_chs * out_chs * size * size
    timings = time_interleaved(candidates, rounds=rounds, min_seconds=0.02, threads=threads)
    return {name: {"seconds": t.median, "gflops": flops[name] / t.median / 1e9} for name, t in timings.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, fp32 1x1 conv, channels_last, "
          f"batch {args.batch}; command: python benchmarks/gemm_peak.py {' '.join(argv or sys.argv[1:])}")
    report = {}
    for threads in args.threads:
        shapes = gemm_peak(threads, args.batch, args.rounds)
        best = max(shapes, key=lambda name: shapes[name]["gflops"])
        report[threads] = {"peak_gflops": shapes[best]["gflops"], "peak_shape": best, "shapes": shapes}
        print(f"\n## {threads} thread(s): peak {shapes[best]['gflops']:.1f} GFLOP/s ({best})")
        for name, row in shapes.items():
            print(f"{name:>16} {row['gflops']:8.1f} GFLOP/s {row['seconds'] * 1e3:9.3f} ms")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
