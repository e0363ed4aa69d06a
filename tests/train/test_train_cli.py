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
    best = max(rows, key=lambda r: r["val_top1"])  # first of the best: best.pth is the first epoch to reach it
    assert rows[-1]["best_val_top1"] == best["val_top1"] and rows[-1]["best_epoch"] == best["epoch"]
    state = read_checkpoint(tiny_run / "last.pth").content  # torch.load(weights_only=True) inside
    assert state["epoch"] == 2 and state["config"]["num_classes"] == 3 and state["config"]["in_chans"] == 3
    weights = load_file(tiny_run / "best.safetensors")
    assert set(weights) == set(state["model"])
    report = (tiny_run / "report.md").read_text()
    assert "Test top-1 **" in report and "12 test images, evaluated once at the end with `best.pth`" in report
    assert f"best val top-1 {best['val_top1']:.2f}% at epoch {best['epoch']} on 24 val images (val/ folder)" in report
    assert "## Per-class accuracy (test)" in report and "| owl |" in report
    result = json.loads((tiny_run / "eval.json").read_text())  # the test split, once, with best.pth
    assert result["split"] == "test" and result["num_images"] == 12 and len(result["confusion_matrix"]) == 3
    assert result["best_epoch"] == best["epoch"] and result["best_val_top1"] == best["val_top1"]


def test_eval_cli_fused_matches_unfused(tiny_run, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tiny_run / "best.pth"), "--workers", "0", "--quiet",
                 "--output", str(tmp_path / "plain")]) == 0
    assert main(["eval", "--checkpoint", str(tiny_run / "best.safetensors"), "--fuse", "--workers", "0", "--quiet",
                 "--output", str(tmp_path / "fused")]) == 0
    out = capsys.readouterr().out
    assert "(fused)" in out and "top-1" in out and "owl" in out
    plain, fused = (json.loads((tmp_path / k / "eval.json").read_text()) for k in ("plain", "fused"))
    assert fused["fused"] and not plain["fused"]
    assert plain["split"] == fused["split"] == "test" and plain["num_images"] == 12
    assert abs(plain["top1"] - fused["top1"]) <= 100 / 12 + 1e-6  # at most one flip from float rounding
    assert abs(plain["loss"] - fused["loss"]) < 1e-3
    assert (tmp_path / "fused" / "confusion_matrix.png").is_file()


def test_eval_cli_deployed_paths_match_eager(tiny_run, folder_dir, tmp_path, capsys):
    """--runtime/--precision score the model as deployed: onnxruntime fp32 gives eager's loss; int8 stays close."""
    common = ["--checkpoint", str(tiny_run / "best.pth"), "--workers", "0", "--quiet", "--fuse"]
    assert main(["eval", *common, "--output", str(tmp_path / "eager")]) == 0
    assert main(["eval", *common, "--runtime", "onnxruntime", "--output", str(tmp_path / "ort")]) == 0
    assert main(["eval", *common, "--runtime", "onnxruntime", "--precision", "int8", "--calibration",
                 str(folder_dir), "--calibration-images", "16", "--output", str(tmp_path / "int8")]) == 0
    assert "[onnxruntime int8]" in capsys.readouterr().out
    eager, ort, int8 = (json.loads((tmp_path / k / "eval.json").read_text()) for k in ("eager", "ort", "int8"))
    assert (ort["runtime"], ort["precision"], int8["precision"]) == ("onnxruntime", "fp32", "int8")
    assert ort["confusion_matrix"] == eager["confusion_matrix"] and abs(ort["loss"] - eager["loss"]) < 1e-4
    assert int8["num_images"] == 12 and abs(int8["loss"] - eager["loss"]) < 0.05 * max(1.0, eager["loss"])
    assert main(["eval", *common, "--precision", "int8", "--runtime", "onnxruntime"]) == 1
    assert "--precision int8 needs --calibration DATA" in capsys.readouterr().err


def test_eval_deployed_paths_refuse_dense_checkpoints(tmp_path, capsys):
    import torch

    checkpoint = tmp_path / "semantic.pth"
    torch.save({"model": {}, "config": {"task": "semantic", "model": "semantic_fpn"}}, checkpoint)
    assert main(["eval", "--checkpoint", str(checkpoint), "--runtime", "onnxruntime", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "--runtime/--precision score classifiers" in err and "drop them" in err


def test_train_and_eval_on_tiny_fashion_mnist(fmnist_dir, tmp_path, capsys):
    flags = ["--dataset", "fashion-mnist", "--data-dir", str(fmnist_dir), "--output", str(tmp_path),
             "--experiment", "fm", "--epochs", "1", *TINY_FLAGS, "--train-subset", "48"]
    assert main(["train", *flags]) == 0
    out = capsys.readouterr().out
    # 10% of the 64 training images are held out for validation (seeded), the test split is read once at the end
    assert "48 train / 6 val (held out from train: 6 images, seed 42) / 32 test images at 1x32x32" in out
    assert "val top-1" in out and "test top-1" in out and "of best.pth (epoch 1, val top-1" in out
    config = read_checkpoint(tmp_path / "fm" / "last.pth").config
    assert config["in_chans"] == 1 and config["mean"] == pytest.approx([0.286])
    assert (config["val_split"], config["val_size"], config["test_split"]) == (None, 6, "test")
    best = str(tmp_path / "fm" / "best.pth")
    assert main(["eval", "--checkpoint", best, "--workers", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist test split (test): test top-1" in out and "32 images" in out and "T-shirt/top" in out
    assert main(["eval", "--checkpoint", best, "--workers", "0", "--quiet", "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "val split (held out from train: 6 images, seed 42): val top-1" in out and " 6 images" in out
    assert main(["eval", "--checkpoint", best, "--workers", "0", "--quiet", "--split", "train"]) == 0
    out = capsys.readouterr().out  # the training images without the held-out ones
    assert "train split (train without the 6 held out, seed 42): train top-1" in out and " 58 images" in out


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
    assert "test top-1" in capsys.readouterr().out  # best.pth on the test split, again
    after = torch.load(tiny_run / "last.pth", weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_best_pth_is_chosen_on_val_and_the_test_split_is_read_once_with_it(folder_dir, tmp_path, monkeypatch):
    from lsnet.train import Trainer, train

    calls, evaluate = [], Trainer._evaluate
    val_top1 = iter([60.0, 40.0, 50.0])  # epoch 1 is the best on val, though the run ends at epoch 3

    def spy(self, model, loader, split):
        result = evaluate(self, model, loader, split)
        if split == "val":
            result.top1 = next(val_top1)
        calls.append((split, {k: v.clone() for k, v in model.state_dict().items()}))
        return result

    monkeypatch.setattr(Trainer, "_evaluate", spy)
    result = train(dataset="folder", data_dir=str(folder_dir), output=str(tmp_path), experiment="sel", epochs=3,
                   model=TINY_FLAGS[1], img_size=32, batch_size=8, workers=0, quiet=True, warmup_epochs=0, lr=2e-3,
                   threads=1)
    assert [split for split, _ in calls] == ["val", "val", "val", "test"]
    assert (result.best_epoch, result.best_val_top1, result.final.extra["split"]) == (1, 60.0, "test")
    best = read_checkpoint(tmp_path / "sel" / "best.pth").content
    last = read_checkpoint(tmp_path / "sel" / "last.pth").content
    assert best["epoch"] == 1 and last["epoch"] == 3
    tested = calls[-1][1]
    assert all(torch.equal(tested[k], best["model"][k]) for k in tested)  # the test saw epoch 1's weights
    assert not all(torch.equal(tested[k], last["model"][k]) for k in tested)
    assert load_file(tmp_path / "sel" / "best.safetensors").keys() == tested.keys()
    eval_json = json.loads((tmp_path / "sel" / "eval.json").read_text())
    assert (eval_json["split"], eval_json["best_epoch"], eval_json["best_val_top1"]) == ("test", 1, 60.0)


def test_library_code_never_imports_the_cli():
    """Imports point down: `python -m lsnet.train` and `lsnet train` share lsnet.train.launch, not lsnet.cli."""
    import ast
    from pathlib import Path

    import lsnet

    package = Path(lsnet.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.relative_to(package).parts[0] == "cli":
            continue
        here = ("lsnet", *path.relative_to(package).parts[:-1])  # the importing module's package
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):  # resolve relative imports: level 1 is `here`, 2 its parent, ...
                base = here[:len(here) - node.level + 1] if node.level else ()
                module = ".".join((*base, *filter(None, [node.module])))
                names = [module, *(f"{module}.{alias.name}" for alias in node.names)]  # `from . import cli` too
            offenders += [f"{path.relative_to(package)}: {n}" for n in names if n.startswith("lsnet.cli")]
    assert not offenders
