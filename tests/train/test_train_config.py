"""Recipe presets and the precedence defaults < preset < command-line flags."""
from __future__ import annotations

import argparse

import pytest

from lsnet.train.config import TrainConfig, add_train_arguments, list_presets, load_preset, resolve_config, save_config
from lsnet.train.errors import ConfigError


def parse(*argv: str) -> TrainConfig:
    return resolve_config(add_train_arguments(argparse.ArgumentParser()).parse_args(list(argv)))


def test_every_preset_builds_a_valid_config():
    presets = list_presets()
    assert {"fashion_mnist_cpu", "lsnet_t_in1k", "lsnet_s_in1k", "lsnet_b_in1k", "lsnet_t_distilled_in1k",
            "conv2former_in1k", "uniconvnet_weak_in1k", "uniconvnet_strong_in1k", "lkca_small_data",
            "sem_fpn_lsnet_t_ade20k", "upernet_conv2former_t_ade20k", "sem_fpn_lsnet_t_fashion_scenes",
            "upernet_conv2former_n_fashion_scenes"} <= set(presets)
    for name in presets:
        TrainConfig(**load_preset(name))


def test_lsnet_recipe_matches_the_paper_table():
    """Supplementary Table 1: AdamW, 4e-3 @ 2048, cosine, 5 warm-up, wd .025/.025/.05, RandAug(9, .5), erase .25,
    jitter .4, mixup .8, cutmix 1.0, clip .02, smoothing .1, 300 epochs."""
    t = TrainConfig(**load_preset("lsnet_t_in1k"))
    assert (t.opt, t.lr_base, t.lr_base_size, t.sched, t.warmup_epochs, t.epochs) == \
        ("adamw", 4e-3, 2048, "cosine", 5, 300)
    assert (t.aa, t.reprob, t.color_jitter, t.mixup, t.cutmix, t.clip_grad, t.smoothing) == \
        ("rand-m9-mstd0.5", 0.25, 0.4, 0.8, 1.0, 0.02, 0.1)
    assert [TrainConfig(**load_preset(f"lsnet_{v}_in1k")).weight_decay for v in "tsb"] == [0.025, 0.025, 0.05]
    distilled = TrainConfig(**load_preset("lsnet_t_distilled_in1k"))
    assert (distilled.model, distilled.distillation_type, distilled.distillation_alpha) == \
        ("lsnet_t_distilled", "hard", 0.5)
    strong, weak = (TrainConfig(**load_preset(f"uniconvnet_{k}_in1k")) for k in ("strong", "weak"))
    assert (weak.mixup, strong.mixup, strong.cutmix, strong.reprob, weak.warmup_epochs) == (0.0, 0.8, 1.0, 0.25, 20)


def test_preset_values_become_defaults_and_flags_win(tmp_path):
    cfg = parse("--config", "fashion_mnist_cpu")
    assert cfg.model == "lsnet_t" and cfg.in_chans == 1 and cfg.config == "fashion_mnist_cpu"
    cfg = parse("--config", "fashion_mnist_cpu", "--epochs", "1", "--no-channels-last",
                "--model-kwargs", "distilled=true")
    assert cfg.epochs == 1 and cfg.channels_last is False and cfg.model_kwargs == {"distilled": True}
    assert cfg.img_size == load_preset("fashion_mnist_cpu")["img_size"]
    # a saved resolved config round-trips as a preset path
    save_config(cfg, tmp_path / "run.yaml")
    again = parse("--config", str(tmp_path / "run.yaml"))
    assert again.replace(config=None) == cfg.replace(config=None)


def test_unknown_settings_and_bad_values_are_config_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'"):
        parse("--config", str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        parse("--config", "no_such_preset")
    with pytest.raises(ConfigError, match="needs --teacher"):
        TrainConfig(distillation_type="hard")
    with pytest.raises(ConfigError, match="even --batch-size"):
        TrainConfig(mixup=0.8, batch_size=7)


@pytest.mark.parametrize("changes, message", [
    (dict(epochs=0), "--epochs must be >= 1; got 0"),
    (dict(batch_size=0), "--batch-size must be >= 1; got 0"),
    (dict(warmup_epochs=-1), "--warmup-epochs must be >= 0; got -1"),
    (dict(workers=-2), "--workers must be >= 0; got -2"),
    (dict(eval_every=-1), "--eval-every must be >= 0; got -1"),
    (dict(threads=0), "--threads must be >= 1; got 0"),
    (dict(num_classes=0), "--num-classes must be >= 1; got 0"),
    (dict(train_subset=0), "--train-subset must be >= 1; got 0"),
    (dict(val_size=-5), "--val-size must be >= 0; got -5"),
    (dict(img_size=4), "--img-size must be >= 8; got 4"),
    (dict(in_chans=2), "--in-chans must be 1 or 3; got 2"),
    (dict(hflip=1.5), "--hflip must be in [0, 1]; got 1.5"),
    (dict(reprob=-0.1), "--reprob must be in [0, 1]; got -0.1"),
    (dict(model_ema_decay=2.0), "--model-ema-decay must be in [0, 1]; got 2.0"),
    (dict(smoothing=1.0), "--smoothing must be in [0, 1); got 1.0"),
    (dict(drop_path=1.0), "--drop-path must be in [0, 1); got 1.0"),
    (dict(crop_pct=0.0), "--crop-pct must be in [0.05, 1]; got 0.0"),
    (dict(layer_decay=1.5), "--layer-decay must be in [0.01, 1]; got 1.5"),
    (dict(scale=[0.9, 0.5]), "--scale needs 0 < MIN <= MAX <= 1; got [0.9, 0.5]"),
    (dict(ratio=[0.0, 1.0]), "--ratio needs 0 < MIN <= MAX; got [0.0, 1.0]"),
    (dict(clip_grad=0.0), "--clip-grad must be > 0 (or unset); got 0.0"),
    (dict(distillation_alpha=1.5), "--distillation-alpha must be in [0, 1]; got 1.5"),
    (dict(distillation_tau=0.0), "--distillation-tau must be > 0; got 0.0"),
    (dict(lr=-1.0), "--lr must be >= 0; got -1.0"),
    (dict(weight_decay=float("nan")), "--weight-decay must be >= 0; got nan"),
    (dict(mixup=-0.5), "--mixup must be >= 0; got -0.5"),
    (dict(val_split="train"), "--val-split 'train' is the training split"),
    (dict(val_split="test", test_split="test"), "--val-split and --test-split are both 'test'"),
])
def test_validate_names_the_flag_and_the_value(changes, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**changes)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_command_line_values_are_validated_too(capsys):
    from lsnet.cli.main import main

    assert main(["train", "--epochs", "0"]) == 1
    assert capsys.readouterr().err.strip() == "error: --epochs must be >= 1; got 0"
