"""`lsnet robustness`: ImageNet-C style common-corruption robustness (15 corruptions x 5 severities) of one or more
models on an evaluation set, with per-corruption accuracy, CE / mCE against a baseline model, a table and a plot.
Needs corrupt-tta (`pip install 'lsnet[robustness]'`).

    lsnet robustness --models lsnet_t                                # random init, 500 Fashion-MNIST test images
    lsnet robustness --models "lsnet=lsnet_t:checkpoint=runs/a/best.pth" "base=resnet18:checkpoint=runs/b/best.pth" \\
        --baseline base --subset 0                                   # full test set, mCE relative to 'base'
    lsnet robustness --models lsnet_t --corruptions gaussian_noise fog --severities 3 --subset 200
    lsnet robustness --dataset folder --data-dir ~/imagenet --models lsnet_t:checkpoint=lsnet_t.pth --subset 5000

Model specs are `[LABEL=]NAME[:KEY=VALUE,...]` (KEY may be checkpoint=PATH). Input settings come from the checkpoint's
training config when it has one, else from the data set (Fashion-MNIST: 1 channel, 64 px, resize only, as the
fashion_mnist_cpu preset). Writes robustness.json / .csv / .md / .png, corruption_examples.png (image 0; rows:
corruptions, columns: clean + severities) and config.yaml under --output.
"""
from __future__ import annotations

import argparse

from .arguments import model_spec, non_negative_int, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("robustness", help="ImageNet-C style corruption robustness: accuracy, CE, mCE",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_argument_group("models")
    group.add_argument("--models", nargs="+", type=model_spec, default=["lsnet_t"], metavar="SPEC",
                       help="[LABEL=]NAME[:KEY=VALUE,...] (default: lsnet_t)")
    group.add_argument("--checkpoint", default=None, help="weights for the models given without checkpoint=")
    group.add_argument("--baseline", default=None, help="label of the model CE is relative to (default: the first)")
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="fashion-mnist", help="'fashion-mnist' or 'folder' (default fashion-mnist)")
    group.add_argument("--data-dir", default=None, help="data folder (Fashion-MNIST IDX files or an ImageFolder root)")
    group.add_argument("--split", default=None, help="evaluation split (default: test / val)")
    group.add_argument("--subset", type=non_negative_int, default=500,
                       help="evaluate a seeded random subset of N images (0 = all; default 500)")
    group.add_argument("--img-size", type=positive_int, default=None,
                       help="input size (default: checkpoint config / data set)")
    group = parser.add_argument_group("corruptions")
    group.add_argument("--corruptions", nargs="+", default=["standard"],
                       help="names, 'standard' (the 15 of ImageNet-C) or 'all' (+ the 4 held-out ones)")
    group.add_argument("--severities", type=int, choices=range(1, 6), nargs="+", default=[1, 2, 3, 4, 5])
    group.add_argument("--seed", type=int, default=0, help="seeds the corruptions, the subset and random weights")
    group = parser.add_argument_group("run")
    group.add_argument("--batch-size", type=positive_int, default=128)
    group.add_argument("--workers", type=int, default=0, help="data-loader processes (corruptions run there)")
    group.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    group.add_argument("--output", default="results/robustness", help="output folder (default: results/robustness)")
    return parser


def _dataset_defaults(dataset: str, data_dir: str | None) -> dict:
    from lsnet.data import canonical_name, dataset_info

    info = dataset_info(dataset, data_dir)
    out = dict(num_classes=info.num_classes, in_chans=info.in_chans, mean=info.mean, std=info.std)
    if canonical_name(dataset) == "fashion-mnist":  # the fashion_mnist_cpu preset's geometry
        out.update(img_size=64, crop_pct=1.0, interpolation="bilinear")
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch
    import yaml

    from lsnet.analysis.models import load_model, parse_model_spec
    from lsnet.analysis.robustness import (
        CORRUPTIONS,
        EXTRA_CORRUPTIONS,
        CorruptedDataset,
        evaluate_robustness,
        example_grid,
        write_summary,
    )
    from lsnet.data import create_dataset, dataset_info
    from lsnet.data.factory import channel_stats

    if args.threads:
        torch.set_num_threads(args.threads)
    corruptions: list[str] = []
    for name in args.corruptions:
        corruptions += {"standard": list(CORRUPTIONS), "all": list(CORRUPTIONS + EXTRA_CORRUPTIONS)}.get(name, [name])
    unknown = [c for c in corruptions if c not in CORRUPTIONS + EXTRA_CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; choose from {', '.join(CORRUPTIONS + EXTRA_CORRUPTIONS)}")

    defaults = _dataset_defaults(args.dataset, args.data_dir)
    split = args.split or dataset_info(args.dataset, args.data_dir).eval_split
    dataset = create_dataset(args.dataset, split, data_dir=args.data_dir)
    if args.subset and args.subset < len(dataset):
        indices = np.sort(np.random.default_rng(args.seed).choice(len(dataset), args.subset, replace=False))
        dataset = torch.utils.data.Subset(dataset, indices.tolist())

    models, settings = {}, {}
    for text in args.models:
        spec = parse_model_spec(text)
        checkpoint = spec.checkpoint or args.checkpoint
        kwargs = {} if checkpoint else {k: defaults[k] for k in ("num_classes", "in_chans") if k not in spec.kwargs}
        torch.manual_seed(args.seed)
        model = load_model(spec, checkpoint=checkpoint, **kwargs)
        s = dict(model.analysis_input)
        if not s.pop("from_checkpoint_config"):
            s.update({k: defaults[k] for k in ("img_size", "crop_pct", "interpolation") if k in defaults})
            s.update(mean=channel_stats(defaults["mean"], s["in_chans"]),
                     std=channel_stats(defaults["std"], s["in_chans"]))
        if args.img_size:
            s["img_size"] = args.img_size
        if spec.label in models:
            raise ValueError(f"two models share the label {spec.label!r}; name them with LABEL=NAME")
        models[spec.label], settings[spec.label] = model, s
    baseline = args.baseline or next(iter(models))
    if baseline not in models:
        raise ValueError(f"--baseline {baseline!r} is not one of the model labels {list(models)}")

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    resolved = {k: {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()} for k, v in settings.items()}
    (out / "config.yaml").write_text(yaml.safe_dump({**config, "resolved_corruptions": corruptions,
                                                     "model_settings": resolved}, sort_keys=False))
    print(f"{len(dataset)} {args.dataset} {split} images, {len(corruptions)} corruptions x {len(args.severities)} "
          f"severities, models {list(models)}, baseline {baseline}")
    summary = evaluate_robustness(models, dataset, settings=settings, baseline=baseline, corruptions=corruptions,
                                  severities=args.severities, seed=args.seed, batch_size=args.batch_size,
                                  workers=args.workers, progress=print)
    paths = write_summary(summary, out)
    first = settings[baseline]
    clean = CorruptedDataset(dataset, img_size=first["img_size"], in_chans=first["in_chans"], mean=[0.0], std=[1.0],
                             crop_pct=first["crop_pct"], interpolation=first["interpolation"])
    image = np.asarray(clean.geometry(dataset[0][0].convert(clean.mode)))
    try:
        from lsnet.analysis import plots

        paths["plot"] = plots.robustness_plot(summary, out / "robustness.png")
        paths["examples"] = plots.save_image(example_grid(image, corruptions, args.severities, args.seed),
                                             out / "corruption_examples.png")
    except ImportError as err:
        print(f"no plot: {err}")
    print(paths["table"].read_text(), end="")
    for path in paths.values():
        print(f"wrote {path}")
    return 0
