"""The compact LS-conv graph: CompactLSConv equals LSConv (BN and GroupNorm affine folded) and exports to ONNX as
one gather conv + mul + reduce-sum per LS conv, without Slice, Pad or BatchNormalization."""
from __future__ import annotations

import collections

import onnx
import pytest
import timm
import torch

from contract import randomize_batchnorm
from lsnet.deploy import CompactLSConv, export_onnx, fuse, with_compact_ska
from lsnet.layers import LSConv

TOLERANCE = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=2e-5)}


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-default BN statistics and affine values, and GroupNorm affine values, so every fold is exercised."""
    randomize_batchnorm(model, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, torch.nn.GroupNorm):
            with torch.no_grad():
                module.weight.copy_(torch.rand(module.num_channels, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_channels, generator=generator) * 0.3)
    return model.eval()


def ls_conv(dim: int = 16, large_kernel: int = 7, small_kernel: int = 3, kernel_groups: int = 8,
            dtype: torch.dtype = torch.float32) -> LSConv:
    torch.manual_seed(0)
    return randomize_norms(LSConv(dim, large_kernel, small_kernel, kernel_groups)).to(dtype)


def op_counts(path) -> collections.Counter:
    return collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("small_kernel,kernel_groups,large_kernel,dtype", [
    (3, 8, 7, torch.float64), (5, 4, 7, torch.float64), (3, 2, 0, torch.float64), (5, 1, 0, torch.float64),
    (3, 8, 7, torch.float32), (5, 2, 0, torch.float32),
])
def test_compact_lsconv_equals_lsconv(small_kernel, kernel_groups, large_kernel, dtype):
    lsconv = ls_conv(8, large_kernel, small_kernel, kernel_groups, dtype)
    compact = CompactLSConv.from_lsconv(lsconv)
    assert compact.gather.weight.dtype == dtype
    for batch, size in ((1, 224), (3, 97), (3, 13)):
        x = torch.randn(batch, 8, size, size, dtype=dtype)
        with torch.no_grad():
            torch.testing.assert_close(compact(x), lsconv(x), **TOLERANCE[dtype])


def test_compact_lsconv_from_fused_and_unfused_lsconv_agree():
    lsconv = ls_conv(dtype=torch.float64)
    x = torch.randn(2, 16, 21, 19, dtype=torch.float64)
    with torch.no_grad():
        want = lsconv(x)
        torch.testing.assert_close(CompactLSConv.from_lsconv(fuse(lsconv))(x), want, **TOLERANCE[torch.float64])
        torch.testing.assert_close(CompactLSConv.from_lsconv(lsconv)(x), want, **TOLERANCE[torch.float64])


def test_compact_lsconv_needs_eval_mode():
    with pytest.raises(ValueError, match="model.eval"):
        CompactLSConv.from_lsconv(LSConv(16).train())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_whole_fused_lsnet_equals_compact_copy(dtype):
    model = timm.create_model("lsnet_test", num_classes=7, depth=(2, 2, 2, 2))  # an LS conv in stages 1-3
    model = fuse(randomize_norms(model)).to(dtype)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compact = with_compact_ska(model)
    assert sum(isinstance(m, LSConv) for m in model.modules()) == 3  # model untouched
    assert not any(isinstance(m, LSConv) for m in compact.modules())
    assert sum(isinstance(m, CompactLSConv) for m in compact.modules()) == 3
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for batch, size in ((1, 224), (1, 160), (3, 97), (1, 13)):
        x = torch.randn(batch, 3, size, size, dtype=dtype)
        with torch.no_grad():
            torch.testing.assert_close(compact(x), model(x), **TOLERANCE[dtype])


def test_onnx_graph_of_an_ls_conv_is_compact(tmp_path):
    lsconv = ls_conv(16, large_kernel=0, small_kernel=5, kernel_groups=4)
    check = export_onnx(lsconv, tmp_path / "m.onnx", (16, 11, 13), check_batches=(1, 3))
    assert check.passed and set(check.max_rel_error) == {1, 3}, check  # dynamic batch, checked against LSConv
    ops = op_counts(tmp_path / "m.onnx")
    assert not ops.keys() & {"Slice", "Pad", "BatchNormalization", "InstanceNormalization", "GroupNormalization"}
    assert ops["LayerNormalization"] == ops["ReduceSum"] == ops["Mul"] == 1
    assert ops["Conv"] == 3 + 2 and ops["Relu"] == 2, ops  # LKP without its large kernel: 3 convs, 2 ReLUs
    assert sum(ops.values()) - 5 <= 10, ops  # SKA + BN + GroupNorm + residual in at most 10 nodes
    batch_dim = onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value


def test_onnx_reference_form_is_shift_and_add(tmp_path):
    check = export_onnx(ls_conv(8), tmp_path / "m.onnx", (8, 7, 7), check_batches=(2,), ska_form="reference")
    assert check.passed, check
    ops = op_counts(tmp_path / "m.onnx")
    assert ops["Slice"] >= 3 and ops["BatchNormalization"] == 1 and "ReduceSum" not in ops, ops


def test_onnx_export_of_lsnet_is_compact_by_default(tmp_path):
    model = timm.create_model("lsnet_test", num_classes=5)  # one LS conv (stage 1)
    check = export_onnx(fuse(randomize_norms(model)), tmp_path / "m.onnx", (3, 64, 64), check_batches=(1, 2))
    assert check.passed, check  # against the original model: the folding is verified
    ops = op_counts(tmp_path / "m.onnx")
    assert not ops.keys() & {"Slice", "Pad", "BatchNormalization"}
    assert ops["ReduceSum"] == ops["LayerNormalization"] == 1, ops  # one per LS conv


def test_unknown_ska_form_is_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="ska_form must be one of"):
        export_onnx(LSConv(16).eval(), tmp_path / "m.onnx", (16, 8, 8), ska_form="fused")
