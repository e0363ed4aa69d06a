"""`lsnet train` / `lsnet eval` end to end on a tiny synthetic ImageFolder and a tiny Fashion-MNIST."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import TINY_FLAGS, folder_flags, make_image_folder

from lsnet.checkpoints import read_checkpoint
from lsnet.cli.main import main

RUN_FILES = ("config.yaml", "metrics.jsonl", "curves.png", "confusion_matrix.png", "last.pth", "best.pth",
             "best.safetensors", "eval.json", "report.md")


def test_train_on_image_folder_writes_the_run_folder(tiny_run):
    for name in RUN_FILES:
        assert (tiny_run / name).is_file(), name
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["train_images_per_sec"] > 0 and 0 <= r["val_top1"] <= 100 for r in rows)
    state = read_checkpoint(tiny_run / "last.pth").content  # torch.load(weights_only=True) inside
    assert state["epoch"] == 2 and state["config"]["num_classes"] == 3 and state["config"]["in_chans"] == 3
    weights = load_file(tiny_run / "best.safetensors")
    assert set(weights) == set(state["model"])
    report = (tiny_run / "report.md").read_text()
    assert "Final test top-1" in report and "| owl |" in report
    result = json.loads((tiny_run / "eval.json").read_text())
    assert result["num_images"] == 24 and len(result["confusion_matrix"]) == 3


def test_eval_cli_fused_matches_unfused(tiny_run, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tiny_run / "best.pth"), "--workers", "0", "--quiet",
                 "--output", str(tmp_path / "plain")]) == 0
    assert main(["eval", "--checkpoint", str(tiny_run / "best.safetensors"), "--fuse", "--workers", "0", "--quiet",
                 "--output", str(tmp_path / "fused")]) == 0
    out = capsys.readouterr().out
    assert "(fused)" in out and "top-1" in out and "owl" in out
    plain, fused = (json.loads((tmp_path / k / "eval.json").read_text()) for k in ("plain", "fused"))
    assert fused["fused"] and not plain["fused"]
    assert abs(plain["top1"] - fused["top1"]) <= 100 / 24 + 1e-6  # at most one flip from float rounding
    assert abs(plain["loss"] - fused["loss"]) < 1e-3
    assert (tmp_path / "fused" / "confusion_matrix.png").is_file()


def test_train_and_eval_on_tiny_fashion_mnist(fmnist_dir, tmp_path, capsys):
    flags = ["--dataset", "fashion-mnist", "--data-dir", str(fmnist_dir), "--output", str(tmp_path),
             "--experiment", "fm", "--epochs", "1", *TINY_FLAGS, "--train-subset", "48"]
    assert main(["train", *flags]) == 0
    out = capsys.readouterr().out
    assert "48 train / 32 test images at 1x32x32" in out and "test top-1" in out and "report" in out
    config = read_checkpoint(tmp_path / "fm" / "last.pth").config
    assert config["in_chans"] == 1 and config["mean"] == pytest.approx([0.286]) and config["val_split"] == "test"
    assert main(["eval", "--checkpoint", str(tmp_path / "fm"/ "best.pth"), "--workers", "0", "--quiet"]) == 0
    assert "T-shirt/top" in capsys.readouterr().out


def test_corrupt_image_is_skipped_and_counted_or_strict_error(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", n_train=8, n_val=4)
    (root / "train" / "dog" / "000-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        assert main(["train", *folder_flags(root, tmp_path, "skip", epochs=1)]) == 0
    row = json.loads((tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["skipped_images"] == 1
    assert "skipped 1 unreadable images" in capsys.readouterr().out
    assert main(["train", *folder_flags(root, tmp_path, "strict", epochs=1), "--strict"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unreadable image") and "000-broken.png" in err and "Traceback" not in err


def test_missing_dataset_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LSNET_FASHION_MNIST", str(tmp_path / "nothing"))
    assert main(["train", "--data-dir", str(tmp_path / "nothing"), "--output", str(tmp_path), *TINY_FLAGS]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "apt-get install dataset-fashion-mnist" in err
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pth")]) == 1
    assert "not found" in capsys.readouterr().err


def test_existing_run_folder_needs_resume(tiny_run, folder_dir, capsys):
    assert main(["train", *folder_flags(folder_dir, tiny_run.parent, tiny_run.name)]) == 1
    assert "--resume" in capsys.readouterr().err


def test_resume_of_a_finished_run_only_evaluates(tiny_run, capsys):
    before = torch.load(tiny_run / "last.pth", weights_only=True)["model"]
    assert main(["train", "--resume", str(tiny_run), "--quiet", "--workers", "0"]) == 0
    assert "test top-1" in capsys.readouterr().out
    after = torch.load(tiny_run / "last.pth", weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
