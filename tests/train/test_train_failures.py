"""Failure modes: each ends in one actionable error, and never costs the last good checkpoint."""
from __future__ import annotations

import errno

import pytest
import torch
from train_helpers import TINY_FLAGS, TINY_MODEL, folder_flags, make_image_folder

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


# ------------------------------------------------------------------------------------------- bad input, one line
def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_last_incomplete_training_batch_is_dropped(tmp_path):
    root = make_image_folder(tmp_path / "data", n_train=3, n_val=1)  # 9 training images: batches 4, 4 and 1
    result = train(tiny(root, tmp_path, "odd", epochs=1, batch_size=4))
    assert result.history[0]["train_images_per_sec"] > 0
    assert result.train_images_per_sec > 0 and result.epochs_done == 1
    assert read_checkpoint(tmp_path / "odd" / "last.pth").content["counters"]["train_images"] == 8  # 2 full batches


def test_batch_size_one_and_one_readable_image_per_batch(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", n_train=2, n_val=1)
    assert main(["train", *folder_flags(root, tmp_path, "b1", epochs=1), "--batch-size", "1"]) == 1
    err = one_line_error(capsys)
    assert "--batch-size 1: lsnet_test has BatchNorm, which needs at least 2 images" in err and "2 or more" in err
    assert not (tmp_path / "b1").exists()  # nothing is written before the run can start
    for name in ("000", "003"):  # sorted order: each of the first two batches of 2 keeps 1 readable image
        (root / "train" / "cat" / f"{name}.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="dropped a training batch left with 1 readable image"):
        result = train(tiny(root, tmp_path, "b2", epochs=1, batch_size=2, hflip=0.0))
    assert result.history[0]["skipped_images"] == 2


def test_unknown_model_is_named_before_the_data(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", n_train=1, n_val=1)  # 3 images: any batch size check would fail
    assert main(["train", "--dataset", "folder", "--data-dir", str(root), "--model", "no_such_model",
                 "--output", str(tmp_path)]) == 1
    err = one_line_error(capsys)
    assert "unknown model 'no_such_model'" in err and "batch" not in err


def test_strict_corrupt_image_in_a_worker_is_one_line(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", n_train=4, n_val=2)
    (root / "train" / "dog" / "000-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["train", *folder_flags(root, tmp_path, "strict", epochs=1), "--strict", "--workers", "2"]) == 1
    err = one_line_error(capsys)
    assert err.startswith("error: unreadable image") and "000-broken.png" in err and "without --strict" in err
    assert "DataLoader worker" not in err


def test_num_classes_and_batch_size_that_do_not_fit_the_data(folder_dir, tmp_path, capsys):
    assert main(["train", *folder_flags(folder_dir, tmp_path, "k", epochs=1), "--num-classes", "2"]) == 1
    err = one_line_error(capsys)
    assert "--num-classes 2 is fewer than the 3 classes of folder" in err and "pass at least 3" in err
    assert main(["train", *folder_flags(folder_dir, tmp_path, "big", epochs=1), "--batch-size", "64"]) == 1
    assert "48 training images per process is fewer than --batch-size 64; lower --batch-size" in one_line_error(capsys)


def test_resume_with_an_optimizer_that_does_not_fit(tiny_run, capsys):
    # weight decay 0 puts every parameter in one group; the run's AdamW state has two (decay / no decay)
    assert main(["train", "--resume", str(tiny_run), "--weight-decay", "0", "--epochs", "3"]) == 1
    err = one_line_error(capsys)
    assert "optimizer state in" in err and "does not fit --opt adamw" in err and "parameter groups" in err
    assert "resume with the run's own optimizer settings" in err and "--initial-checkpoint" in err


def test_validation_and_test_split_errors(folder_dir, fmnist_dir, tmp_path, capsys):
    fm = ["--dataset", "fashion-mnist", "--data-dir", str(fmnist_dir), "--output", str(tmp_path), *TINY_FLAGS]
    cases = [
        ([*fm, "--val-split", "test", "--test-split", "test"], "--val-split and --test-split are both 'test'"),
        ([*fm, "--val-split", "test"], "validation split 'test' is also the test split"),  # test_split from the data
        ([*fm, "--val-size", "64"], "--val-size 64 must be between 1 and 63 for a training split of 64 images"),
        ([*fm, "--val-size", "0", "--test-split", "none"], "no validation or test split and --val-size is 0"),
        ([*folder_flags(folder_dir, tmp_path, "v", epochs=1), "--val-size", "5"],
         "has its own validation split 'val'; drop --val-size"),
        ([*folder_flags(folder_dir, tmp_path, "v", epochs=1), "--test-split", "holdout"], "no 'holdout' split"),
    ]
    for argv, expected in cases:
        assert main(["train", *argv]) == 1, argv
        err = one_line_error(capsys)
        assert expected in err, (argv, err)


def test_folder_without_val_holds_out_training_images(tmp_path):
    root = make_image_folder(tmp_path / "data", n_train=10, n_val=0, n_test=2)  # train/ (30 images) and test/
    result = train(tiny(root, tmp_path, "carve", epochs=1, batch_size=4))
    config = read_checkpoint(tmp_path / "carve" / "last.pth").content["config"]
    assert (config["val_split"], config["val_size"], config["test_split"]) == (None, 3, "test")  # 10% of 30
    assert result.val.num_images == 3 and result.final.num_images == 6 and result.final.extra["split"] == "test"
    assert read_checkpoint(tmp_path / "carve" / "last.pth").content["counters"]["train_images"] == 24  # 27 left
