"""Detection through the one engine: a small RetinaNet learns on real Fashion-scenes (Fashion-MNIST items on 64 px
canvases), resumes exactly after a kill, is scored again by `lsnet eval`, and draws its detections with
`lsnet predict`. The data: see the `real_fashion_mnist` fixture (conftest.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from test_train_resume import KILL_AFTER_EPOCH_1, metrics
from train_helpers import torchrun_two_ranks

from lsnet.checkpoints import read_checkpoint
from lsnet.cli.main import main
from lsnet.train import TrainConfig, Trainer
from lsnet.train.distributed import DistState

# small and fast: timm's 8M-parameter test ResNet as the backbone, 64 px scenes of 1-2 items, one thread
SCENES = dict(num_train=320, num_val=48, num_test=48, size=64, max_items=2, seed=0)
FAST = dict(task="detection", detector="retinanet", model="test_resnet", min_size=64, max_size=64, batch_size=8,
            workers=0, threads=1, quiet=True, warmup_epochs=0, freeze_bn=False, weight_decay=0.05)
FAST_FLAGS = ["--task", "detection", "--model", "test_resnet", "--min-size", "64", "--max-size", "64", "--workers",
              "0", "--threads", "1", "--quiet", "--warmup-epochs", "0", "--no-freeze-bn", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def scenes(real_fashion_mnist, tmp_path_factory):
    from lsnet.data.fashion_scenes import build_fashion_scenes

    root = tmp_path_factory.mktemp("scenes") / "fashion-scenes"
    build_fashion_scenes(root, fashion_dir=real_fashion_mnist, **SCENES)
    return root


@pytest.fixture(scope="module")
def learned(scenes, tmp_path_factory):
    """(the untrained detector's val result, the TrainResult of the same detector after training)."""
    cfg = TrainConfig(data_dir=str(scenes), output=str(tmp_path_factory.mktemp("runs")), experiment="learn",
                      epochs=2, lr=2e-3, sched="cosine", min_lr=2e-4, **FAST)
    trainer = Trainer(cfg, DistState())
    untrained = trainer._evaluate(trainer.model, trainer.val_loader, "val")
    return untrained, trainer.fit()


def test_retinanet_learns_on_fashion_scenes(learned):
    untrained, result = learned
    aps = [row["val_bbox_AP"] for row in result.history]
    # measured: untrained val bbox AP 0.00; after 80 steps val AP 4.1, test AP 4.1 (AP50 11.8)
    assert untrained.bbox_AP < 0.5, untrained.scores
    assert result.best_val_metric == max(aps) >= untrained.bbox_AP + 1.5, (untrained.bbox_AP, aps)
    final = result.final
    assert final.extra["split"] == "test" and final.num_images == SCENES["num_test"]
    assert final.bbox_AP >= untrained.bbox_AP + 1.5 and final.scores["bbox"]["AP50"] >= 5.0, final.scores
    first, last = result.history[0], result.history[-1]
    assert set(last["train_losses"]) == {"classification", "bbox_regression"}
    assert last["train_loss"] == pytest.approx(sum(last["train_losses"].values()), rel=1e-5)  # the engine's sum
    assert last["train_loss"] < 0.8 * first["train_loss"]  # measured: 2.61 -> 1.78


def test_detection_run_folder(learned):
    _, result = learned
    run = result.run_dir
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "last.pth", "best.pth", "best.safetensors",
                 "eval.json", "report.md"):
        assert (run / name).is_file(), name
    state = read_checkpoint(run / "best.pth").content
    assert state["config"]["task"] == "detection" and state["config"]["num_classes"] == 10
    assert state["metadata"]["detector_config"]["detector"] == "retinanet"
    assert state["metadata"]["classes"][1] == "Trouser" and state["metadata"]["cat_ids"] == list(range(1, 11))
    saved = json.loads((run / "eval.json").read_text())
    assert saved["bbox"]["AP"] == pytest.approx(result.final.bbox_AP)
    assert set(saved["bbox"]["per_class"]) == set(state["metadata"]["classes"])
    report = (run / "report.md").read_text()
    assert f"Test bbox AP **{result.final.bbox_AP:.2f}** on 48 test images" in report
    assert "## COCO AP (test" in report and "| bbox | " in report and "| Trouser | " in report
    assert f"best val bbox AP {result.best_val_metric:.2f} at epoch {result.best_epoch}" in report


def test_eval_cli_scores_the_checkpoint_as_the_run_did(learned, tmp_path, capsys):
    _, result = learned
    run = result.run_dir
    same = ["--batch-size", "16", "--workers", "0", "--quiet"]  # the run's eval batch: the same padded batches
    assert main(["eval", "--checkpoint", str(run / "best.pth"), *same, "--output", str(tmp_path / "pth")]) == 0
    out = capsys.readouterr().out
    assert "retinanet test_resnet on fashion-scenes test split (instances_test.json)" in out and "Trouser" in out
    assert main(["eval", "--task", "detection", "--checkpoint", str(run / "best.safetensors"), *same,
                 "--output", str(tmp_path / "st")]) == 0
    saved = json.loads((run / "eval.json").read_text())
    for name in ("pth", "st"):
        again = json.loads((tmp_path / name / "eval.json").read_text())  # same weights, images and COCOeval
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
            assert again["bbox"][key] == pytest.approx(saved["bbox"][key], nan_ok=True), (name, key)
        assert again["bbox"]["per_class"] == pytest.approx(saved["bbox"]["per_class"], nan_ok=True), name
    assert main(["eval", "--task", "classification", "--checkpoint", str(run / "best.pth")]) == 1
    assert "holds a detection run, not classification" in capsys.readouterr().err


def test_predict_draws_detections_and_writes_coco_results(learned, scenes, tmp_path, capsys):
    from lsnet.train.tasks.detection import load_detector

    _, result = learned
    images = sorted((scenes / "test").glob("*.png"))[:2]
    assert main(["predict", "--checkpoint", str(result.run_dir / "best.pth"), *map(str, images), "--out",
                 str(tmp_path), "--score-threshold", "0.2"]) == 0
    assert "2 images:" in capsys.readouterr().out
    listing = json.loads((tmp_path / "images.json").read_text())
    assert [(e["id"], e["file_name"]) for e in listing] == [(1, str(images[0])), (2, str(images[1]))]
    results = json.loads((tmp_path / "results.json").read_text())
    model, _ = load_detector(result.run_dir / "best.pth")
    for entry, path in zip(listing, images):
        picture = Image.open(tmp_path / entry["prediction"])
        original = Image.open(path).convert("RGB")
        assert picture.size == original.size == (64, 64)
        pixels = torch.from_numpy(np.asarray(original).copy()).permute(2, 0, 1)
        with torch.no_grad():
            expected = model([pixels.float() / 255])[0]
        mine = [r for r in results if r["image_id"] == entry["id"]]
        assert len(mine) == len(expected["boxes"]) > 0
        boxes = torch.tensor([r["bbox"] for r in mine])  # XYWH -> XYXY
        torch.testing.assert_close(torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1), expected["boxes"])
        assert [r["category_id"] for r in mine] == (expected["labels"] + 1).tolist()  # Fashion-scenes ids 1..10
        drawn = (expected["scores"] >= 0.2).any().item()
        assert (picture.tobytes() != original.tobytes()) == drawn


def test_resume_after_kill_matches_uninterrupted_detection_run(scenes, tmp_path):
    # flips, scale jitter and EMA draw random numbers: the resumed run must restore every generator
    flags = [*FAST_FLAGS, "--data-dir", str(scenes), "--epochs", "2", "--batch-size", "4", "--train-subset", "16",
             "--val-subset", "4", "--test-subset", "4", "--scale-jitter", "0.8", "1.2", "--model-ema",
             "--model-ema-decay", "0.9", "--seed", "3", "--output", str(tmp_path)]
    assert main(["train", *flags, "--experiment", "full"]) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_EPOCH_1, "train", *flags, "--experiment", "killed"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = tmp_path / "killed"
    assert torch.load(run / "last.pth", weights_only=True)["epoch"] == 1
    assert main(["train", "--resume", str(run)]) == 0
    full = torch.load(tmp_path / "full" / "last.pth", weights_only=True)
    resumed = torch.load(run / "last.pth", weights_only=True)
    for key in ("model", "model_ema"):
        for name, tensor in full[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name} differs after resume"
    assert metrics(tmp_path / "full") == metrics(run)
    full_eval, resumed_eval = (json.loads((d / "eval.json").read_text()) for d in (tmp_path / "full", run))
    assert full_eval["split"] == resumed_eval["split"] == "test" and full_eval["bbox"] == resumed_eval["bbox"]


def test_mask_rcnn_trains_and_is_scored_on_masks(scenes, tmp_path):
    from lsnet.train import train

    result = train(data_dir=str(scenes), output=str(tmp_path), experiment="mask", epochs=1, train_subset=4,
                   val_subset=4, test_split="none", lr=1e-3, detector_kwargs={"box_batch_size_per_image": 64},
                   **{**FAST, "detector": "mask_rcnn", "batch_size": 4})
    assert set(result.history[0]["train_losses"]) == {"loss_classifier", "loss_box_reg", "loss_mask",
                                                      "loss_objectness", "loss_rpn_box_reg"}
    assert set(result.final.scores) == {"bbox", "segm"} and result.final.extra["split"] == "val"
    assert "val_segm_AP" in result.history[0]
    report = (tmp_path / "mask" / "report.md").read_text()
    assert "| segm | " in report and "| class | bbox AP | segm AP |" in report


def test_detection_settings_errors(scenes, tmp_path, capsys):
    base = ["train", *FAST_FLAGS, "--output", str(tmp_path), "--epochs", "1"]
    cases = [
        (base, "--task detection needs --data-dir"),
        ([*base, "--data-dir", str(scenes), "--num-classes", "5"], "--num-classes 5 but"),
        ([*base, "--data-dir", str(scenes), "--val-size", "10"], "drop --val-size"),
        ([*base, "--data-dir", str(tmp_path)], "has no validation or test split (annotations: none)"),
    ]
    for argv, expected in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and expected in err, (argv, err)


DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from lsnet.train import train
    scenes, output = sys.argv[1], sys.argv[2]
    result = train(task="detection", detector="retinanet", model="test_resnet", data_dir=scenes, output=output,
                   experiment="ddp", epochs=1, min_size=64, max_size=64, batch_size=2, workers=0, quiet=True,
                   warmup_epochs=0, lr=1e-3, threads=1, freeze_bn=False, train_subset=8, val_subset=6, test_subset=5)
    params = {k: v.detach().clone() for k, v in result.model.named_parameters()}
    torch.save(params, os.path.join(output, "rank" + os.environ["RANK"] + ".pt"))
""")


def test_two_cpu_processes_train_one_detector(scenes, tmp_path):
    """DDP (gloo): both ranks end with the same weights; each rank detects its shard, COCOeval sees every image."""
    done, rank0, rank1 = torchrun_two_ranks(DDP_SCRIPT, scenes, tmp_path, workdir=tmp_path)
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)
    saved = json.loads((tmp_path / "ddp" / "eval.json").read_text())
    assert saved["num_images"] == 5 and saved["split"] == "test"  # 5 images over 2 ranks: 3 + 2, each once
    assert {"val_bbox_AP", "train_losses"} <= set(json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text()))
    assert done.stdout.count("test bbox AP") == 1
    # one process scoring best.pth on the same 5 images: the gathered detections were all of them
    assert main(["eval", "--checkpoint", str(tmp_path / "ddp" / "best.pth"), "--subset", "5", "--workers", "0",
                 "--quiet", "--output", str(tmp_path / "single")]) == 0
    single = json.loads((tmp_path / "single" / "eval.json").read_text())
    assert single["num_detections"] == saved["num_detections"]
    assert single["bbox"]["AP"] == pytest.approx(saved["bbox"]["AP"], nan_ok=True)


def test_attention_biases_get_no_weight_decay(scenes, tmp_path):
    """The official detection configs exclude LSNet's attention-bias tables from weight decay (as norms, biases)."""
    cfg = TrainConfig(data_dir=str(scenes), output=str(tmp_path), experiment="wd", epochs=1, train_subset=8,
                      val_subset=4, test_split="none", lr=1e-4, **{**FAST, "model": "lsnet_t", "weight_decay": 0.05})
    trainer = Trainer(cfg, DistState())
    decay_of = {id(p): group["weight_decay"] for group in trainer.optimizer.param_groups for p in group["params"]}
    named = dict(trainer.model.named_parameters())
    biases = [name for name in named if name.endswith("attention_biases")]
    assert biases and all(decay_of[id(named[name])] == 0.0 for name in biases)
    convs = [name for name, p in named.items() if p.ndim == 4]
    assert convs and all(decay_of[id(named[name])] == 0.05 for name in convs)


def test_detection_only_commands_name_the_wrong_checkpoint(learned, tiny_run, folder_dir, tmp_path, capsys):
    image = str(next((folder_dir / "train" / "cat").glob("*.png")))
    assert main(["predict", "--checkpoint", str(tiny_run / "best.pth"), image, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "is not a checkpoint of `lsnet train --task detection`" in err and "\n" not in err
    assert main(["eval", "--checkpoint", str(learned[1].run_dir / "best.pth"), "--fuse", "--img-size", "64"]) == 1
    assert "--img-size, --fuse: classification settings; a detection checkpoint rebuilds" in capsys.readouterr().err
