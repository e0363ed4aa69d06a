"""Conv2Former: timm contract, official parameter counts and checkpoint layout, isotropic and ablation variants.

oneDNN is switched off in this module: its per-shape kernel setup costs ~1 s per new shape on small CPUs, which
dominates tests on tiny models (the native convolution computes the same thing).
"""
from __future__ import annotations

import pytest
import timm
import torch

import lsnet.models.conv2former  # noqa: F401  (registers the models)
from contract import (
    check_default_cfg,
    check_device_dtype,
    check_features,
    check_forward_backward,
    check_fx,
    check_grad_checkpointing,
    check_official_checkpoint,
    check_state_dict_round_trip,
    check_torchscript,
    count_params,
    onednn,
    random_official_state_dict,
    read_manifest,
)
from lsnet.models.conv2former import FUSION_MODES, checkpoint_filter_fn

OFFICIAL = ("conv2former_n", "conv2former_t", "conv2former_s", "conv2former_b", "conv2former_b_22k", "conv2former_l")
TINY = "conv2former_test"
TINY_INPUT = (3, 64, 64)
TINY_ISO = dict(dim=32, depth=3, head_hidden_dim=32, kernel_size=5)  # conv2former_is shrunk for speed


@pytest.fixture(autouse=True, scope="module")
def _native_conv():
    with onednn(False):
        yield


@pytest.mark.parametrize("name", OFFICIAL)
def test_param_count_equals_official(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    _, total = read_manifest(name)
    assert count_params(model) == total


@pytest.mark.parametrize("name, paper_m", [("conv2former_is", 23), ("conv2former_ib", 86)])
def test_isotropic_param_count_near_paper(name, paper_m):
    with torch.device("meta"):
        model = timm.create_model(name)
    assert abs(count_params(model) / 1e6 - paper_m) < 0.5, count_params(model)  # paper Table 7, "1 Conv" rows


def test_forward_backward():
    check_forward_backward(TINY, TINY_INPUT)
    check_forward_backward(TINY, (3, 72, 56), drop_path_rate=0.1)  # non-default (non-square) size
    check_forward_backward("conv2former_is", TINY_INPUT, **TINY_ISO)
    check_forward_backward("conv2former_is", TINY_INPUT, stem_type="conv3", **TINY_ISO)


def test_features():
    check_features(TINY, TINY_INPUT)
    check_features(TINY, (3, 80, 48), out_indices=(1, 3))
    check_features("conv2former_is", TINY_INPUT, out_indices=(0, 2), **TINY_ISO)


def test_state_dict_round_trip(tmp_path):
    check_state_dict_round_trip(TINY, TINY_INPUT, tmp_path)


def test_head_api():
    model = timm.create_model(TINY, num_classes=5).eval()
    x = torch.randn(2, *TINY_INPUT)
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.head_hidden_size)
    assert model.get_classifier().out_features == 5
    model.reset_classifier(0)
    assert model(x).shape == (2, model.head_hidden_size)
    model.reset_classifier(3, "max")
    assert model(x).shape == (2, 3)
    model.reset_classifier(0, "")
    assert model(x).ndim == 4


def test_grad_checkpointing_same_output():
    model = timm.create_model(TINY).eval()
    x = torch.randn(1, *TINY_INPUT)
    with torch.no_grad():
        expected = model(x)
        model.set_grad_checkpointing(True)
        torch.testing.assert_close(model(x), expected)


def test_prune_and_group_matcher():
    model = timm.create_model(TINY)
    groups = timm.models.group_parameters(model, model.group_matcher())
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))
    assert model.prune_intermediate_layers([1]) == [1]
    assert len(model.stages) == 2 and model.num_features == model.head_hidden_size == 24
    assert model(torch.randn(1, *TINY_INPUT)).shape == (1, 24, 8, 8)


@pytest.mark.parametrize("fusion", FUSION_MODES)
def test_fusion_modes_run(fusion):
    check_forward_backward(TINY, TINY_INPUT, fusion=fusion)


def test_fusion_modes_differ_and_validate():
    torch.manual_seed(0)
    reference = timm.create_model(TINY, layer_scale_init_value=1.0).eval()
    x = torch.randn(1, *TINY_INPUT)
    outputs = {}
    for fusion in FUSION_MODES:
        model = timm.create_model(TINY, layer_scale_init_value=1.0, fusion=fusion).eval()
        model.load_state_dict(reference.state_dict())
        with torch.no_grad():
            outputs[fusion] = model(x)
    assert not torch.allclose(outputs["hadamard"], outputs["sum"])
    assert not torch.allclose(outputs["hadamard"], outputs["sigmoid"])
    with pytest.raises(ValueError, match="fusion must be one of"):
        timm.create_model(TINY, fusion="l1")


def test_kernel_size_is_an_argument():
    model = timm.create_model(TINY, kernel_size=13)
    assert model.stages[0].blocks[0].mixer.a_conv.weight.shape[-2:] == (13, 13)
    with pytest.raises(ValueError, match="odd"):
        timm.create_model(TINY, kernel_size=4)


def _layer_norm_cf(x: torch.Tensor, state: dict, prefix: str) -> torch.Tensor:
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    x = (x - mean) / torch.sqrt(var + 1e-6)
    return state[prefix + "weight"][:, None, None] * x + state[prefix + "bias"][:, None, None]


@pytest.mark.parametrize("kernel_size", [5, 21])
@pytest.mark.parametrize("fusion", FUSION_MODES)
def test_conv_mod_fusion_and_kernel_size_by_value(fusion, kernel_size):
    """The ablation switches (paper Fig. 4a kernel sizes, Fig. 4b / Table 6 fusions) against a hand-written ConvMod:
    A = DWConv_kxk(GELU(W1 LN(x))), V = W2 LN(x), then A * V / A + V / sigmoid(A) * V, then the 1x1 projection."""
    from lsnet.models.conv2former import ConvMod

    torch.manual_seed(0)
    mod = ConvMod(8, kernel_size, fusion).eval()
    with torch.no_grad():
        for param in mod.parameters():
            param.normal_(0, 0.5)
    state = {k: v.detach() for k, v in mod.state_dict().items()}
    conv, gelu = torch.nn.functional.conv2d, torch.nn.functional.gelu
    x = torch.randn(2, 8, 9, 11)
    y = _layer_norm_cf(x, state, "norm.")
    a = conv(gelu(conv(y, state["a_proj.weight"], state["a_proj.bias"])), state["a_conv.weight"],
             state["a_conv.bias"], padding=kernel_size // 2, groups=8)
    v = conv(y, state["v_proj.weight"], state["v_proj.bias"])
    fused = {"hadamard": a * v, "sum": a + v, "sigmoid": torch.sigmoid(a) * v}[fusion]
    want = conv(fused, state["proj.weight"], state["proj.bias"])
    assert mod.a_conv.weight.shape == (8, 1, kernel_size, kernel_size)
    with torch.no_grad():
        torch.testing.assert_close(mod(x), want, rtol=1e-5, atol=1e-5)


def _official_forward(state: dict, x: torch.Tensor, depths: tuple[int, ...]) -> torch.Tensor:
    """The official Conv2Former forward (eval; models/conv2former.py @ 94fd1c4), written against its state dict."""
    conv, gelu = torch.nn.functional.conv2d, torch.nn.functional.gelu

    def bn(t, p):
        return torch.nn.functional.batch_norm(t, state[p + "running_mean"], state[p + "running_var"],
                                              state[p + "weight"], state[p + "bias"], eps=1e-5)

    d = "downsample_layers.0."
    x = bn(gelu(conv(x, state[d + "0.weight"], stride=2, padding=1)), d + "2.")
    x = bn(gelu(conv(x, state[d + "3.weight"], padding=1)), d + "5.")
    x = conv(x, state[d + "6.weight"], stride=2)
    for i, depth in enumerate(depths):
        if i > 0:
            d = f"downsample_layers.{i}."
            x = conv(_layer_norm_cf(x, state, d + "0."), state[d + "1.weight"], state[d + "1.bias"], stride=2)
        for j in range(depth):
            p = f"stages.{i}.{j}."
            y = _layer_norm_cf(x, state, p + "attn.norm.")
            a = gelu(conv(y, state[p + "attn.att.0.weight"], state[p + "attn.att.0.bias"]))
            kernel = state[p + "attn.att.2.weight"]
            a = conv(a, kernel, state[p + "attn.att.2.bias"], padding=kernel.shape[-1] // 2, groups=a.shape[1])
            y = a * conv(y, state[p + "attn.v.weight"], state[p + "attn.v.bias"])
            x = x + state[p + "layer_scale_1"][:, None, None] * conv(y, state[p + "attn.proj.weight"],
                                                                        state[p + "attn.proj.bias"])
            y = _layer_norm_cf(x, state, p + "mlp.norm.")
            y = gelu(conv(y, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"]))
            y = y + gelu(conv(y, state[p + "mlp.pos.weight"], state[p + "mlp.pos.bias"], padding=1, groups=y.shape[1]))
            x = x + state[p + "layer_scale_2"][:, None, None] * conv(y, state[p + "mlp.fc2.weight"],
                                                                        state[p + "mlp.fc2.bias"])
    x = _layer_norm_cf(gelu(conv(x, state["head.0.weight"], state["head.0.bias"])), state, "head.2.")
    return torch.nn.functional.linear(x.mean((2, 3)), state["pred.weight"], state["pred.bias"])


def test_official_checkpoint_loads_and_matches_official_forward(tmp_path):
    """Official key layout (manifest) through timm's pretrained path (CheckpointSaver container); same logits as
    the official forward written against the official keys."""
    with onednn(True):  # depthwise convs of a full-size model: oneDNN is much faster than the native path
        model = check_official_checkpoint("conv2former_n", "conv2former_n", tmp_path, input_size=(3, 64, 64),
                                          container="state_dict")
    official = random_official_state_dict("conv2former_n")
    official = {k: v * 25 if "layer_scale" in k else v for k, v in official.items()}  # let every block matter
    model.load_state_dict(checkpoint_filter_fn(official, model))
    x = torch.randn(2, *TINY_INPUT)
    with torch.no_grad(), onednn(True):
        expected = _official_forward(official, x, depths=(2, 2, 8, 2))
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def test_container_uses_non_ema_entry(tmp_path):
    state, ema = random_official_state_dict("conv2former_n", seed=0), random_official_state_dict("conv2former_n", 1)
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"epoch": 3, "arch": "conv2former_n", "state_dict": state, "state_dict_ema": ema}, path)
    model = timm.create_model("conv2former_n", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(model.state_dict()["head.fc.weight"], state["pred.weight"])
    ema_model = timm.create_model("conv2former_n", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                                  checkpoint_entry="state_dict_ema")
    torch.testing.assert_close(ema_model.state_dict()["head.fc.weight"], ema["pred.weight"])


def test_kernel_mismatch_is_explained():
    state = random_official_state_dict("conv2former_n")  # 7x7 kernels
    with torch.device("meta"):
        model = timm.create_model("conv2former_n", kernel_size=11)
    with pytest.raises(ValueError, match="kernel_size=7"):
        checkpoint_filter_fn(state, model)


def test_pretrained_without_file_is_explained():
    with pytest.raises(RuntimeError, match="pretrained_cfg_overlay=dict\\(file="):
        timm.create_model(TINY, pretrained=True)


def test_default_cfgs():
    for name in (*OFFICIAL, "conv2former_is", "conv2former_ib", TINY):
        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        assert cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5)  # official model cfg (README says ImageNet stats)
        assert not cfg.get("hf_hub_id") and not cfg.get("url")
    assert timm.models.get_pretrained_cfg("conv2former_n").to_dict()["classifier"] == "head.fc"


# ---------------------------------------------------------------------- timm's model-suite contract (contract.py)
def test_default_cfg():
    check_default_cfg(TINY)
    check_default_cfg("conv2former_is", **TINY_ISO)


def test_fx():
    check_fx(TINY, TINY_INPUT)
    check_fx("conv2former_is", TINY_INPUT, **TINY_ISO)


def test_torchscript(tmp_path):
    check_torchscript(TINY, TINY_INPUT, tmp_path)


def test_device_dtype():
    check_device_dtype(TINY)
    check_device_dtype("conv2former_is", **TINY_ISO)


def test_grad_checkpointing_recomputes_each_block_once():
    check_grad_checkpointing(TINY, TINY_INPUT)
    check_grad_checkpointing("conv2former_is", TINY_INPUT, **TINY_ISO)
