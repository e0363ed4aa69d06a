"""Parameters and GMACs of registered models (unfused and fused), as in the README model table.

    python benchmarks/flops.py                                # the LSNet family at 224
    python benchmarks/flops.py conv2former_n uniconvnet_a --img-size 224
"""
from __future__ import annotations

import argparse
import sys

import timm

import lsnet  # noqa: F401
from lsnet.analysis.flops import count_macs
from lsnet.deploy import fuse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["lsnet_t", "lsnet_s", "lsnet_b"])
    parser.add_argument("--img-size", type=int, default=None, help="default: the model's pretrained cfg size")
    args = parser.parse_args(argv)
    print(f"{'model':<22}{'res':>5}{'params (M)':>12}{'fused (M)':>11}{'GMACs':>8}")
    for name in args.models:
        model = timm.create_model(name)
        size = args.img_size or model.pretrained_cfg["input_size"][-1]
        in_chans = model.pretrained_cfg["input_size"][0]
        fused = fuse(model)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        fused_params = sum(p.numel() for p in fused.parameters()) / 1e6
        gmacs = count_macs(fused, (in_chans, size, size)) / 1e9
        print(f"{name:<22}{size:>5}{params:>12.3f}{fused_params:>11.3f}{gmacs:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
