"""`lsnet export`: fuse and export a model to ONNX or TorchScript, and check the file against PyTorch.

    lsnet export lsnet_t --format onnx --output lsnet_t.onnx
    lsnet export lsnet_t --format torchscript --checkpoint lsnet_t.pth --img-size 256
    lsnet export lsnet_t --format onnx --no-dynamic-batch --no-fuse
    lsnet export lsnet_t --format onnx --ska-form reference    # LS convs as shift-and-add (k*k slices, muls, adds)
"""
from __future__ import annotations

import argparse

from .arguments import model_name, non_negative_int, output_file, positive_float, positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("export", help="export a (fused) model to ONNX / TorchScript and verify it")
    parser.add_argument("model", type=model_name, help="timm model name, e.g. lsnet_t")
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    parser.add_argument("--output", type=output_file, help="output file (default: <model>.onnx / <model>.pt)")
    parser.add_argument("--checkpoint", help="weights file (official container, state dict or .safetensors)")
    parser.add_argument("--num-classes", type=non_negative_int, default=None)
    parser.add_argument("--in-chans", type=positive_int, default=None)
    parser.add_argument("--img-size", type=positive_int, default=224)
    parser.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--ska-form", choices=["compact", "reference"], default="compact",
                        help="ONNX graph of each LS conv: compact (gather conv + mul + reduce-sum, BN and GroupNorm "
                             "affine folded) or reference (shift-and-add)")
    parser.add_argument("--rtol", type=positive_float, default=1e-4, help="max relative error accepted")
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                        help="report batch-1 latency of the export next to torch eager")
    return parser


def run(args: argparse.Namespace) -> int:
    import timm
    import torch

    import lsnet  # noqa: F401
    from lsnet.analysis.timing import time_interleaved
    from lsnet.deploy import export_onnx, export_torchscript, fuse

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
