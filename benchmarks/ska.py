"""SKA backends against the depthwise 3x3 conv bound, forward and forward+backward, measured interleaved.

    python benchmarks/ska.py                                  # LSNet shapes, batch 32 and 1, 1 and 2 threads
    python benchmarks/ska.py --batch 1 --threads 1 --rounds 5 --out results/ska_quick.json
    python benchmarks/ska.py --stat min                       # best round: steadier on a busy machine

For each shape the bound is `conv2d(x, w_dw, groups=C)` (3x3 depthwise) on the same x in the same memory format.
Candidates: `cpu` (our C kernels, lazily compiled), `shift_add` (the pure-PyTorch reference, which is the usual
shift-and-add port), `triton` on CUDA. Printed numbers are ratios time(candidate) / time(bound) (lower is better),
each time the median (default) or the minimum over rounds (`--stat`); both statistics go to the JSON file.
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
from lsnet.ops import ska, ska_backend, ska_reference

LSNET_SHAPES = ["128x28", "128x14", "192x14", "256x14", "256x7", "320x7", "384x7"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=LSNET_SHAPES, help="CxHW, e.g. 128x28")
    parser.add_argument("--batch", nargs="+", type=int, default=[32, 1])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--layouts", nargs="+", default=["channels_last", "nchw"], choices=["channels_last", "nchw"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--stat", choices=["median", "min"], default="median",
                        help="per-candidate time over rounds; min is steadier when other jobs share the CPUs")
    parser.add_argument("--no-backward", action="store_true")
    parser.add_argument("--out", default="results/ska.json")
    return parser.parse_args(argv)


def make_inputs(batch: int, channels: int, size: int, layout: str, grad: bool):
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=fmt)
    # the weights as LKP emits them: a (B, CW*9, H, W) conv output in the same format, viewed as (B, CW, 9, H, W)
    w = torch.randn(batch, channels // 8 * 9, size, size).contiguous(memory_format=fmt)
    w = w.reshape(batch, channels // 8, 9, size, size)
    dw = torch.randn(channels, 1, 3, 3)
    if grad:
        x.requires_grad_(True)
        w.requires_grad_(True)
        dw.requires_grad_(True)
    return x, w, dw


def candidates_for(x, w, dw, backward: bool) -> dict:
    gout = torch.randn_like(x)

    def run(fn):
        if not backward:
            def forward_only():
                with torch.inference_mode():
                    fn()
            return forward_only

        def forward_backward():
            x.grad = w.grad = dw.grad = None
            fn().backward(gout)
        return forward_backward

    def with_backend(name):
        def call():
            with ska_backend(name):
                return ska(x, w)
        return call

    cands = {"dwconv3x3 (bound)": run(lambda: F.conv2d(x, dw, padding=1, groups=x.shape[1]))}
    if x.device.type == "cpu":
        cands["cpu"] = run(with_backend("cpu"))
    else:
        cands["triton"] = run(with_backend("triton"))
    cands["shift_add"] = run(lambda: ska_reference(x, w))
    return cands


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads available, "
          f"torch {torch.__version__}; command: python benchmarks/ska.py {' '.join(argv or sys.argv[1:])}")
    records = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for passes in (["fwd"] if args.no_backward else ["fwd", "fwd+bwd"]):
            for layout in args.layouts:
                print(f"\n## {passes}, {layout}, {threads} thread(s): "
                      f"{args.stat} time / depthwise-3x3 {args.stat} time")
                header = None
                for batch in args.batch:
                    for shape in args.shapes:
                        channels, size = (int(v) for v in shape.split("x"))
                        x, w, dw = make_inputs(batch, channels, size, layout, grad=passes == "fwd+bwd")
                        cands = candidates_for(x, w, dw, backward=passes == "fwd+bwd")
                        timings = time_interleaved(cands, rounds=args.rounds, min_seconds=0.002)
                        seconds = {n: getattr(t, args.stat) for n, t in timings.items()}
                        bound = seconds["dwconv3x3 (bound)"]
                        names = [n for n in cands if n != "dwconv3x3 (bound)"]
                        if header is None:
                            header = f"{'B':>3} {'C@HxW':>10} {'bound ms':>9} " + " ".join(f"{n:>10}" for n in names)
                            print(header)
                        ratios = {n: seconds[n] / bound for n in names}
                        print(f"{batch:>3} {channels:>4}@{size}x{size:<3} {bound * 1e3:>9.3f} "
                              + " ".join(f"{ratios[n]:>10.2f}" for n in names))
                        records.append(dict(threads=threads, passes=passes, layout=layout, batch=batch,
                                            channels=channels, size=size, stat=args.stat, bound_s=bound,
                                            ratios=ratios, medians_s={n: t.median for n, t in timings.items()},
                                            mins_s={n: t.min for n, t in timings.items()}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
