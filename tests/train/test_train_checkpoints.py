"""`lsnet eval` and `lsnet train --initial-checkpoint` with an official-layout LSNet-T file, end to end."""
from __future__ import annotations

import argparse

import pytest
import timm
import torch
from timm.models import adapt_input_conv

from contract import random_official_state_dict
from lsnet.cli.main import main
from lsnet.models.lsnet import checkpoint_filter_fn, resize_bias_table
from lsnet.train import engine

FAST = ["--batch-size", "8", "--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    """An official training container (argparse args included) of random LSNet-T weights, and those weights in our
    keys at 224 px."""
    state = random_official_state_dict("lsnet_t")
    path = tmp_path_factory.mktemp("official") / "lsnet_t.pth"
    torch.save({"model": state, "epoch": 299, "args": argparse.Namespace(model="lsnet_t", input_size=224)}, path)
    return path, checkpoint_filter_fn(state, timm.create_model("lsnet_t"))


def test_eval_an_official_checkpoint(official_file, folder_dir, tmp_path, capsys):
    path, _ = official_file
    flags = ["eval", "--checkpoint", str(path), "--model", "lsnet_t", "--dataset", "folder", "--data-dir",
             str(folder_dir), "--img-size", "64", *FAST]
    assert main(flags) == 1  # the data set's 3 classes: scoring a fresh head would be meaningless
    assert "classifier has 1000 classes but lsnet_t (LSNet) has 3" in capsys.readouterr().err
    assert main([*flags, "--num-classes", "1000"]) == 0
    out = capsys.readouterr().out
    assert "lsnet_t on folder test split (test): test top-1" in out and "12 images" in out


def test_train_from_an_official_checkpoint_starts_from_its_weights(official_file, fmnist_dir, tmp_path, monkeypatch,
                                                                   capsys):
    """64 px, 10 grey classes: the model the engine builds equals the file before the first optimizer step."""
    path, ours = official_file
    seen = {}
    build_optimization = engine.Trainer._build_optimization

    def snapshot(self):  # runs right after _build_model, before any step
        seen.update({k: v.clone() for k, v in self.model.state_dict().items()})
        build_optimization(self)

    monkeypatch.setattr(engine.Trainer, "_build_optimization", snapshot)
    assert main(["train", "--model", "lsnet_t", "--initial-checkpoint", str(path), "--num-classes", "10",
                 "--in-chans", "1", "--img-size", "64", "--dataset", "fashion-mnist", "--data-dir", str(fmnist_dir),
                 "--train-subset", "16", "--epochs", "1", "--output", str(tmp_path), "--experiment", "ft",
                 "--warmup-epochs", "0", "--threads", "1", *FAST]) == 0
    assert "test top-1" in capsys.readouterr().out
    stem, heads = "stem.0.conv.weight", ("head.fc.weight", "head.fc.bias")
    biases = [k for k in ours if k.endswith("attention_biases")]
    for key, value in ours.items():
        if key == stem:
            assert torch.equal(seen[key], adapt_input_conv(1, value))
        elif key in biases:
            assert torch.equal(seen[key], resize_bias_table(value, (1, 1)))
        elif key in heads:
            assert seen[key].shape[0] == 10
        else:
            assert torch.equal(seen[key], value), key
    assert len(biases) == 5
