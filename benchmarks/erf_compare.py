"""The README's ERF comparison: LSNet-T, LSNet-T w/o LKP, Conv2Former-N, UniConvNet-A and timm's EfficientViT-M4.

    python benchmarks/erf_compare.py                 # ~10 min on 2 busy CPU cores
    python benchmarks/erf_compare.py --checkpoint runs/<run>/best.pth --checkpoint-no-lkp runs/<run2>/best.pth

Random init (seed 0) with zero-initialised residual scales set to 1 (`--no-zero-init`; otherwise Conv2Former's and
UniConvNet's 1e-6 layer scales leave only their stems and downsamplers), 50 of scikit-image's bundled photos at
224 px, the centre unit of each model's stride-16 and stride-32 stage. Writes results/erf_compare_s{16,32}/ (erf.md,
erf.json, CSVs, maps) and copies the figures and tables to docs/figures/erf_compare_s{16,32}.{png,md}.

With --checkpoint (an LSNet-T trained by `lsnet train`, e.g. on Fashion-MNIST), also measures that model on its own
inputs (Fashion-MNIST test images at its training size, stride-16 stage) against the same architecture at random
init, into results/erf_trained/ and docs/figures/erf_trained.{png,md}.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = [
    "LSNet-T=lsnet_t",
    "LSNet-T w/o LKP=lsnet_t:lkp_kernel_size=0",
    "Conv2Former-N=conv2former_n",
    "UniConvNet-A=uniconvnet_a",
    "EfficientViT-M4=efficientvit_m4",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=50)
    parser.add_argument("--checkpoint", default=None, help="trained LSNet-T checkpoint (optional second figure)")
    parser.add_argument("--checkpoint-no-lkp", default=None, help="trained LSNet-T w/o LKP checkpoint (optional)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from lsnet.cli.main import main as lsnet

    os.chdir(ROOT)  # relative paths in the saved configs
    figures = Path("docs") / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    threads = ["--threads", str(args.threads)] if args.threads else []
    for stage in ("s16", "s32"):  # stride 16: every model's ERF is still bounded; stride 32: LSNet's is global
        out = Path("results") / f"erf_compare_{stage}"
        code = lsnet([
            "erf", "--models", *MODELS, "--images", "photos", "--num-images", str(args.num_images), "--stage", stage,
            "--no-zero-init", "--seed", "0", "--output", str(out), *threads, "--title",
            f"ERF at stride {stage[1:]}, random init (residual scales 1), mean of {args.num_images} photos, 224 px  |  "
            "python benchmarks/erf_compare.py"])
        if code:
            return code
        shutil.copy(out / "erf_compare.png", figures / f"erf_compare_{stage}.png")
        shutil.copy(out / "erf.md", figures / f"erf_compare_{stage}.md")
    if not args.checkpoint:
        return 0

    trained = [f"LSNet-T trained=lsnet_t:checkpoint={args.checkpoint}"]
    if args.checkpoint_no_lkp:
        trained.append(f"w/o LKP trained=lsnet_t:lkp_kernel_size=0,checkpoint={args.checkpoint_no_lkp}")
    # the same architectures at random init, on the trained model's inputs (1-channel Fashion-MNIST)
    untrained = ["LSNet-T random=lsnet_t:num_classes=10,in_chans=1",
                 "w/o LKP random=lsnet_t:lkp_kernel_size=0,num_classes=10,in_chans=1"]
    out = Path("results") / "erf_trained"
    from lsnet.analysis.models import load_model

    img_size = load_model("lsnet_t", checkpoint=args.checkpoint).analysis_input["img_size"]
    code = lsnet(["erf", "--models", *trained, *untrained, "--images", "fashion-mnist", "--num-images",
                  str(args.num_images), "--img-size", str(img_size), "--stage", "s16", "--seed", "0",
                  "--output", str(out), *threads, "--title",
                  f"ERF at stride 16, trained vs random init, {args.num_images} Fashion-MNIST test images, "
                  f"{img_size} px  |  python benchmarks/erf_compare.py --checkpoint ..."])
    if code:
        return code
    shutil.copy(out / "erf_compare.png", figures / "erf_trained.png")
    shutil.copy(out / "erf.md", figures / "erf_trained.md")
    return code


if __name__ == "__main__":
    sys.exit(main())
