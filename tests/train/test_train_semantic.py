"""Semantic segmentation through the one engine: a small Semantic FPN learns on real Fashion-scenes label PNGs
(Fashion-MNIST items on 64 px canvases), resumes exactly after a kill, sums its confusion matrix over two ranks, is
scored again by `lsnet eval` and draws its classes with `lsnet predict`. The data: see the `real_fashion_mnist`
fixture (conftest.py)."""
from __future__ import annotations

import json
import math
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

# small and fast: timm's test ResNet as the backbone, 64 px scenes of 1-2 items scored at their own size, one thread
SCENES = dict(num_train=320, num_val=48, num_test=48, size=64, max_items=2, seed=0)
FAST = dict(task="semantic", segmenter="semantic_fpn", model="test_resnet", crop_size=[64, 64], seg_scale=[64, 64],
            short_side=None, batch_size=8, workers=0, threads=1, quiet=True, warmup_epochs=0, freeze_bn=False,
            weight_decay=1e-4)
FAST_FLAGS = ["--task", "semantic", "--model", "test_resnet", "--crop-size", "64", "64", "--seg-scale", "64", "64",
              "--short-side", "none", "--workers", "0", "--threads", "1", "--quiet", "--warmup-epochs", "0",
              "--no-freeze-bn", "--lr", "2e-3"]
CLASSES = ("background", "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")


@pytest.fixture(scope="module")
def scenes(real_fashion_mnist, tmp_path_factory):
    from lsnet.data.fashion_scenes import build_fashion_scenes

    root = tmp_path_factory.mktemp("segscenes") / "fashion-scenes"
    build_fashion_scenes(root, fashion_dir=real_fashion_mnist, **SCENES)
    return root


@pytest.fixture(scope="module")
def learned(scenes, tmp_path_factory):
    """(the untrained segmenter's val result, the TrainResult of the same segmenter after training)."""
    cfg = TrainConfig(data_dir=str(scenes), output=str(tmp_path_factory.mktemp("runs")), experiment="learn",
                      epochs=2, lr=2e-3, sched="poly", decay_rate=0.9, min_lr=1e-5, **FAST)
    trainer = Trainer(cfg, DistState())
    untrained = trainer._evaluate(trainer.model, trainer.val_loader, "val")
    return untrained, trainer.fit()


def test_semantic_fpn_learns_on_fashion_scenes(learned):
    untrained, result = learned
    ious = [row["val_mIoU"] for row in result.history]
    # measured: untrained val mIoU 0.66 (aAcc 6.1); after 80 steps val mIoU 13.5 (aAcc 69.2), test mIoU 17.3
    assert untrained.mIoU < 3.0 and untrained.scores["aAcc"] < 30, untrained.scores
    assert result.best_val_metric == max(ious) >= untrained.mIoU + 8, (untrained.mIoU, ious)
    final = result.final
    assert final.extra["split"] == "test" and final.num_images == SCENES["num_test"]
    assert final.mIoU >= untrained.mIoU + 8 and final.scores["aAcc"] >= 60, final.scores
    assert final.scores["per_class"]["background"]["IoU"] >= 70  # the canvas is learnt first
    assert final.confusion.sum() == SCENES["num_test"] * 64 * 64  # every pixel scored once (no ignore labels here)
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < 0.95 * first["train_loss"]  # measured: 1.33 -> 1.16


def test_semantic_run_folder(learned):
    _, result = learned
    run = result.run_dir
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "last.pth", "best.pth", "best.safetensors",
                 "eval.json", "report.md"):
        assert (run / name).is_file(), name
    state = read_checkpoint(run / "best.pth").content
    assert state["config"]["task"] == "semantic" and state["config"]["num_classes"] == 11
    meta = state["metadata"]
    assert meta["segmenter_config"]["segmenter"] == "semantic_fpn" and tuple(meta["classes"]) == CLASSES
    saved = json.loads((run / "eval.json").read_text())
    assert saved["mIoU"] == pytest.approx(result.final.mIoU) and saved["split"] == "test"
    matrix = np.array(saved["confusion_matrix"])
    iou = np.diag(matrix) / (matrix.sum(0) + matrix.sum(1) - np.diag(matrix))  # mmseg's IoU, by hand
    assert saved["per_class"]["Trouser"]["IoU"] == pytest.approx(100 * iou[2], nan_ok=True)
    assert saved["mIoU"] == pytest.approx(100 * np.nanmean(iou))
    report = (run / "report.md").read_text()
    assert f"Test mIoU **{result.final.mIoU:.2f}**" in report and "on 48 test images" in report
    assert f"best val mIoU {result.best_val_metric:.2f} at epoch {result.best_epoch}" in report
    trouser = saved["per_class"]["Trouser"]
    assert f"| Trouser | {trouser['IoU']:.2f} | {trouser['Acc']:.2f} |" in report
    assert "on 48 val images (labels/val)" in report and "## Per-class IoU (test" in report
    assert 'sched: "poly"' in report


def test_eval_cli_scores_the_checkpoint_as_the_run_did(learned, tmp_path, capsys):
    _, result = learned
    run = result.run_dir
    same = ["--batch-size", "16", "--workers", "0", "--quiet"]
    assert main(["eval", "--checkpoint", str(run / "best.pth"), *same, "--output", str(tmp_path / "pth")]) == 0
    out = capsys.readouterr().out
    assert "semantic_fpn test_resnet on fashion-scenes test split (labels/test): test mIoU" in out
    assert "per-class IoU / Acc" in out and "Ankle boot" in out
    assert main(["eval", "--task", "semantic", "--checkpoint", str(run / "best.safetensors"), *same,
                 "--output", str(tmp_path / "st")]) == 0
    saved = json.loads((run / "eval.json").read_text())
    for name in ("pth", "st"):
        again = json.loads((tmp_path / name / "eval.json").read_text())  # the same weights, images and inference
        assert again["confusion_matrix"] == saved["confusion_matrix"], name
        assert again["mIoU"] == pytest.approx(saved["mIoU"]), name
    assert main(["eval", "--checkpoint", str(run / "best.pth"), "--split", "val", *same]) == 0
    assert f"val mIoU {result.best_val_metric:.2f}" in capsys.readouterr().out  # best.pth's own val score
    assert main(["eval", "--task", "detection", "--checkpoint", str(run / "best.pth")]) == 1
    assert "holds a semantic run, not detection" in capsys.readouterr().err


def test_predict_writes_overlays_and_label_pngs(learned, scenes, tmp_path, capsys):
    from lsnet.segmentation.inference import segment
    from lsnet.segmentation.visualize import draw_segmentation, palette
    from lsnet.train.tasks.semantic import load_segmenter

    _, result = learned
    images = sorted((scenes / "test").glob("*.png"))[:2]
    assert main(["predict", "--checkpoint", str(result.run_dir / "best.pth"), *map(str, images), "--out",
                 str(tmp_path), "--alpha", "0.6"]) == 0
    assert "2 images: colour overlays and label PNGs (11 classes)" in capsys.readouterr().out
    listing = json.loads((tmp_path / "images.json").read_text())
    assert [e["file_name"] for e in listing] == [str(p) for p in images]
    model, _ = load_segmenter(result.run_dir / "best.pth")
    for entry, path in zip(listing, images):
        pixels = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)
        expected = segment(model, pixels[None].float() / 255, short_side=None)[0].argmax(0)  # the run's settings
        labels = torch.from_numpy(np.asarray(Image.open(tmp_path / entry["labels"])).astype(np.int64))
        assert torch.equal(labels, expected)
        overlay = np.asarray(Image.open(tmp_path / entry["prediction"]))
        drawn = draw_segmentation(pixels, expected, palette(11), alpha=0.6).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(overlay, drawn)
        counts = {CLASSES[k]: int(n) for k, n in enumerate(torch.bincount(expected.flatten(), minlength=11)) if n}
        assert entry["pixels"] == counts and sum(counts.values()) == 64 * 64


def test_resume_after_kill_matches_uninterrupted_semantic_run(scenes, tmp_path):
    # random rescale, crops, flips, photometric distortion and EMA draw random numbers: all must be restored
    flags = [*FAST_FLAGS, "--data-dir", str(scenes), "--epochs", "2", "--batch-size", "4", "--train-subset", "16",
             "--val-subset", "4", "--test-subset", "4", "--ratio-range", "0.5", "2.0", "--model-ema",
             "--model-ema-decay", "0.9", "--seed", "3", "--sched", "poly", "--output", str(tmp_path)]
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
    assert full_eval["split"] == resumed_eval["split"] == "test"
    assert full_eval["confusion_matrix"] == resumed_eval["confusion_matrix"]


DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from lsnet.train import train
    scenes, output = sys.argv[1], sys.argv[2]
    result = train(task="semantic", segmenter="semantic_fpn", model="test_resnet", data_dir=scenes, output=output,
                   experiment="ddp", epochs=1, crop_size=[64, 64], seg_scale=[64, 64], short_side=None, batch_size=2,
                   eval_batch_size=1, workers=0, quiet=True, warmup_epochs=0, lr=1e-3, threads=1, freeze_bn=False,
                   train_subset=8, val_subset=6, test_subset=5)
    params = {k: v.detach().clone() for k, v in result.model.named_parameters()}
    torch.save(params, os.path.join(output, "rank" + os.environ["RANK"] + ".pt"))
""")


def test_two_cpu_processes_sum_one_confusion_matrix(scenes, tmp_path):
    """DDP (gloo): both ranks end with the same weights; each rank scores its shard and the matrices are summed, so
    the test matrix equals one process's matrix over the same 5 images."""
    done, rank0, rank1 = torchrun_two_ranks(DDP_SCRIPT, scenes, tmp_path, workdir=tmp_path)
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)
    saved = json.loads((tmp_path / "ddp" / "eval.json").read_text())
    assert saved["num_images"] == 5 and saved["split"] == "test"  # 5 images over 2 ranks: 3 + 2, each once
    assert sum(map(sum, saved["confusion_matrix"])) == 5 * 64 * 64
    assert done.stdout.count("test mIoU") == 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: the same kernels on the same single images give the same logits
    try:
        assert main(["eval", "--checkpoint", str(tmp_path / "ddp" / "best.pth"), "--subset", "5", "--workers", "0",
                     "--batch-size", "1", "--quiet", "--output", str(tmp_path / "single")]) == 0
    finally:
        torch.set_num_threads(threads)
    single = json.loads((tmp_path / "single" / "eval.json").read_text())
    assert single["confusion_matrix"] == saved["confusion_matrix"]
    assert single["mIoU"] == pytest.approx(saved["mIoU"])


def test_upernet_trains_with_its_auxiliary_loss(scenes, tmp_path):
    from lsnet.train import train

    result = train(data_dir=str(scenes), output=str(tmp_path), experiment="uper", epochs=1, train_subset=8,
                   val_subset=4, test_split="none", lr=1e-3, aux_weight=0.25,
                   segmenter_kwargs={"channels": 32, "aux_channels": 16}, **{**FAST, "segmenter": "upernet"})
    row = result.history[0]
    assert set(row["train_losses"]) == {"decode", "aux"}
    assert row["train_loss"] == pytest.approx(sum(row["train_losses"].values()), rel=1e-5)  # the engine's sum
    assert result.final.extra["split"] == "val" and "val_mIoU" in row
    assert "| class | IoU | Acc |" in (tmp_path / "uper" / "report.md").read_text()


def test_training_crops_are_padded_with_the_model_mean_and_the_ignore_index(scenes):
    """mmseg pads normalised crops with 0, i.e. raw pixels with the mean colour; labels with the ignore index."""
    from lsnet.data.segmentation import SegmentationFolder
    from lsnet.train.tasks.semantic import SemanticTask

    cfg = TrainConfig(data_dir=str(scenes), **{**FAST, "crop_size": [96, 80], "seg_scale": [64, 64],
                                               "ratio_range": [1.0, 1.0], "photometric": False, "hflip": 0.0})
    task = SemanticTask(cfg, DistState())
    task.segmenter_config = {"image_mean": [0.25, 0.5, 0.75]}
    data = SegmentationFolder(scenes, "train", transforms=task._train_transforms(), subset=1)
    image, mask, _ = data[0]
    assert image.shape == (3, 96, 80) and mask.shape == (96, 80)  # a 64 px scene padded below and right
    torch.testing.assert_close(image[:, 64:, :], torch.tensor([0.25, 0.5, 0.75])[:, None, None].expand(3, 32, 80))
    assert (mask[64:] == 255).all() and (mask[:, 64:] == 255).all() and (mask[:64, :64] != 255).all()


def test_loss_is_pixel_cross_entropy_without_ignored_pixels_plus_weighted_aux():
    from lsnet.train.tasks.semantic import SemanticTask

    task = SemanticTask(TrainConfig(task="semantic", aux_weight=0.4, ignore_index=255), DistState())
    torch.manual_seed(0)
    out, aux = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, 0] = 255

    def by_hand(logits):  # mean over the labelled pixels of -log softmax at the true class
        logp = logits.log_softmax(1).permute(0, 2, 3, 1)[target != 255]
        return -logp[torch.arange(len(logp)), target[target != 255]].mean()

    losses = task.loss(None, {"out": out, "aux": aux}, target)
    torch.testing.assert_close(losses["decode"], by_hand(out))
    torch.testing.assert_close(losses["aux"], 0.4 * by_hand(aux))
    torch.testing.assert_close(task.loss(None, {"out": out}, target), by_hand(out))  # no aux head: one tensor


def test_semantic_settings_errors(scenes, tmp_path, capsys):
    base = ["train", *FAST_FLAGS, "--output", str(tmp_path), "--epochs", "1"]
    cases = [
        (base, "--task semantic needs --data-dir"),
        ([*base, "--data-dir", str(scenes), "--num-classes", "5"], "--num-classes 5 but"),
        ([*base, "--data-dir", str(scenes), "--val-size", "10"], "drop --val-size"),
        ([*base, "--data-dir", str(scenes), "--cat-max-ratio", "0"], "--cat-max-ratio must be in (0, 1]"),
        ([*base, "--data-dir", str(scenes), "--ratio-range", "2", "1"], "--ratio-range needs 0 < MIN <= MAX"),
        ([*base, "--data-dir", str(scenes), "--aux-weight", "-1"], "--aux-weight must be >= 0"),
        ([*base, "--data-dir", str(scenes), "--segmenter", "upernet", "--batch-size", "1"],
         "UperNet's pooling branch has BatchNorm on 1x1 maps"),
    ]
    for argv, expected in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and expected in err, (argv, err)


# ---------------------------------------------------------------------------------------------------------- presets
def test_official_semantic_fpn_recipe_preset():
    """sem_fpn_lsnet_t_ade20k is the official config (DOWNSTREAM.md; LSNet supplementary A.1)."""
    cfg = TrainConfig.from_any("sem_fpn_lsnet_t_ade20k")
    assert (cfg.task, cfg.segmenter, cfg.model) == ("semantic", "semantic_fpn", "lsnet_t")
    assert (cfg.opt, cfg.lr, cfg.weight_decay) == ("adamw", 2e-4, 1e-4)
    assert (cfg.sched, cfg.decay_rate, cfg.min_lr, cfg.warmup_epochs) == ("poly", 0.9, 1e-6, 0)
    assert cfg.batch_size * 8 == 32 and cfg.crop_size == [512, 512] and cfg.seg_scale == [2048, 512]
    assert (cfg.ratio_range, cfg.cat_max_ratio, cfg.hflip, cfg.photometric) == ([0.5, 2.0], 0.75, 0.5, True)
    assert (cfg.test_mode, cfg.short_side, cfg.size_divisor, cfg.test_flip, cfg.test_scales) == \
        ("whole", 512, 32, False, [1.0])
    iterations = cfg.epochs * (20210 // 32)  # ADE20K's 20210 training images, the last partial batch dropped
    assert 40000 <= iterations < 40000 + 20210 // 32
    assert (cfg.train_split, cfg.val_split, cfg.test_split, cfg.freeze_bn) == ("training", "validation", "none", True)


def test_conv2former_upernet_recipe_preset():
    """upernet_conv2former_t_ade20k: Swin's UperNet settings that the Conv2Former paper follows, drop path 0.2."""
    cfg = TrainConfig.from_any("upernet_conv2former_t_ade20k")
    assert (cfg.segmenter, cfg.model, cfg.drop_path, cfg.aux_weight) == ("upernet", "conv2former_t", 0.2, 0.4)
    assert (cfg.opt, cfg.lr, cfg.weight_decay, cfg.opt_betas) == ("adamw", 6e-5, 0.01, [0.9, 0.999])
    assert (cfg.sched, cfg.decay_rate, cfg.min_lr, cfg.warmup_updates) == ("poly", 1.0, 0.0, 1500)
    assert cfg.warmup_lr == pytest.approx(1e-6 * cfg.lr) and cfg.batch_size * 8 == 16
    iterations = cfg.epochs * (20210 // 16)
    assert 160000 <= iterations < 160000 + 20210 // 16


@pytest.mark.parametrize("name", ["sem_fpn_lsnet_t_fashion_scenes", "upernet_conv2former_n_fashion_scenes"])
def test_cpu_presets_build_their_segmenter(name):
    from lsnet.segmentation import build_segmenter

    cfg = TrainConfig.from_any(name)
    assert cfg.task == "semantic" and cfg.short_side is None and max(cfg.crop_size) <= 160 and cfg.workers == 0
    model = build_segmenter(cfg.segmenter, cfg.model, num_classes=11).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 96))["out"]
    assert out.shape == (1, 11, 64, 96)


def test_poly_schedule_is_mmseg_poly():
    """--sched poly (timm's PolyLRScheduler, power = --decay-rate) steps as mmseg's poly: (lr - min) x (1 - t/T)^p
    + min per update, after a linear warm-up."""
    from lsnet.train.engine import create_scheduler

    cfg = TrainConfig(task="semantic", sched="poly", decay_rate=0.9, min_lr=1e-6, epochs=4, warmup_epochs=0,
                      warmup_updates=10, warmup_lr=1e-8)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    scheduler, epochs = create_scheduler(optimizer, cfg, updates_per_epoch=25)
    assert epochs == 4
    for t in (10, 37, 99):
        scheduler.step_update(num_updates=t)
        expected = (2e-4 - 1e-6) * (1 - t / 100) ** 0.9 + 1e-6
        assert math.isclose(optimizer.param_groups[0]["lr"], expected, rel_tol=1e-9), t
    scheduler.step_update(num_updates=5)
    assert math.isclose(optimizer.param_groups[0]["lr"], 1e-8 + 5 * (2e-4 - 1e-8) / 10, rel_tol=1e-9)


def test_inference_settings_reach_segment():
    from lsnet.train.tasks.semantic import inference_settings

    cfg = TrainConfig(task="semantic", test_mode="slide", crop_size=[32, 48], test_stride=[16, 24], short_side=None,
                      test_flip=True, test_scales=[0.5, 1.0], size_divisor=None)
    assert inference_settings(cfg) == dict(mode="slide", short_side=None, size_divisor=None, crop_size=(32, 48),
                                           stride=(16, 24), flip=True, scales=(0.5, 1.0))
    assert inference_settings(cfg.to_dict()) == inference_settings(cfg)  # a checkpoint's stored settings


def test_list_configs_shows_the_semantic_presets(capsys):
    assert main(["train", "--list-configs"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "segmenter=semantic_fpn crop_size=[512, 512]" in lines["sem_fpn_lsnet_t_ade20k"]
    assert "model=conv2former_n epochs=3 segmenter=upernet crop_size=[128, 128]" in \
        lines["upernet_conv2former_n_fashion_scenes"]


def test_semantic_loaders_name_the_wrong_checkpoint(tiny_run, capsys):
    from lsnet.train import ConfigError
    from lsnet.train.tasks.semantic import load_segmenter

    with pytest.raises(ConfigError, match=r"not a checkpoint of `lsnet train --task semantic` \(no segmenter config"):
        load_segmenter(tiny_run / "best.pth")
    assert main(["eval", "--task", "semantic", "--checkpoint", str(tiny_run / "best.pth")]) == 1
    assert "holds a classification run, not semantic; drop --task" in capsys.readouterr().err


def test_eval_cli_overrides_the_inference_settings(learned, scenes, tmp_path, capsys):
    """`lsnet eval --test-mode slide --test-flip --test-scales ...` scores as `segment` with those settings does."""
    from lsnet.segmentation.inference import segment
    from lsnet.segmentation.metrics import confusion_matrix
    from lsnet.train.tasks.semantic import load_segmenter

    _, result = learned
    run = result.run_dir
    assert main(["eval", "--checkpoint", str(run / "best.pth"), "--subset", "6", "--workers", "0", "--quiet",
                 "--test-mode", "slide", "--test-flip", "--test-scales", "0.75", "1.5", "--output", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["inference"]["mode"] == "slide" and saved["inference"]["scales"] == [0.75, 1.5]
    model, _ = load_segmenter(run / "best.pth")
    matrix = torch.zeros(11, 11, dtype=torch.int64)
    for path in sorted((scenes / "test").glob("*.png"))[:6]:
        pixels = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)
        label = torch.from_numpy(np.asarray(Image.open(scenes / "labels" / "test" / path.name)).astype(np.int64))
        probs = segment(model, pixels[None].float() / 255, mode="slide", short_side=None, crop_size=(64, 64),
                        stride=(341, 341), flip=True, scales=(0.75, 1.5))
        matrix += confusion_matrix(probs[0].argmax(0), label, 11)
    assert saved["confusion_matrix"] == matrix.tolist()
    plain = read_checkpoint(run / "best.pth").content["metadata"]
    assert (plain["test_mode"], plain["test_flip"]) == ("whole", False)  # the run's own settings are untouched
    assert main(["eval", "--checkpoint", str(run / "best.pth"), "--short-side", "none", "--subset", "2", "--workers",
                 "0", "--quiet", "--output", str(tmp_path / "native")]) == 0
    assert json.loads((tmp_path / "native" / "eval.json").read_text())["inference"]["short_side"] is None
    capsys.readouterr()


def test_inference_flags_are_refused_for_other_tasks(tiny_run, capsys):
    assert main(["eval", "--checkpoint", str(tiny_run / "best.pth"), "--test-flip"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--test-flip: inference settings of semantic-segmentation checkpoints" in err and "\n" not in err
