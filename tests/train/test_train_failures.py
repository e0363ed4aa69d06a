"""Failure modes: each ends in one actionable error, and never costs the last good checkpoint."""
from __future__ import annotations

import errno

import pytest
import torch
from train_helpers import TINY_MODEL

import lsnet.train.checkpoint as checkpoint
from lsnet.checkpoints import read_checkpoint
from lsnet.cli.main import main
from lsnet.train import CheckpointError, NonFiniteLossError, Trainer, train
from lsnet.train.checkpoint import save_checkpoint


def tiny(folder, output, experiment, **overrides):
    settings = dict(dataset="folder", data_dir=str(folder), output=str(output), experiment=experiment, epochs=2,
                    model=TINY_MODEL, img_size=32, batch_size=8, workers=0, quiet=True, warmup_epochs=0, lr=2e-3,
                    threads=1)
    return {**settings, **overrides}


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(folder_dir, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    loss_fn = Trainer._loss

    def poisoned(self, images, outputs, targets):
        calls["n"] += 1
        loss = loss_fn(self, images, outputs, targets)
        return loss * float("nan") if calls["n"] == 8 else loss  # epoch 1 has 6 steps: step 2 of epoch 2

    monkeypatch.setattr(Trainer, "_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2, step 2 .*last good checkpoint .*"
                                                 r"\(epoch 1\) is intact"):
        train(tiny(folder_dir, tmp_path, "nan"))
    assert torch.load(tmp_path / "nan" / "last.pth", weights_only=True)["epoch"] == 1
    calls["n"] = 0
    assert main(["train", "--resume", str(tmp_path / "nan"), "--epochs", "3"]) == 1  # the CLI: one line
    err = capsys.readouterr().err
    assert err.startswith("error: loss became nan at epoch 3") and "Traceback" not in err


def test_disk_full_while_saving_keeps_the_previous_checkpoint(folder_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    serialize = checkpoint._serialize

    def disk_full_on_second_save(obj, f):
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        serialize(obj, f)

    monkeypatch.setattr(checkpoint, "_serialize", disk_full_on_second_save)
    with pytest.warns(UserWarning, match="--sync-bn needs CUDA"), \
            pytest.raises(CheckpointError, match=r"No space left on device \(disk full.*previous last.pth is intact"):
        train(tiny(folder_dir, tmp_path, "full", sync_bn=True))
    run = tmp_path / "full"
    assert read_checkpoint(run / "last.pth").content["epoch"] == 1
    assert not list(run.glob(".*.tmp-*"))


def test_atomic_save_leaves_the_old_file_on_any_error(tmp_path, monkeypatch):
    path = tmp_path / "ck.pth"
    save_checkpoint({"x": torch.ones(3)}, path)

    def interrupted(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_serialize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"x": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pth"]


def test_incompatible_checkpoint_names_keys_and_shapes(tiny_run, folder_dir, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tiny_run / "best.pth"), "--num-classes", "5", "--workers", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "best.pth': its classifier has 3 classes but lsnet_test (LSNet) has 5" in err
    assert "--num-classes 3" in err
    assert main(["eval", "--checkpoint", str(tiny_run / "best.safetensors"), "--model", "test_resnet",
                 "--workers", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit test_resnet" in err
    assert "missing keys [conv1.0.weight" in err and "unexpected keys [head.fc.bias" in err
    with pytest.raises(CheckpointError, match="best.pth' does not fit test_resnet .*missing keys"):
        train(tiny(folder_dir, tmp_path, "init", model="test_resnet", initial_checkpoint=str(tiny_run / "best.pth")))


def test_unreadable_checkpoint_files(tmp_path, capsys):
    (tmp_path / "garbage.pth").write_bytes(b"\x00" * 100)
    torch.save({"model": {"w": torch.ones(1)}, "extra": object()}, tmp_path / "pickled.pth")
    for name in ("garbage.pth", "pickled.pth"):
        with pytest.raises(CheckpointError, match="cannot read checkpoint .*weights_only=True"):
            read_checkpoint(tmp_path / name)
    assert main(["train", "--resume", str(tmp_path / "garbage.pth")]) == 1
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_busy_cpus_drop_training_to_one_thread():
    from lsnet.train.engine import _ThreadGuard

    threads = torch.get_num_threads()
    guard = _ThreadGuard(enabled=True)
    try:
        assert not any(guard.step(0.1) for _ in range(40))  # steady: best median 0.1 s
        assert not any(guard.step(0.5) for _ in range(20))  # one slow window is a strike, not a switch
        with pytest.warns(UserWarning, match="5x slower .*continuing with 1 thread"):
            assert [guard.step(0.5) for _ in range(20)][-1]
        assert torch.get_num_threads() == 1 and not guard.step(0.5)
    finally:
        torch.set_num_threads(threads)
