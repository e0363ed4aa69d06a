"""Runners: every (runtime, precision) that runs here equals eager fp32 within its tolerance; the others raise
Unsupported with the reason. torch.compile runs in a subprocess (never in the pytest process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch

from contract import randomize_batchnorm
from lsnet.deploy import fuse
from lsnet.deploy.runtimes import Unsupported, build_runner, onnxruntime_bf16_support

INPUT = (3, 32, 32)
FP32_RTOL = 1e-4  # max |runner - eager fp32| / max |eager fp32|
BF16_RTOL = 5e-2  # bf16 keeps 8 mantissa bits: ~4e-3 per rounding, a few roundings deep in a tiny model


@pytest.fixture(scope="module")
def fused_model():
    torch.manual_seed(0)
    model = timm.create_model("lsnet_test", num_classes=5).eval()
    randomize_batchnorm(model)
    return fuse(model)


@pytest.fixture(scope="module")
def images_and_reference(fused_model):
    x = torch.randn(3, *INPUT)
    with torch.inference_mode():
        return x, fused_model(x)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("precision, rtol", [("fp32", FP32_RTOL), ("bf16", BF16_RTOL)])
def test_eager_matches_fp32(fused_model, images_and_reference, tmp_path, precision, rtol, channels_last):
    x, want = images_and_reference
    runner = build_runner(fused_model, "eager", precision, INPUT, threads=1, workdir=tmp_path,
                          channels_last=channels_last)
    got = runner(x)
    assert got.dtype == torch.float32 and relative_error(got, want) <= rtol
    assert runner.prepare(x).is_contiguous(memory_format=torch.channels_last) == channels_last
    assert ("bfloat16" in runner.note) == (precision == "bf16")
    assert next(fused_model.parameters()).dtype == torch.float32  # the model given is left alone


def test_onnxruntime_fp32_matches_and_uses_the_thread_count(fused_model, images_and_reference, tmp_path):
    x, want = images_and_reference
    runner = build_runner(fused_model, "onnxruntime", "fp32", INPUT, threads=2, workdir=tmp_path)
    assert relative_error(runner(x), want) <= FP32_RTOL
    assert "intra-op threads 2" in runner.note and (tmp_path / "model_fp32.onnx").exists()


def test_onnxruntime_bf16_is_unsupported_with_the_reason(fused_model, images_and_reference, tmp_path):
    reason = onnxruntime_bf16_support()
    if reason is None:  # an onnxruntime with bf16 CPU kernels: then the runner must run and match
        x, want = images_and_reference
        runner = build_runner(fused_model, "onnxruntime", "bf16", INPUT, threads=1, workdir=tmp_path)
        assert relative_error(runner(x), want) <= BF16_RTOL
        return
    with pytest.raises(Unsupported, match="onnxruntime .* bf16: the CPU provider has no bf16 kernels") as err:
        build_runner(fused_model, "onnxruntime", "bf16", INPUT, threads=1, workdir=tmp_path)
    assert reason in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("runtime", ["eager", "compile"])
def test_torch_int8_is_unsupported(fused_model, tmp_path, runtime):
    with pytest.raises(Unsupported, match=f"{runtime} int8: .*int8 runs on onnxruntime"):
        build_runner(fused_model, runtime, "int8", INPUT, threads=1, workdir=tmp_path)


@pytest.mark.parametrize("runtime, precision, words", [
    ("tensorrt", "fp32", "unknown runtime 'tensorrt'; choose from eager, compile, onnxruntime"),
    ("eager", "fp16", "unknown precision 'fp16'; choose from fp32, bf16, int8"),
    ("onnxruntime", "int8", "onnxruntime int8 needs calibration images"),
])
def test_bad_arguments_are_value_errors(fused_model, tmp_path, runtime, precision, words):
    with pytest.raises(ValueError, match=words):
        build_runner(fused_model, runtime, precision, INPUT, threads=1, workdir=tmp_path)


COMPILE_SCRIPT = textwrap.dedent("""
    import json, torch
    from torch import nn
    from lsnet.deploy.runtimes import build_runner
    from lsnet.layers import LSConv
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), LSConv(16), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 4)).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        want = model(x)
    errors = {}
    for precision in ("fp32", "bf16"):
        runner = build_runner(model, "compile", precision, (3, 8, 8), threads=1, workdir=".", batches=(2,))
        got = runner(x)
        errors[precision] = [float((got - want).abs().max() / want.abs().max()), runner.note]
    print(json.dumps(errors))
""")


@pytest.mark.slow  # two cold Inductor compiles: 1-4 min on 2 cores, so CI's `-m "not slow"` leaves it out
def test_compile_matches_eager_in_a_subprocess(tmp_path):
    """Inductor (frozen) on a tiny model with an LS conv (the SKA custom op): fp32 within FP32_RTOL, bf16 loosely."""
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"), TORCHINDUCTOR_COMPILE_THREADS="1",
               PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], capture_output=True, text=True, timeout=540,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert errors["fp32"][0] <= FP32_RTOL and "torch.compile inductor (frozen)" in errors["fp32"][1]
    assert errors["bf16"][0] <= BF16_RTOL and "bfloat16" in errors["bf16"][1]
