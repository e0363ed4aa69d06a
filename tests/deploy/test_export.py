"""Export: ONNX (SKA as standard ops, dynamic batch) and TorchScript match PyTorch; the CLIs wrap them."""
from __future__ import annotations

import json

import onnx
import pytest
import timm
import torch

from contract import randomize_batchnorm
from lsnet.cli.main import main as cli
from lsnet.deploy import export_onnx, export_torchscript, fuse

INPUT = (3, 64, 64)


@pytest.fixture(scope="module")
def fused_model():
    model = timm.create_model("lsnet_test", num_classes=5).eval()
    randomize_batchnorm(model)
    return fuse(model)


def test_onnx_export_is_standard_ops_and_dynamic(fused_model, tmp_path):
    check = export_onnx(fused_model, tmp_path / "m.onnx", INPUT, dynamic_batch=True, check_batches=(1, 4))
    assert check.passed and set(check.max_rel_error) == {1, 4}, check
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert not any("ska" in node.op_type.lower() or node.domain not in ("", "ai.onnx") for node in graph.node)
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic batch axis


def test_onnx_any_input_size(fused_model, tmp_path):
    check = export_onnx(fused_model, tmp_path / "m.onnx", (3, 96, 80), dynamic_batch=False)
    assert check.passed, check


def test_torchscript_export(fused_model, tmp_path):
    check = export_torchscript(fused_model, tmp_path / "m.pt", INPUT, check_batches=(1, 3))
    assert check.passed, check


def test_fused_model_keeps_features_only_and_sizes():
    model = fuse(timm.create_model("lsnet_test", features_only=True, out_indices=(1, 3)))
    feats = model(torch.randn(1, 3, 96, 72))
    assert [f.shape[1] for f in feats] == [32, 64]


def test_export_cli(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert cli(["export", "lsnet_test", "--img-size", "64", "--output", str(out), "--no-latency"]) == 0
    assert "OK" in capsys.readouterr().out and out.exists()


def test_bench_cli_writes_tables_and_plot(tmp_path, capsys):
    accuracy = tmp_path / "acc.json"
    accuracy.write_text(json.dumps({"lsnet_test": 50.0, "resnet10t": 60.0}))
    code = cli(["bench", "lsnet_test", "resnet10t", "--batch", "1", "2", "--img-size", "64", "--rounds", "2",
                "--out", str(tmp_path / "bench"), "--accuracy", str(accuracy)])
    assert code == 0
    rows = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert {(r["model"], r["batch"]) for r in rows} == {(m, b) for m in ("lsnet_test", "resnet10t") for b in (1, 2)}
    assert all(r["images_per_s"] > 0 and r["gmacs"] > 0 for r in rows)
    for r in rows:  # eager fp32 against eager fp32: the same numbers; GFLOP/s = 2 * MACs * batch / median time
        assert (r["runtime"], r["precision"], r["status"], r["max_rel_error"], r["top1_agreement"]) == (
            "eager", "fp32", "ok", 0.0, 1.0)
        assert r["gflops_per_s"] == pytest.approx(2 * r["gmacs"] * r["batch"] / (r["latency_ms_median"] / 1e3))
    assert (tmp_path / "bench" / "bench.png").stat().st_size > 1000
    assert "lsnet_test" in capsys.readouterr().out


def test_conv_relu_fusion_matches_and_keeps_autograd():
    from lsnet.layers.conv_bn import Conv2dReLU

    model = timm.create_model("lsnet_test").eval()
    randomize_batchnorm(model)
    fused = fuse(model)
    plain = fuse(model, activations=False)
    assert sum(isinstance(m, Conv2dReLU) for m in fused.modules()) == 2 + 2 * 1 + 6  # stem, 1 LKP, 6 FFNs
    assert not any(isinstance(m, Conv2dReLU) for m in plain.modules())
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), plain(x), rtol=1e-5, atol=1e-6)
        cl = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fused.to(memory_format=torch.channels_last)(cl), plain(x), rtol=1e-4, atol=1e-5)
    out = fused(x.requires_grad_())  # grad enabled: the standard conv + relu path, so gradients flow
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_conv_relu_fast_path_respects_the_onednn_switch():
    from lsnet.layers.conv_bn import _POINTWISE, Conv2dReLU

    conv = Conv2dReLU(8, 8, 1).eval()
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert conv._fast_path_ok(x) == (_POINTWISE is not None)
        with torch.backends.mkldnn.flags(enabled=False):
            assert not conv._fast_path_ok(x)
            torch.testing.assert_close(conv(x), torch.relu(torch.nn.functional.conv2d(x, conv.weight, conv.bias)))


def random_image_folder(root, train: int = 24, test: int = 4):
    """An image folder (train/ and test/, two classes) of random 16x16 RGB images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for i in range(count):
            folder = root / split / f"c{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_bench_cli_runtimes_precisions_and_thread_counts(tmp_path, capsys):
    """One row per (runtime, precision, batch, threads); what cannot run is n/a with its reason."""
    from lsnet.deploy.runtimes import onnxruntime_bf16_support

    code = cli(["bench", "lsnet_test", "--batch", "1", "--img-size", "32", "--rounds", "1", "--threads", "1", "2",
                "--runtime", "eager,onnxruntime", "--precision", "fp32,bf16,int8", "--no-memory", "--calibration",
                str(random_image_folder(tmp_path / "data")), "--calibration-images", "8",
                "--out", str(tmp_path / "bench")])
    assert code == 0
    rows = {(r["runtime"], r["precision"], r["threads"]): r
            for r in json.loads((tmp_path / "bench" / "bench.json").read_text())}
    assert len(rows) == 2 * 3 * 2
    for threads in (1, 2):
        assert rows[("onnxruntime", "fp32", threads)]["max_rel_error"] < 1e-4
        assert rows[("eager", "bf16", threads)]["max_rel_error"] < 5e-2
        assert f"intra-op threads {threads}" in rows[("onnxruntime", "fp32", threads)]["note"]
        assert rows[("eager", "int8", threads)]["status"] == "n/a"
        assert "QDQ int8" in rows[("onnxruntime", "int8", threads)]["note"]
        assert rows[("onnxruntime", "int8", threads)]["max_rel_error"] is not None
        if onnxruntime_bf16_support() is not None:
            assert rows[("onnxruntime", "bf16", threads)]["status"] == "n/a"
            assert "no bf16 kernels" in rows[("onnxruntime", "bf16", threads)]["note"]
    assert "n/a: eager int8" in capsys.readouterr().out


def test_export_int8_cli_gates_on_agreement(tmp_path, capsys):
    """Calibrated on a folder's training images, checked on its held-out ones; exit status 1 below --min-agreement."""
    out = tmp_path / "m_int8.onnx"
    code = cli(["export", "lsnet_test", "--img-size", "32", "--precision", "int8", "--calibration",
                str(random_image_folder(tmp_path / "data")), "--calibration-images", "8", "--verify-images", "50",
                "--min-agreement", "1",
                "--output", str(out)])
    printed = capsys.readouterr().out
    agreement = float(printed.split("top-1 agreement ")[1].split("%")[0]) / 100
    assert "on 2 held-out images" in printed  # 24 training images: 10% (2) held out for validation
    assert code == (0 if agreement == 1 else 1)
    graph = onnx.load(str(out)).graph
    assert sum(node.op_type == "DequantizeLinear" for node in graph.node) > 10
