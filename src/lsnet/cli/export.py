"""`lsnet export`: fuse and export a model to ONNX or TorchScript, and check the file against PyTorch.

    lsnet export lsnet_t --format onnx --output lsnet_t.onnx
    lsnet export lsnet_t --format torchscript --checkpoint lsnet_t.pth --img-size 256
    lsnet export lsnet_t --format onnx --no-dynamic-batch --no-fuse
    lsnet export lsnet_t --format onnx --ska-form reference    # LS convs as shift-and-add (k*k slices, muls, adds)
    lsnet export lsnet_t --checkpoint runs/<run>/best.pth --precision int8 --calibration fashion-mnist \
        --output lsnet_t_int8.onnx       # static QDQ int8, verified on the run's held-out validation images

int8: calibration reads --calibration-images images of the TRAIN split only (without the images the run holds out
for validation; the run's --val-size and --seed come from the checkpoint's config); the int8 file is then compared
with the fp32 model on --verify-images of those held-out validation images, and the command fails (exit status 1)
when top-1 agreement is below --min-agreement.
"""
from __future__ import annotations

import argparse

from .arguments import fraction, model_name, non_negative_int, output_file, positive_float, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("export", help="export a (fused) model to ONNX / TorchScript and verify it")
    parser.add_argument("model", type=model_name, help="timm model name, e.g. lsnet_t")
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    parser.add_argument("--output", type=output_file, help="output file (default: <model>.onnx / <model>.pt)")
    parser.add_argument("--checkpoint", help="weights file (official container, state dict or .safetensors)")
    parser.add_argument("--num-classes", type=non_negative_int, default=None)
    parser.add_argument("--in-chans", type=positive_int, default=None)
    parser.add_argument("--img-size", type=positive_int, default=None,
                        help="input size (default: the checkpoint's run config, else 224)")
    parser.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--ska-form", choices=["compact", "reference"], default="compact",
                        help="ONNX graph of each LS conv: compact (gather conv + mul + reduce-sum, BN and GroupNorm "
                             "affine folded) or reference (shift-and-add)")
    parser.add_argument("--rtol", type=positive_float, default=1e-4, help="max relative error accepted")
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                        help="report batch-1 latency of the export next to torch eager")
    int8 = parser.add_argument_group("int8 (ONNX, static QDQ quantization with onnxruntime)")
    int8.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    int8.add_argument("--calibration", metavar="DATA",
                      help="fashion-mnist or an image folder (train/<class>/<image>): its training split calibrates")
    int8.add_argument("--calibration-images", type=positive_int, default=256)
    int8.add_argument("--verify-images", type=positive_int, default=1000,
                      help="held-out validation images the int8 model is checked on")
    int8.add_argument("--min-agreement", type=fraction, default=0.98,
                      help="least top-1 agreement of int8 with fp32 accepted (exit status 1 below)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.precision == "int8":
        return run_int8(args)
    if args.calibration:
        raise ValueError("--calibration is for --precision int8; add --precision int8 or drop --calibration")
    import timm
    import torch

    import lsnet  # noqa: F401
    from lsnet.analysis.timing import time_interleaved
    from lsnet.deploy import export_onnx, export_torchscript, fuse

    args.img_size = args.img_size or 224
    kwargs = {k: v for k, v in dict(num_classes=args.num_classes, in_chans=args.in_chans).items() if v is not None}
    if args.checkpoint:
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=args.checkpoint))
    model = timm.create_model(args.model, **kwargs).eval()
    if args.fuse:
        model = fuse(model)
    input_size = (model.in_chans if hasattr(model, "in_chans") else 3, args.img_size, args.img_size)
    with torch.inference_mode():  # a size the model cannot take fails here with its own message, not in the exporter
        model(torch.zeros(1, *input_size))
    output = args.output or f"{args.model}.{'onnx' if args.format == 'onnx' else 'pt'}"
    if args.format == "onnx":
        check = export_onnx(model, output, input_size, dynamic_batch=args.dynamic_batch, rtol=args.rtol,
                            ska_form=args.ska_form)
    else:
        check = export_torchscript(model, output, input_size, rtol=args.rtol)
    print(check)
    if args.latency:
        x = torch.randn(1, *input_size)
        if args.format == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(output, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            exported = lambda: session.run(None, {name: x.numpy()})
        else:
            loaded = torch.jit.load(output)
            exported = lambda: loaded(x)
        with torch.inference_mode():
            times = time_interleaved({"torch eager": lambda: model(x), args.format: exported}, rounds=20)
        report = ", ".join(f"{k} {v}" for k, v in times.items())
        print(f"batch-1 latency ({torch.get_num_threads()} threads, median (min-max) of 20 interleaved rounds): "
              f"{report}")
    return 0 if check.passed else 1


def run_int8(args: argparse.Namespace) -> int:
    if args.format != "onnx":
        raise ValueError(f"--precision int8 exports ONNX (onnxruntime QDQ); drop --format {args.format}")
    if not args.calibration:
        raise ValueError("--precision int8 needs calibration images: add --calibration fashion-mnist (or an image "
                         "folder with train/<class>/<image>)")
    import tempfile

    import torch

    from lsnet.checkpoints import create_model, model_from_checkpoint, read_checkpoint_config
    from lsnet.deploy import export_onnx, fuse
    from lsnet.deploy.quantize import calibration_images, quantize_model, verify_quantized

    settings = dict(num_classes=args.num_classes, in_chans=args.in_chans, img_size=args.img_size)
    config = {}
    if args.checkpoint:
        config = read_checkpoint_config(args.checkpoint)
        model, _ = model_from_checkpoint(args.checkpoint, model=args.model, **settings)
    else:
        model = create_model(args.model, **settings).eval()
    model = fuse(model) if args.fuse else model
    img_size = args.img_size or config.get("img_size") or 224
    input_size = (getattr(model, "in_chans", 3), img_size, img_size)
    with torch.inference_mode():  # a size the model cannot take fails here with its own message, not in the exporter
        model(torch.zeros(1, *input_size))
    output = args.output or f"{args.model}_int8.onnx"
    calibration, _ = calibration_images(args.calibration, "train", args.calibration_images, input_size,
                                        run_config=config)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = f"{tmp}/fp32.onnx"
        check = export_onnx(model, fp32, input_size, dynamic_batch=args.dynamic_batch, rtol=args.rtol,
                            ska_form=args.ska_form)
        print(f"fp32 export (temporary file): {check}")
        if not check.passed:
            return 1
        print(quantize_model(fp32, output, calibration))
    images, labels = calibration_images(args.calibration, "val", args.verify_images, input_size, run_config=config)
    result = verify_quantized(output, model, images, labels)
    print(result)
    if result.top1_agreement < args.min_agreement:
        print(f"error: top-1 agreement {result.top1_agreement:.2%} is below --min-agreement {args.min_agreement:.2%}")
        return 1
    return 0
