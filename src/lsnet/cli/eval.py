"""`lsnet eval`: a checkpoint's scores: top-1/top-5, per-class accuracy, confusion matrix and images/s of a
classifier; COCO AP (bbox, segm) and per-class AP of a detector; mIoU, mAcc, aAcc and per-class IoU of a semantic
segmenter (the task comes from the checkpoint).

    lsnet eval --checkpoint runs/<run>/best.pth                 # data and model settings come from the run
    lsnet eval --checkpoint runs/<run>/best.safetensors --fuse  # the deployed (reparameterized) model
    lsnet eval --checkpoint runs/<run>/best.pth --split val     # the run's validation images (held out with its seed)
    lsnet eval --checkpoint runs/<run>/best.pth --runtime onnxruntime --precision int8 --calibration fashion-mnist
    lsnet eval --checkpoint weights.pth --model lsnet_t --dataset folder --data-dir ~/imagenet --split val
    lsnet eval --task detection --checkpoint runs/<detection run>/best.pth --data-dir ~/coco --split val
    lsnet eval --checkpoint runs/<semantic run>/best.pth --data-dir ~/ADEChallengeData2016 --split val

Detection and semantic segmentation take --data-dir, --split (train / val / test of the run), --subset,
--batch-size, --workers, --device, --amp, --ema, --strict and --output; the other overrides are classification's.
Semantic checkpoints are scored with the run's inference settings unless --test-mode, --short-side, --test-flip or
--test-scales say otherwise (e.g. --test-mode slide, --test-flip --test-scales 0.75 1.0 1.25 for multi-scale).
"""
from __future__ import annotations

import argparse

INFERENCE_FLAGS = ("test_mode", "short_side", "test_flip", "test_scales")  # semantic checkpoints only


def add_parser(subparsers) -> argparse.ArgumentParser:
    from lsnet.deploy.runtimes import PRECISIONS, RUNTIMES
    from lsnet.train.config import TEST_MODES, optional_int
    from lsnet.train.tasks import TASKS

    from .arguments import positive_int

    parser = subparsers.add_parser("eval", help="evaluate a checkpoint", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="last.pth / best.pth / best.safetensors or a state dict")
    parser.add_argument("--task", choices=TASKS, help="the checkpoint's task (default: the one its config names; "
                        "classification for files without one)")
    group = parser.add_argument_group("overrides (default: the run's own settings)")
    group.add_argument("--model", help="timm model name (needed for checkpoints that do not record it)")
    group.add_argument("--dataset", help="'fashion-mnist' or 'folder'")
    group.add_argument("--data-dir", help="data folder")
    group.add_argument("--split", choices=("val", "test", "train"),
                       help="the run's split to evaluate (default: test, or val when the data set has none); val is "
                            "the run's held-out images when it held some out, and train then excludes them")
    group.add_argument("--img-size", type=int)
    group.add_argument("--in-chans", type=int)
    group.add_argument("--num-classes", type=int)
    group.add_argument("--subset", type=int, help="evaluate only the first N images")
    group.add_argument("--download", action="store_true", help="download Fashion-MNIST if missing (needs network)")
    group.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    group.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                       help="evaluate the EMA weights (default: when the run used EMA)")
    seg = parser.add_argument_group("semantic inference (default: the run's own, as `lsnet train` set them)")
    unset = argparse.SUPPRESS  # given flags only: --short-side none is a setting
    seg.add_argument("--test-mode", choices=TEST_MODES, default=unset, help="'whole' image or 'slide' windows")
    seg.add_argument("--short-side", type=optional_int, default=unset,
                     help="resize the shorter side to this ('none': native size)")
    seg.add_argument("--test-flip", action=argparse.BooleanOptionalAction, default=unset,
                     help="also predict the flipped image and average")
    seg.add_argument("--test-scales", type=float, nargs="+", default=unset, help="test-time scales averaged")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--fuse", action="store_true", help="fold BN and re-parameterized branches first "
                           "(timm.utils.reparameterize_model)")
    deploy = parser.add_argument_group("deployed model (classification; `lsnet.deploy.build_runner`, fused, CPU)")
    deploy.add_argument("--runtime", choices=RUNTIMES, default="eager")
    deploy.add_argument("--precision", choices=PRECISIONS, default="fp32")
    deploy.add_argument("--calibration", metavar="DATA",
                        help="int8: calibration data, e.g. fashion-mnist (its training split, without the run's "
                             "held-out images)")
    deploy.add_argument("--calibration-images", type=positive_int, default=256)
    run_group.add_argument("--batch-size", type=int, help="default: 256 (classification), 2 (detection, semantic)")
    run_group.add_argument("--workers", type=int, default=2)
    run_group.add_argument("--device", default="auto")
    run_group.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                           help="mixed precision (default: on for CUDA)")
    run_group.add_argument("--output", help="write eval.json and confusion_matrix.png here")
    run_group.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    from lsnet.checkpoints import read_checkpoint_config
    from lsnet.train import EvalResult, evaluate_checkpoint
    from lsnet.train.tasks.semantic import SemanticResult

    if args.batch_size is None:
        task = args.task or read_checkpoint_config(args.checkpoint).get("task", "classification")
        args.batch_size = 256 if task == "classification" else 2
    result = evaluate_checkpoint(
        args.checkpoint, task=args.task, model=args.model, dataset=args.dataset, data_dir=args.data_dir,
        split=args.split, img_size=args.img_size, in_chans=args.in_chans, num_classes=args.num_classes,
        batch_size=args.batch_size, workers=args.workers, subset=args.subset, fuse=args.fuse, device=args.device,
        amp=args.amp, use_ema=args.ema, download=args.download, strict=args.strict, output=args.output,
        progress=not args.quiet, inference={name: getattr(args, name) for name in INFERENCE_FLAGS
                                            if hasattr(args, name)},
        runtime=args.runtime, precision=args.precision, calibration=args.calibration,
        calibration_images=args.calibration_images)
    extra = result.extra
    fused = " (fused)" if extra.get("fused") else ""
    if (args.runtime, args.precision) != ("eager", "fp32"):
        fused += f" [{args.runtime} {args.precision}]"
    print(f"{extra['model']}{fused} on {extra['dataset']} {extra['split']} split ({extra['split_source']}): "
          f"{extra['split']} {result.summary()}")
    if isinstance(result, EvalResult):
        names = result.classes or tuple(str(i) for i in range(len(result.confusion)))
        rows = [(name, f"{acc:6.2f}%") for name, acc in zip(names, result.per_class_accuracy)]
    elif isinstance(result, SemanticResult):
        print("  per-class IoU / Acc")
        rows = [(name, f"{entry['IoU']:6.2f} / {entry['Acc']:6.2f}")
                for name, entry in result.scores["per_class"].items()]
    else:  # detection: per-class AP of each IoU type
        kinds = list(result.scores)
        print(f"  per-class AP: {' / '.join(kinds)}")
        rows = [(name, " / ".join(f"{result.scores[k]['per_class'][name]:6.2f}" for k in kinds))
                for name in result.classes]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if getattr(result, "skipped", 0):
        print(f"skipped {result.skipped} unreadable images")
    if args.output:
        plots = " and confusion_matrix.png" if isinstance(result, EvalResult) else ""
        print(f"wrote {args.output}/eval.json{plots}")
    return 0
