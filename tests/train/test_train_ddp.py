"""DistributedDataParallel on CPU (gloo): 2 processes train a few steps and end with identical weights."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import torch
from train_helpers import TINY_MODEL, torchrun_two_ranks

import lsnet.train.launch as launch
from lsnet.cli.main import main

RANK_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from lsnet.train import train
    folder, output = sys.argv[1], sys.argv[2]
    result = train(dataset="folder", data_dir=folder, output=output, experiment="ddp", epochs=2, model=MODEL,
                   img_size=32, batch_size=4, workers=0, quiet=True, warmup_epochs=0, lr=2e-3, threads=1,
                   mixup=0.8, cutmix=1.0, model_ema=True, sync_bn=True)
    params = {k: v.detach().clone() for k, v in result.model.named_parameters()}
    torch.save(params, os.path.join(output, "rank" + os.environ["RANK"] + ".pt"))
""").replace("MODEL", repr(TINY_MODEL))


def test_two_cpu_processes_end_with_identical_weights(folder_dir, tmp_path):
    done, rank0, rank1 = torchrun_two_ranks(RANK_SCRIPT, folder_dir, tmp_path, workdir=tmp_path)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between ranks"
    # rank 0 alone logs and writes; evaluation covers every image exactly once across the 2 ranks
    run = tmp_path / "ddp"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and json.loads((run / "eval.json").read_text())["num_images"] == 12
    state = torch.load(run / "last.pth", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # every rank's generators, for an exact resume
    assert done.stdout.count("test top-1") == 1


def test_nproc_flag_relaunches_through_torchrun(folder_dir, tmp_path, monkeypatch):
    launched = {}

    def fake_call(command):
        launched["command"] = command
        config = command[command.index("--config") + 1]
        launched["config"] = Path(config).read_text()
        return 0

    monkeypatch.setattr(launch.subprocess, "call", fake_call)
    assert main(["train", "--nproc", "2", "--dataset", "folder", "--data-dir", str(folder_dir), "--output",
                 str(tmp_path), "--model", TINY_MODEL, "--epochs", "1"]) == 0
    command = launched["command"]
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    assert command[6] == "lsnet.train" and "model: lsnet_test" in launched["config"]
    assert "experiment: " in launched["config"] and "experiment: null" not in launched["config"]
    assert not list(tmp_path.glob(".launch-*"))  # the temporary config is removed
