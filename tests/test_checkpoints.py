"""lsnet.checkpoints: every kind of file it reads, the entry it picks, adaptation by value, and one-line errors."""
from __future__ import annotations

import argparse
import collections
import json
import logging
import math

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models import adapt_input_conv

from contract import random_official_state_dict
from lsnet.checkpoints import (
    CheckpointError,
    UnknownModelError,
    create_model,
    load_checkpoint,
    model_from_checkpoint,
    read_checkpoint,
)
from lsnet.models import conv2former, lsnet
from lsnet.models.lsnet import resize_bias_table

STEM = "stem.0.conv.weight"
BIAS = "stages.3.blocks.1.mixer.attention_biases"  # one of the five stage-4 attention-bias tables of LSNet-T


@pytest.fixture(scope="module")
def official():
    """A random LSNet-T state dict in the official layout, and the same tensors in our keys (224 px, RGB, 1000)."""
    state = random_official_state_dict("lsnet_t")
    ours = lsnet.checkpoint_filter_fn(state, timm.create_model("lsnet_t"))
    return state, ours


def assert_equal_state(model: torch.nn.Module, expected: dict[str, torch.Tensor], skip=()) -> None:
    own = model.state_dict()
    keys = [k for k in expected if k not in skip]
    assert keys and all(k in own for k in keys)
    for key in keys:
        assert torch.equal(own[key], expected[key]), key


@pytest.mark.parametrize("layout", ["bare", "container"])
def test_official_lsnet_files_load_by_value(official, tmp_path, layout):
    state, ours = official
    payload = state if layout == "bare" else {
        "model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}, "epoch": 299,
        "args": argparse.Namespace(model="lsnet_t", lr=4e-3, input_size=224, distillation_type="none")}
    torch.save(payload, tmp_path / "lsnet_t.pth")
    for model in (load_checkpoint(create_model("lsnet_t"), tmp_path / "lsnet_t.pth"),
                  timm.create_model("lsnet_t", pretrained=True,
                                    pretrained_cfg_overlay=dict(file=str(tmp_path / "lsnet_t.pth")))):
        assert_equal_state(model, ours)
        assert set(model.state_dict()) == set(ours)


def test_official_relative_loads_by_value(tmp_path):
    state = random_official_state_dict("conv2former_n")
    torch.save({"model": state, "args": argparse.Namespace(model="conv2former_n")}, tmp_path / "c2f.pth")
    model = load_checkpoint(create_model("conv2former_n"), tmp_path / "c2f.pth")
    assert_equal_state(model, conv2former.checkpoint_filter_fn(state, model))


def test_entry_choice_is_non_ema_unless_asked_and_logged(tmp_path, caplog):
    plain, ema = (create_model("lsnet_test").state_dict() for _ in range(2))
    torch.save({"model_ema": ema, "model": plain, "epoch": 1}, tmp_path / "ck.pth")
    with caplog.at_level(logging.INFO, logger="lsnet.checkpoints"):
        assert_equal_state(load_checkpoint(create_model("lsnet_test"), tmp_path / "ck.pth"), plain)
    assert "loading entry 'model' (entries: ['model', 'model_ema'])" in caplog.text
    assert_equal_state(load_checkpoint(create_model("lsnet_test"), tmp_path / "ck.pth", entry="model_ema"), ema)
    assert_equal_state(timm.create_model("lsnet_test", pretrained=True, checkpoint_entry="model_ema",
                                         pretrained_cfg_overlay=dict(file=str(tmp_path / "ck.pth"))), ema)
    with pytest.raises(CheckpointError, match=r"has no entry 'state_dict_ema'; entries holding weights: \['model'"):
        load_checkpoint(create_model("lsnet_test"), tmp_path / "ck.pth", entry="state_dict_ema")


def test_run_checkpoints_pth_and_safetensors_rebuild_their_model(tmp_path):
    trained = create_model("lsnet_test", num_classes=5, in_chans=1, img_size=48, lkp_kernel_size=5)
    weights = {f"_orig_mod.{k}": v for k, v in trained.state_dict().items()}  # a compiled model's keys
    config = {"model": "lsnet_test", "num_classes": 5, "in_chans": 1, "img_size": 48,
              "model_kwargs": {"lkp_kernel_size": 5}, "model_ema": False}
    torch.save({"model": weights, "model_ema": None, "optimizer": {}, "epoch": 2, "config": config},
               tmp_path / "last.pth")
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(tmp_path / "best.safetensors"),
              metadata={"format": "pt", "lsnet": json.dumps(config)})
    for path in (tmp_path, tmp_path / "best.safetensors"):  # a run folder means its last.pth
        model, checkpoint = model_from_checkpoint(path)
        assert checkpoint.config["img_size"] == 48 and not model.training
        assert (model.num_classes, model.in_chans) == (5, 1)
        assert_equal_state(model, trained.state_dict())


def test_official_file_initialises_a_64px_10_class_grey_model(official, tmp_path, caplog):
    """The 8 shapes that differ (stem, 5 bias tables, head.fc weight and bias) are adapted; all else is the file's."""
    state, ours = official
    torch.save({"model": state}, tmp_path / "lsnet_t.pth")
    torch.manual_seed(0)
    fresh = create_model("lsnet_t", num_classes=10, in_chans=1, img_size=64)
    torch.manual_seed(0)
    model = create_model("lsnet_t", num_classes=10, in_chans=1, img_size=64)
    with caplog.at_level(logging.INFO, logger="lsnet.checkpoints"):
        load_checkpoint(model, tmp_path / "lsnet_t.pth")
    own = model.state_dict()
    biases = [k for k in ours if k.endswith("attention_biases")]
    heads = ["head.fc.weight", "head.fc.bias"]
    changed = [k for k in ours if ours[k].shape != own[k].shape]
    assert sorted(changed) == sorted([STEM, *biases, *heads]) and len(changed) == 8
    assert_equal_state(model, ours, skip=changed)  # backbone (head.norm included): the file's, bit for bit
    torch.testing.assert_close(own[STEM], adapt_input_conv(1, ours[STEM]), rtol=0, atol=0)
    torch.testing.assert_close(own[STEM], ours[STEM].sum(1, keepdim=True), rtol=0, atol=0)
    for key in biases:
        side = math.isqrt(own[key].shape[1])
        assert torch.equal(own[key], resize_bias_table(ours[key], (side, side))), key
    assert own[BIAS].shape == (4, 1) and ours[BIAS].shape == (4, 16) and len(biases) == 5  # 4x4 grid -> 1x1
    for key in heads:
        assert torch.equal(own[key], fresh.state_dict()[key]), key  # the model's fresh init
    lines = [r.getMessage() for r in caplog.records if "classifier" in r.getMessage()]
    assert len(lines) == 1 and lines[0].endswith("lsnet_t.pth': its classifier of 1000 classes (2 tensors) does not "
                                                 "fit lsnet_t (LSNet) (10 classes); the model keeps its fresh "
                                                 "head.fc.weight, head.fc.bias")
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 10)


def test_eval_mode_refuses_a_classifier_of_another_size(official, tmp_path):
    torch.save(official[0], tmp_path / "lsnet_t.pth")
    with pytest.raises(CheckpointError, match=r"classifier has 1000 classes but lsnet_t \(LSNet\) has 10; build the "
                       r"model with num_classes=1000 \(--num-classes 1000\)"):
        load_checkpoint(create_model("lsnet_t", num_classes=10), tmp_path / "lsnet_t.pth", new_classifier=False)


class Arbitrary:  # any class outside the allow-list
    def __init__(self):
        self.weights = torch.ones(2)


def bad_files(tmp_path):
    (tmp_path / "notes.pth").write_text("these are my notes, not weights\n")
    (tmp_path / "zeros.pth").write_bytes(b"\x00" * 64)
    (tmp_path / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    torch.save(Arbitrary(), tmp_path / "object.pth")
    torch.save({"model": {"w": torch.ones(1)}, "extra": collections.defaultdict(list)}, tmp_path / "dd.pth")
    torch.save([torch.ones(2)], tmp_path / "list.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "notensors.pth")
    return {
        "missing.pth": r"checkpoint '.*missing.pth' not found; pass a .pth / .safetensors file or a run folder",
        "notes.pth": r"cannot read checkpoint '.*notes.pth' with torch.load\(weights_only=True\) \(.*\); it is not a "
                     r"PyTorch checkpoint: pass a file written by torch.save or a .safetensors file",
        "zeros.pth": r"cannot read checkpoint '.*zeros.pth' with torch.load\(weights_only=True\).* it is not a PyTorch",
        "broken.safetensors": r"cannot read checkpoint '.*broken.safetensors' as safetensors \(.*\); re-export it",
        "object.pth": r"cannot read checkpoint '.*object.pth' with torch.load\(weights_only=True\): it pickles "
                      r"test_checkpoints.Arbitrary, which is not a tensor, a plain container or argparse.Namespace; "
                      r"re-save only the weights",
        "dd.pth": r"it pickles collections.defaultdict",
        "list.pth": r"'.*list.pth' holds a list, not a state dict or a checkpoint container",
        "notensors.pth": r"'.*notensors.pth' holds no tensors \(keys: \['epoch', 'lr'\]\)",
    }


def test_bad_files_give_one_line_errors(tmp_path):
    for name, message in bad_files(tmp_path).items():
        with pytest.raises(CheckpointError, match=message) as info:
            load_checkpoint(create_model("lsnet_test"), tmp_path / name)
        assert "\n" not in str(info.value), name
    with pytest.raises(FileNotFoundError):  # a missing file is also a FileNotFoundError
        read_checkpoint(tmp_path / "missing.pth")


def test_wrong_architecture_names_file_model_keys_and_fix(tmp_path):
    torch.save(create_model("lsnet_test", num_classes=3).state_dict(), tmp_path / "lsnet_test.pth")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(create_model("test_resnet", num_classes=3), tmp_path / "lsnet_test.pth")
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"'{tmp_path / 'lsnet_test.pth'}' does not fit test_resnet (ResNet)")
    assert "missing keys [conv1.0.weight, conv1.1.weight" in text and "unexpected keys [stem.0.conv.weight" in text
    assert "Build the model the file was trained as" in text
    torch.save({"model": random_official_state_dict("lsnet_t")}, tmp_path / "lsnet_t.pth")
    with pytest.raises(CheckpointError, match=r"does not fit lsnet_s \(LSNet\): 28 missing keys \[stages.0.blocks.0.*"
                       r"shape mismatches \[stem.0.conv.weight: checkpoint \(16, 3, 3, 3\) vs model \(24, 3, 3, 3\)"):
        load_checkpoint(create_model("lsnet_s"), tmp_path / "lsnet_t.pth")


def test_model_factory_errors():
    with pytest.raises(UnknownModelError, match=r"unknown model 'no_such_model'; list candidates with "
                       r"timm.list_models\('no_su\*'\)"):
        create_model("no_such_model")
    assert create_model("test_resnet", img_size=64).num_classes == 1000  # img_size dropped for models without it
    assert create_model("lsnet_test", img_size=64).state_dict()[BIAS].shape[1] == 1


def test_teacher_and_analysis_paths_use_the_loader(official, tmp_path):
    from lsnet.analysis.models import load_model
    from lsnet.train.distill import build_teacher

    state, ours = official
    torch.save({"model": state, "args": argparse.Namespace(model="lsnet_t")}, tmp_path / "lsnet_t.pth")
    teacher = build_teacher("lsnet_t", str(tmp_path / "lsnet_t.pth"), num_classes=1000, in_chans=3,
                            device=torch.device("cpu"))
    assert_equal_state(teacher, ours)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(CheckpointError, match="classifier has 1000 classes but lsnet_t .* has 10"):
        build_teacher("lsnet_t", str(tmp_path / "lsnet_t.pth"), num_classes=10, in_chans=3, device=torch.device("cpu"))
    model = load_model("lsnet_t", checkpoint=tmp_path / "lsnet_t.pth")
    assert_equal_state(model, ours)
    assert model.analysis_input["img_size"] == 224 and not model.analysis_input["from_checkpoint_config"]


def test_a_plain_file_initialises_a_distilled_model(official, tmp_path, caplog):
    """The distillation head (norm and classifier) is not in a plain file: it keeps its fresh init, logged."""
    state, ours = official
    torch.save(state, tmp_path / "lsnet_t.pth")
    with caplog.at_level(logging.INFO, logger="lsnet.checkpoints"):
        model = load_checkpoint(create_model("lsnet_t_distilled", num_classes=10), tmp_path / "lsnet_t.pth")
    assert_equal_state(model, ours, skip=("head.fc.weight", "head.fc.bias"))
    assert "the model keeps its fresh head.fc.weight, head.fc.bias, head_dist.norm.weight" in caplog.text
