"""The task registry, the task settings, and the schedule the detection recipes use (multistep, warm-up in updates)."""
from __future__ import annotations

import pytest
import torch

from lsnet.cli.main import main
from lsnet.train import ConfigError, TrainConfig
from lsnet.train.engine import create_scheduler
from lsnet.train.tasks import TASKS, get_task
from lsnet.train.tasks.classification import ClassificationTask


def test_registry_and_task_setting():
    assert TASKS == ("classification", "detection", "semantic") and get_task("classification") is ClassificationTask
    assert get_task("semantic").metric == "mIoU"
    with pytest.raises(ConfigError, match="unknown task 'panoptic'; pass --task with one of classification"):
        get_task("panoptic")
    with pytest.raises(ConfigError, match="--task must be one of classification"):
        TrainConfig(task="panoptic")
    with pytest.raises(ConfigError, match="--max-size 300 is smaller than --min-size 400"):
        TrainConfig(min_size=400, max_size=300)
    with pytest.raises(ConfigError, match="--warmup-updates needs --sched-on-updates"):
        TrainConfig(warmup_updates=500, sched_on_updates=False)


def test_unknown_task_on_the_command_line_is_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--task", "panoptic"])
    assert "argument --task: invalid choice: 'panoptic'" in capsys.readouterr().err


def lr_at(scheduler, optimizer, update: int) -> float:
    scheduler.step_update(num_updates=update)
    return optimizer.param_groups[0]["lr"]


def test_multistep_schedule_with_warmup_in_updates():
    """mmdet's 1x schedule: linear warm-up over 500 updates from 0.001x, x0.1 at epochs 8 and 11, 12 epochs."""
    cfg = TrainConfig(sched="multistep", epochs=12, decay_milestones=[8, 11], decay_rate=0.1, warmup_updates=500,
                      warmup_lr=1e-7, warmup_epochs=0)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    per_epoch = 7330  # COCO train2017: 117266 images at batch 16
    scheduler, epochs = create_scheduler(optimizer, cfg, per_epoch)
    assert epochs == 12
    expected = {0: 1e-7, 250: 1e-7 + 250 * (1e-4 - 1e-7) / 500, 499: 1e-7 + 499 * (1e-4 - 1e-7) / 500, 500: 1e-4,
                8 * per_epoch - 2: 1e-4, 8 * per_epoch: 1e-5, 11 * per_epoch - 2: 1e-5, 11 * per_epoch: 1e-6,
                12 * per_epoch - 1: 1e-6}
    for update, lr in expected.items():
        assert lr_at(scheduler, optimizer, update) == pytest.approx(lr, rel=1e-9), update


def test_detection_presets_are_the_official_1x_recipe():
    """DOWNSTREAM.md: AdamW lr 1e-4, betas (0.9, 0.999), wd 0.05, 12 epochs, x0.1 at 8 and 11, 500 warm-up iterations
    from 0.001x, batch 16 (2 x 8), 1333x800, flip 0.5, frozen backbone BatchNorm."""
    from lsnet.train import load_preset

    for name, detector in (("retinanet_lsnet_t_coco", "retinanet"), ("mask_rcnn_lsnet_t_coco", "mask_rcnn")):
        c = TrainConfig(**load_preset(name))
        assert (c.task, c.detector, c.model, c.train_split, c.val_split) == \
            ("detection", detector, "lsnet_t", "train2017", "val2017")
        assert (c.opt, c.lr, c.opt_betas, c.weight_decay, c.epochs) == ("adamw", 1e-4, [0.9, 0.999], 0.05, 12)
        assert (c.sched, c.decay_milestones, c.decay_rate) == ("multistep", [8, 11], 0.1)
        assert (c.warmup_updates, c.warmup_epochs, c.warmup_lr / c.lr) == (500, 0, pytest.approx(1e-3))
        assert (c.batch_size * 8, c.max_size, c.min_size, c.hflip, c.freeze_bn) == (16, 1333, 800, 0.5, True)
