"""`lsnet erf`: effective receptive fields of one or more models, as heatmaps and numbers (RepLKNet area ratios,
radial profile). Any timm model with feature stages works; model specs are `[LABEL=]NAME[:KEY=VALUE,...]`.

    lsnet erf --models lsnet_t                                        # 50 bundled photos, last stage, results/erf
    lsnet erf --models lsnet_t "w/o LKP=lsnet_t:lkp_kernel_size=0" conv2former_n uniconvnet_a efficientvit_m4 \\
        --stage s32 --num-images 32 --output results/erf_compare
    lsnet erf --models lsnet_t --checkpoint runs/my-run/best.pth --images fashion-mnist
    lsnet erf --models resnet18 --images ~/imagenet/val --num-images 200 --mode replknet

Writes erf_<label>.png (one heatmap per model), erf_compare.png (side by side + radial profiles), erf.md (table),
erf.json / erf_area_ratio.csv / erf_radial.csv (numbers), erf_<label>.npy (maps) and config.yaml.
"""
from __future__ import annotations

import argparse

from .arguments import model_spec, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("erf", help="effective receptive fields: heatmaps, area ratios, radial profiles",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_argument_group("models")
    group.add_argument("--models", nargs="+", type=model_spec, default=["lsnet_t"], metavar="SPEC",
                       help="[LABEL=]NAME[:KEY=VALUE,...], e.g. 'lsnet_t:lkp_kernel_size=0'; "
                            "KEY may be checkpoint=PATH (default: lsnet_t)")
    group.add_argument("--checkpoint", default=None, help="weights (.pth / .safetensors) for the models given without "
                       "checkpoint=; default: random init (seeded)")
    group = parser.add_argument_group("inputs")
    group.add_argument("--images", default="photos", help="'photos' (scikit-image's bundled photos, offline), "
                       "'fashion-mnist' (test set) or a folder of images (default: photos)")
    group.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the standard places)")
    group.add_argument("--num-images", type=positive_int, default=50, help="images averaged (default: 50, as RepLKNet)")
    group.add_argument("--img-size", type=positive_int, default=None, help="input size (default: each model's own)")
    group = parser.add_argument_group("measurement")
    group.add_argument("--stage", default="-1", help="feature stage: index (-1 = last) or sN = the stage of stride N")
    group.add_argument("--mode", default="abs", choices=("abs", "replknet"),
                       help="abs: |gradient| (Luo et al.); replknet: relu on features and gradient, as RepLKNet's "
                            "script")
    group.add_argument("--thresholds", type=float, nargs="+", default=[0.2, 0.3, 0.5, 0.99])
    group.add_argument("--no-zero-init", action="store_true",
                       help="random-init models: set zero-initialised residual scales (BN gamma 0, layer scale 1e-6) "
                            "to 1, so every block contributes instead of only the stem and downsamplers")
    group.add_argument("--batch-size", type=positive_int, default=8)
    group.add_argument("--seed", type=int, default=0, help="seeds random weights and the photo crops")
    group.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--output", default="results/erf", help="output folder (default: results/erf)")
    parser.add_argument("--title", default="", help="title of the comparison figure")
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    import yaml

    from lsnet.analysis import plots
    from lsnet.analysis.erf import compute_erfs, safe_name, write_results
    from lsnet.analysis.models import parse_model_spec

    if args.threads:
        torch.set_num_threads(args.threads)
    specs = [parse_model_spec(s) for s in args.models]
    for spec in specs:
        spec.checkpoint = spec.checkpoint or args.checkpoint
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    results = compute_erfs(specs, args.images, args.num_images, stage=args.stage, img_size=args.img_size,
                           batch_size=args.batch_size, mode=args.mode, seed=args.seed, thresholds=args.thresholds,
                           data_dir=args.data_dir, no_zero_init=args.no_zero_init)
    paths = write_results(results, out, args.thresholds)
    figures = []
    try:
        for r in results:
            figures.append(plots.erf_heatmap(r.contrib, out / f"erf_{safe_name(r.label)}.png",
                                             title=f"{r.label} (stage {r.stage})"))
        title = args.title or (f"ERF, {results[0].num_images} images ({args.images}), "
                               f"{'checkpoint' if args.checkpoint else 'random init'}"
                               f"{' (residual scales 1)' if args.no_zero_init else ''}, {args.mode}")
        figures.append(plots.erf_comparison(results, out / "erf_compare.png", suptitle=title))
    except ImportError as err:
        print(f"no figures: {err}")
    print(paths["table"].read_text(), end="")
    print("A t% = RepLKNet's high-contribution area ratio (log10(1+x) map); raw A t% = same on the raw map")
    for path in [*paths.values(), *figures]:
        print(f"wrote {path}")
    return 0
