"""Static int8 quantization of an exported ONNX model (onnxruntime's QDQ format) and its check against PyTorch.

    from lsnet.deploy import export_onnx
    from lsnet.deploy.quantize import calibration_images, quantize_model, verify_quantized
    export_onnx(model, "m.onnx", (1, 64, 64))                                            # model: fused, eval
    images, _ = calibration_images("fashion-mnist", "train", 256, (1, 64, 64))         # training images only
    print(quantize_model("m.onnx", "m_int8.onnx", images))
    print(verify_quantized("m_int8.onnx", model, *calibration_images("fashion-mnist", "val", 1000, (1, 64, 64))))

Defaults, chosen by measurement on a 2-core AMD EPYC with AVX2 + FMA and no VNNI (onnxruntime 1.32): per-channel
int8 weights in the 7-bit range (`reduce_range`): with 8-bit weights one quantized conv exceeds the error bound its
scales allow (u8 x s8 pair sums saturate the 16-bit intermediates of the non-VNNI kernels; see
tests/deploy/test_quantize.py); u8 activations (s8 ones ran 1.5-1.9x slower than u8 there); min-max calibration;
Conv / Gemm / MatMul quantized (the SKA shift-and-add, norms and elementwise ops stay float). `float_nodes` keeps the
first conv and LKP's SKA-weight 1x1 conv + GroupNorm in float: their outputs are the image and the per-pixel
aggregation kernels every later layer reads (on a briefly trained LSNet-T the top-1 agreement with and without them
was within the noise of 1000 images).
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["QuantCheck", "QuantReport", "calibration_images", "float_nodes", "quantize_model", "quantize_onnx",
           "verify_quantized"]

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")


@dataclass
class QuantReport:
    """What `quantize_onnx` wrote: the int8 file, the nodes quantized and the nodes kept in float."""

    path: str
    quantized: tuple[str, ...]  # names of the nodes of the quantized op types that now read int8 (QDQ) inputs
    kept_float: tuple[str, ...]
    settings: dict[str, Any]

    def summary(self) -> str:
        """'QDQ int8: 40 Conv/Gemm/MatMul quantized, 9 nodes kept float'."""
        return (f"QDQ int8: {len(self.quantized)} {self.settings['ops']} quantized, {len(self.kept_float)} nodes "
                "kept float")

    def __str__(self) -> str:
        return f"{self.path}: {self.summary()} ({', '.join(f'{k}={v}' for k, v in self.settings.items())})"


@dataclass
class QuantCheck:
    """The int8 model against the fp32 PyTorch model on `images` held-out images."""

    images: int
    top1_agreement: float  # fraction of images where both predict the same class
    max_abs_logit_error: float
    max_rel_error: float  # max |int8 - fp32| / max |fp32|
    accuracy_fp32: float | None = None  # top-1 against the labels, when given
    accuracy_int8: float | None = None

    def __str__(self) -> str:
        text = (f"int8 vs fp32 on {self.images} held-out images: top-1 agreement {self.top1_agreement:.2%}, max logit "
                f"error {self.max_abs_logit_error:.3g} (relative {self.max_rel_error:.2e})")
        if self.accuracy_fp32 is not None:
            text += f"; top-1 fp32 {self.accuracy_fp32:.2%}, int8 {self.accuracy_int8:.2%}"
        return text


def float_nodes(onnx_model) -> list[str]:
    """Nodes of an exported model that stay float: every Conv reading the graph input (the first conv) and every Conv
    whose output reaches a per-sample normalisation (Instance-, Layer-, GroupNormalization) through shape-only ops
    (LKP's 1x1 conv that predicts the SKA weights, before its GroupNorm), with those normalisations.

    Found from the graph alone, so it holds for any ONNX form of the LS conv (shift-and-add or compact)."""
    graph = onnx_model.graph
    producer = {out: node for node in graph.node for out in node.output}
    inputs = {i.name for i in graph.input}
    keep = [node.name for node in graph.node if node.op_type == "Conv" and node.input[0] in inputs]
    for node in graph.node:
        if node.op_type not in _PER_SAMPLE_NORMS:
            continue
        source = producer.get(node.input[0])
        while source is not None and source.op_type in _SHAPE_OPS:
            source = producer.get(source.input[0])
        if source is not None and source.op_type == "Conv":
            keep += [source.name, node.name]
    return list(dict.fromkeys(keep))


_PER_SAMPLE_NORMS = ("InstanceNormalization", "LayerNormalization", "GroupNormalization")
_SHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity")


class _Batches:
    """onnxruntime CalibrationDataReader over a float tensor (N, C, H, W), `batch` images at a time."""

    def __init__(self, input_name: str, images: torch.Tensor, batch: int):
        self.input_name, self.images, self.batch = input_name, images, batch
        self._iter: Iterator[torch.Tensor] | None = None

    def get_next(self) -> dict | None:
        if self._iter is None:
            self._iter = iter(self.images.split(self.batch))
        chunk = next(self._iter, None)
        return None if chunk is None else {self.input_name: chunk.float().contiguous().numpy()}

    def rewind(self) -> None:
        self._iter = None


def quantize_onnx(
    model_path: str | os.PathLike,
    output_path: str | os.PathLike,
    calibration: torch.Tensor,
    *,
    keep_float: Sequence[str] = (),
    per_channel: bool = True,
    reduce_range: bool = True,
    activations: str = "uint8",
    op_types: Sequence[str] = QUANTIZED_OPS,
    calibration_batch: int = 32,
) -> QuantReport:
    """Static QDQ int8 quantization of the fp32 ONNX file `model_path`, calibrated on `calibration` (N, C, H, W)
    images (training images, preprocessed as the model sees them) with min-max ranges.

    keep_float: node names left in float (`float_nodes`). per_channel: one weight scale per output channel.
    reduce_range: 7-bit weights (see the module docstring). activations: 'uint8' or 'int8'.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if calibration.ndim != 4 or calibration.shape[0] == 0:
        raise ValueError(f"calibration must be a non-empty (N, C, H, W) image tensor; got {tuple(calibration.shape)}")
    if activations not in ("uint8", "int8"):
        raise ValueError(f"activations must be 'uint8' or 'int8'; got {activations!r}")
    model = onnx.load(os.fspath(model_path))
    input_name = model.graph.input[0].name
    settings = dict(per_channel=per_channel, reduce_range=reduce_range, activations=activations,
                    ops="/".join(op_types), calibration=calibration.shape[0])
    quantize_static(
        os.fspath(model_path), os.fspath(output_path), _Batches(input_name, calibration, calibration_batch),
        quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types), per_channel=per_channel,
        reduce_range=reduce_range, weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
        nodes_to_exclude=list(keep_float), calibrate_method=CalibrationMethod.MinMax,
    )
    quantized = _quantized_nodes(onnx.load(os.fspath(output_path)), op_types)
    return QuantReport(os.fspath(output_path), quantized, tuple(keep_float), settings)


def quantize_model(fp32_path: str | os.PathLike, output_path: str | os.PathLike, calibration: torch.Tensor,
                   **settings: Any) -> QuantReport:
    """`quantize_onnx` of the fp32 ONNX file `fp32_path`, keeping its `float_nodes` in float."""
    import onnx

    keep_float = float_nodes(onnx.load(os.fspath(fp32_path)))
    return quantize_onnx(fp32_path, output_path, calibration, keep_float=keep_float, **settings)


def _quantized_nodes(onnx_model, op_types: Sequence[str]) -> tuple[str, ...]:
    """Nodes of `op_types` that read an input produced by a DequantizeLinear node."""
    dequantized = {out for node in onnx_model.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return tuple(node.name for node in onnx_model.graph.node
                 if node.op_type in op_types and any(i in dequantized for i in node.input))


@torch.inference_mode()
def verify_quantized(
    session_or_path: Any,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch: int = 64,
) -> QuantCheck:
    """Top-1 agreement and logit error of an int8 ONNX model (an onnxruntime session or a file) against the fp32
    PyTorch `model` on held-out `images` (N, C, H, W); with `labels` (N,) also both top-1 accuracies."""
    import onnxruntime

    session = session_or_path
    if isinstance(session_or_path, (str, os.PathLike)):
        session = onnxruntime.InferenceSession(os.fspath(session_or_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    model = model.eval()
    want, got = [], []
    for chunk in images.split(batch):
        want.append(model(chunk).float())
        got.append(torch.from_numpy(session.run(None, {name: chunk.float().contiguous().numpy()})[0]))
    want, got = torch.cat(want), torch.cat(got)
    error = (got - want).abs().max().item()
    agreement = (got.argmax(1) == want.argmax(1)).double().mean().item()
    accuracy = {}
    if labels is not None:
        accuracy = dict(accuracy_fp32=(want.argmax(1) == labels).double().mean().item(),
                        accuracy_int8=(got.argmax(1) == labels).double().mean().item())
    return QuantCheck(len(images), agreement, error, error / max(want.abs().max().item(), 1e-12), **accuracy)


def calibration_images(
    data: str,
    split: str,
    num: int,
    input_size: tuple[int, int, int],
    *,
    run_config: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`num` images (N, C, H, W) and labels (N,) of a data set's 'train' or 'val' split, drawn with `seed`, with the
    evaluation transform (resize, normalise) at `input_size` (C, H, W).

    data: 'fashion-mnist' or an image-folder path (train/<class>/<image>, optional val/ and test/). 'train' is the
    training split without the images a run holds out for validation (the run's --val-size and --seed from
    `run_config`, else the data factory's defaults); 'val' is those held-out images (or the set's own val split).
    Calibration reads 'train' only; the test split is never read here.
    """
    from ..data import (
        DATASETS,
        canonical_name,
        channel_stats,
        create_dataset,
        create_transform,
        dataset_info,
        split_arguments,
    )
    from ..data.errors import DatasetError
    from ..train.config import TrainConfig

    if split not in ("train", "val"):
        raise ValueError(f"calibration_images reads the 'train' or 'val' split; got {split!r} (the test split is "
                         "for the final score only)")
    if num < 1:
        raise ValueError(f"num must be >= 1; got {num}")
    try:
        name, data_dir = canonical_name(data), None
    except DatasetError:
        if not Path(data).expanduser().is_dir():
            raise DatasetError(f"--calibration {data!r} is neither a data set ({', '.join(DATASETS[:-1])}) nor an "
                               "image folder; pass fashion-mnist or a folder with train/<class>/<image>") from None
        name, data_dir = "folder", str(Path(data).expanduser())
    run = dict(run_config or {})
    if run.get("dataset") not in (None, name):
        run = {}  # another data set than the run's: its split settings do not apply
    data_dir = data_dir or run.get("data_dir")
    info = dataset_info(name, data_dir, run.get("train_split", "train"))
    in_chans, height, width = input_size
    if height != width:
        raise ValueError(f"calibration images are square; got input size {height}x{width}")
    transform = create_transform(height, False, mean=channel_stats(run.get("mean") or info.mean, in_chans),
                                 std=channel_stats(run.get("std") or info.std, in_chans),
                                 interpolation=run.get("interpolation", "bicubic"),
                                 crop_pct=run.get("crop_pct", 0.875))
    splits = split_arguments(split, info, val_split=run.get("val_split"), test_split=run.get("test_split"),
                             train_split=run.get("train_split", "train"), val_size=run.get("val_size"),
                             seed=run.get("seed", TrainConfig.seed))
    dataset = create_dataset(name, data_dir=data_dir, transform=transform, in_chans=in_chans, **splits)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num].tolist()
    samples = [dataset[i] for i in order]
    return torch.stack([image for image, _ in samples]), torch.tensor([label for _, label in samples])
