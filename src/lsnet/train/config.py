"""Training configuration: one dataclass, YAML recipe presets, and the argparse front end built from both.

Precedence, lowest first: the defaults below < the checkpoint's config (with --resume) < a YAML preset (--config, a
name from `lsnet/configs/` or a path; `base:` inherits another preset) < flags given on the command line.

    from lsnet.train import TrainConfig, load_preset
    cfg = TrainConfig(**load_preset("fashion_mnist_cpu"), epochs=2)
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .tasks import TASKS

_GROUPS: dict[str, str] = {
    "task": "task", "data": "data", "aug": "augmentation and regularization", "model": "model", "opt": "optimizer",
    "sched": "learning-rate schedule", "ema": "model EMA", "distill": "knowledge distillation",
    "detection": "detection (--task detection)", "semantic": "semantic segmentation (--task semantic)",
    "run": "run, checkpoints and hardware",
}
DETECTORS = ("retinanet", "faster_rcnn", "mask_rcnn")  # lsnet.detection.DETECTORS, without importing torchvision
SEGMENTERS = ("semantic_fpn", "upernet")  # lsnet.segmentation.SEGMENTERS
TEST_MODES = ("whole", "slide")


def optional_int(text: str) -> int | None:
    """An integer, or None for 'none' (a flag that can switch a size off)."""
    return None if text.lower() in ("none", "null") else int(text)


def _f(default, group: str, help: str, type=None, choices=None, nargs=None, metavar=None):  # noqa: A002
    """A config field with its CLI metadata (group, help, parser type)."""
    meta = dict(group=group, help=help, type=type, choices=choices, nargs=nargs, metavar=metavar)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type_copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def type_copy(value):
    return dict(value) if isinstance(value, dict) else list(value)


@dataclass
class TrainConfig:
    """Every setting of a training run. Field names are the YAML keys; flags are the same in kebab-case."""

    # task
    task: str = _f("classification", "task", "what the run trains: 'classification' (a timm model on an image "
                   "classification set), 'detection' (a torchvision detector with a timm backbone on a COCO-format "
                   "set) or 'semantic' (a Semantic FPN / UperNet segmenter on label PNGs, scored in mIoU)",
                   choices=TASKS)
    # data
    dataset: str = _f("fashion-mnist", "data",
                      "'fashion-mnist' (IDX files) or 'folder' (ImageFolder tree at --data-dir)")
    data_dir: str | None = _f(None, "data", "data folder (Fashion-MNIST IDX files, or an ImageFolder root with "
                              "train/ and optionally val/ and test/); default: search the standard places", type=str)
    download: bool = _f(False, "data", "download Fashion-MNIST with torchvision if it is not found (needs network)")
    train_split: str = _f("train", "data", "training split (ImageFolder sub-folder)")
    val_split: str | None = _f(None, "data", "validation split, an ImageFolder sub-folder (default: its val/ when "
                               "there is one; otherwise --val-size training images are held out)", type=str)
    val_size: int | None = _f(None, "data", "training images held out (drawn with --seed) as the validation split "
                              "when the data set has none: per-epoch val metrics and best.pth use them (default: 10% "
                              "of the training split, at most 5000; 0: no validation, best.pth is the last epoch)",
                              type=int)
    test_split: str | None = _f(None, "data", "test split, evaluated once at the end with best.pth (default: "
                                "'test' when the data set has one; 'none': no test evaluation)", type=str)
    train_subset: int | None = _f(None, "data", "use only the first N training images", type=int)
    val_subset: int | None = _f(None, "data", "use only the first N validation images", type=int)
    test_subset: int | None = _f(None, "data", "use only the first N test images", type=int)
    in_chans: int | None = _f(None, "data", "input channels, 1 or 3 (default: the data set's own)", type=int)
    img_size: int = _f(224, "data", "input resolution (square)", type=int)
    mean: list | None = _f(None, "data", "normalization mean (default: the data set's)", type=float, nargs="+")
    std: list | None = _f(None, "data", "normalization std (default: the data set's)", type=float, nargs="+")
    workers: int = _f(2, "data", "data-loader worker processes per training process", type=int)
    strict: bool = _f(False, "data", "fail on an unreadable image instead of skipping it with a warning")
    # augmentation and regularization
    scale: list = _f([0.08, 1.0], "aug", "RandomResizedCrop area range", type=float, nargs=2)
    ratio: list = _f([0.75, 1.3333333], "aug", "RandomResizedCrop aspect-ratio range", type=float, nargs=2)
    hflip: float = _f(0.5, "aug", "horizontal-flip probability", type=float)
    vflip: float = _f(0.0, "aug", "vertical-flip probability", type=float)
    color_jitter: float = _f(0.4, "aug", "color-jitter strength (unused when --aa is set, as in timm)", type=float)
    aa: str | None = _f(None, "aug", "timm auto-augment policy, e.g. 'rand-m9-mstd0.5' (RandAugment) or 'original' "
                        "(AutoAugment); 'none' disables", type=str)
    reprob: float = _f(0.0, "aug", "random-erasing probability", type=float)
    remode: str = _f("pixel", "aug", "random-erasing fill mode", choices=("const", "rand", "pixel"))
    recount: int = _f(1, "aug", "random-erasing count", type=int)
    train_interpolation: str = _f("bicubic", "aug", "resize interpolation for training ('random' allowed)")
    interpolation: str = _f("bicubic", "aug", "resize interpolation for evaluation")
    crop_pct: float = _f(0.875, "aug", "evaluation center-crop fraction (1.0 = resize only)", type=float)
    mixup: float = _f(0.0, "aug", "mixup alpha (0 = off)", type=float)
    cutmix: float = _f(0.0, "aug", "cutmix alpha (0 = off)", type=float)
    cutmix_minmax: list | None = _f(None, "aug", "cutmix min/max box ratio (overrides alpha)", type=float, nargs=2)
    mixup_prob: float = _f(1.0, "aug", "probability of applying mixup or cutmix to a batch", type=float)
    mixup_switch_prob: float = _f(0.5, "aug", "probability of cutmix instead of mixup when both are on", type=float)
    mixup_mode: str = _f("batch", "aug", "mixup granularity", choices=("batch", "pair", "elem"))
    smoothing: float = _f(0.1, "aug", "label smoothing", type=float)
    repeated_aug: bool = _f(False, "aug", "repeated-augmentation sampler (timm RepeatAugSampler, 3 repeats)")
    # model
    model: str = _f("lsnet_t", "model", "timm model name (after `import lsnet`)")
    pretrained: bool = _f(False, "model", "start from the model's pretrained weights (timm hub)")
    initial_checkpoint: str | None = _f(None, "model", "start from these weights (.pth/.safetensors)", type=str)
    num_classes: int | None = _f(None, "model", "classes (default: the data set's)", type=int)
    drop_path: float = _f(0.0, "model", "stochastic-depth rate", type=float)
    drop: float = _f(0.0, "model", "dropout before the classifier", type=float)
    model_kwargs: dict = _f({}, "model", "extra model constructor arguments, KEY=VALUE (YAML values)", nargs="*",
                            metavar="KEY=VALUE")
    # optimizer
    opt: str = _f("adamw", "opt", "timm optimizer name")
    lr: float | None = _f(None, "opt", "learning rate; default: lr-base * global batch / lr-base-size", type=float)
    lr_base: float = _f(4e-3, "opt", "learning rate at the reference batch size", type=float)
    lr_base_size: int = _f(2048, "opt", "reference batch size for linear lr scaling", type=int)
    weight_decay: float = _f(0.025, "opt", "weight decay (not applied to norms, biases, attention biases)", type=float)
    momentum: float = _f(0.9, "opt", "SGD momentum", type=float)
    opt_eps: float | None = _f(None, "opt", "optimizer epsilon", type=float)
    opt_betas: list | None = _f(None, "opt", "optimizer betas", type=float, nargs="+")
    clip_grad: float | None = _f(None, "opt", "gradient clipping value (off when unset)", type=float)
    clip_mode: str = _f("norm", "opt", "gradient clipping mode", choices=("norm", "value", "agc"))
    layer_decay: float | None = _f(None, "opt", "layer-wise lr decay", type=float)
    # schedule
    sched: str = _f("cosine", "sched", "timm scheduler name")
    epochs: int = _f(300, "sched", "training epochs (cooldown epochs come on top)", type=int)
    warmup_epochs: int = _f(5, "sched", "linear warm-up epochs", type=int)
    warmup_lr: float = _f(1e-6, "sched", "learning rate at the start of warm-up", type=float)
    min_lr: float = _f(1e-5, "sched", "final learning rate", type=float)
    cooldown_epochs: int = _f(0, "sched", "epochs at min-lr after the schedule", type=int)
    warmup_updates: int | None = _f(None, "sched", "linear warm-up over this many optimizer updates instead of "
                                    "--warmup-epochs (needs --sched-on-updates)", type=int)
    decay_milestones: list = _f([8, 11], "sched", "epochs at which --sched multistep multiplies the lr by "
                                "--decay-rate", type=int, nargs="+")
    decay_rate: float = _f(0.1, "sched", "lr factor of --sched step / multistep", type=float)
    sched_on_updates: bool = _f(True, "sched", "update the learning rate every step (else every epoch)")
    # model EMA
    model_ema: bool = _f(False, "ema", "keep an exponential moving average of the weights; it is the evaluated and "
                         "exported model")
    model_ema_decay: float = _f(0.9998, "ema", "EMA decay per step", type=float)
    model_ema_warmup: bool = _f(False, "ema", "EMA decay warm-up")
    # distillation
    distillation_type: str = _f("none", "distill", "'hard' (DeiT: CE on the teacher's argmax, distillation head), "
                                "'soft' (KL at temperature tau) or 'none'", choices=("none", "hard", "soft"))
    teacher: str | None = _f(None, "distill", "teacher: a timm model name, or a checkpoint written by `lsnet train`",
                             type=str)
    teacher_checkpoint: str | None = _f(None, "distill", "weights for a teacher given by name (.pth/.safetensors); "
                                        "without it the name's pretrained weights are used", type=str)
    distillation_alpha: float = _f(0.5, "distill", "weight of the distillation term", type=float)
    distillation_tau: float = _f(1.0, "distill", "soft-distillation temperature", type=float)
    # detection
    detector: str = _f("retinanet", "detection", "torchvision detector around the --model backbone",
                       choices=DETECTORS)
    min_size: int = _f(800, "detection", "shorter image side the detector resizes to (torchvision "
                       "GeneralizedRCNNTransform)", type=int)
    max_size: int = _f(1333, "detection", "longest image side the detector resizes to at most", type=int)
    freeze_bn: bool = _f(True, "detection", "keep the backbone's BatchNorm in eval mode while training (running "
                         "statistics frozen, affine weights trained), as the official LSNet detectors and segmenters "
                         "do (detection and semantic)")
    backbone_checkpoint: str | None = _f(None, "detection", "classification weights for the backbone (any checkpoint "
                                         "lsnet.checkpoints reads, e.g. a `lsnet train` best.pth or an official "
                                         "file); --initial-checkpoint loads a whole detector / segmenter instead "
                                         "(detection and semantic)", type=str)
    scale_jitter: list | None = _f(None, "detection", "zoom training images by a random factor in [MIN, MAX] about "
                                   "the centre, canvas size kept (lsnet.data.detection_transforms)", type=float,
                                   nargs=2)
    detector_kwargs: dict = _f({}, "detection", "extra torchvision detector arguments, KEY=VALUE (YAML values), "
                               "e.g. detections_per_img=100", nargs="*", metavar="KEY=VALUE")
    # semantic segmentation
    segmenter: str = _f("semantic_fpn", "semantic", "decode head around the --model backbone", choices=SEGMENTERS)
    crop_size: list = _f([512, 512], "semantic", "training crop HEIGHT WIDTH (also the --test-mode slide window)",
                         type=int, nargs=2)
    seg_scale: list = _f([2048, 512], "semantic", "training resize scale LONG SHORT, multiplied by a random ratio in "
                         "--ratio-range (mmseg's Resize img_scale, keep ratio)", type=int, nargs=2)
    ratio_range: list = _f([0.5, 2.0], "semantic", "random resize ratio range MIN MAX", type=float, nargs=2)
    cat_max_ratio: float = _f(0.75, "semantic", "random crops are redrawn (up to 10 times) while one class covers at "
                              "least this fraction of the crop's labelled pixels (1.0: off)", type=float)
    photometric: bool = _f(True, "semantic", "photometric distortion of training crops (brightness, contrast, "
                           "saturation, hue; mmseg's PhotoMetricDistortion)")
    ignore_index: int = _f(255, "semantic", "label value that is neither trained nor scored", type=int)
    aux_weight: float = _f(0.4, "semantic", "weight of the auxiliary FCN head's cross-entropy (segmenters that have "
                           "one: UperNet)", type=float)
    test_mode: str = _f("whole", "semantic", "inference: 'whole' image or 'slide' (--crop-size windows at "
                        "--test-stride)", choices=TEST_MODES)
    short_side: int | None = _f(512, "semantic", "evaluation resizes the shorter image side to this, keeping the "
                                "aspect ratio ('none': native size); scores are at the label's size",
                                type=optional_int)
    size_divisor: int | None = _f(32, "semantic", "evaluation resizes each side up to a multiple of this "
                                  "(mmseg's AlignResize; 'none': no rounding)", type=optional_int)
    test_stride: list = _f([341, 341], "semantic", "slide-inference window stride HEIGHT WIDTH", type=int, nargs=2)
    test_flip: bool = _f(False, "semantic", "also predict the flipped image and average")
    test_scales: list = _f([1.0], "semantic", "test-time scales (of --short-side) averaged; one scale by default",
                           type=float, nargs="+")
    segmenter_kwargs: dict = _f({}, "semantic", "extra segmenter arguments, KEY=VALUE (YAML values), e.g. "
                                "aux_head=false", nargs="*", metavar="KEY=VALUE")
    # run
    batch_size: int = _f(128, "run", "batch size per process", type=int)
    eval_batch_size: int | None = _f(None, "run", "evaluation batch size (default: 2x batch size)", type=int)
    output: str = _f("runs", "run", "folder holding run folders")
    experiment: str | None = _f(None, "run", "run-folder name (default: <date>-<time>-<model>-<dataset>)", type=str)
    resume: str | None = _f(None, "run", "continue from a checkpoint (last.pth) or a run folder", type=str)
    seed: int = _f(42, "run", "random seed", type=int)
    device: str = _f("auto", "run", "'auto', 'cpu', 'cuda' or 'cuda:N'")
    amp: bool | None = _f(None, "run", "mixed precision (default: on for CUDA, off on CPU)")
    amp_dtype: str = _f("bfloat16", "run", "autocast dtype", choices=("bfloat16", "float16"))
    channels_last: bool = _f(False, "run", "channels_last memory format")
    sync_bn: bool = _f(False, "run", "SyncBatchNorm across processes (CUDA only)")
    threads: int | None = _f(None, "run", "intra-op CPU threads (torch.set_num_threads)", type=int)
    eval_every: int = _f(1, "run", "evaluate every N epochs (the last epoch always)", type=int)
    quiet: bool = _f(False, "run", "no progress bars: one log line per epoch")
    config: str | None = _f(None, "run", "YAML preset (name in lsnet/configs or a path) whose values become defaults",
                            type=str)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for values that cannot work, naming the flag and the fix."""
        def check(ok: bool, message: str):
            if not ok:
                raise ConfigError(message)

        def in_range(name: str, low: float, high: float, high_open: bool = False, optional: bool = False):
            value = getattr(self, name)
            if optional and value is None:
                return
            ok = value is not None and low <= value and (value < high if high_open else value <= high)
            check(ok, f"--{_flag(name)} must be in [{low:g}, {high:g}{')' if high_open else ']'}; got {value}")

        def at_least(name: str, low: int, optional: bool = False):
            value = getattr(self, name)
            if optional and value is None:
                return
            check(value is not None and value >= low, f"--{_flag(name)} must be >= {low}; got {value}")

        for name in ("epochs", "batch_size", "recount", "lr_base_size"):
            at_least(name, 1)
        for name in ("warmup_epochs", "cooldown_epochs", "workers", "eval_every"):
            at_least(name, 0)
        for name in ("min_size", "max_size"):
            at_least(name, 32)
        at_least("warmup_updates", 0, optional=True)
        check(self.max_size >= self.min_size, f"--max-size {self.max_size} is smaller than --min-size "
              f"{self.min_size}; pass --max-size >= --min-size")
        check(self.warmup_updates is None or self.sched_on_updates,
              "--warmup-updates needs --sched-on-updates (the schedule steps per update)")
        check(self.scale_jitter is None or 0 < self.scale_jitter[0] <= self.scale_jitter[1],
              f"--scale-jitter needs 0 < MIN <= MAX; got {self.scale_jitter}")
        check(list(self.decay_milestones) == sorted(self.decay_milestones),
              f"--decay-milestones must be increasing epochs; got {self.decay_milestones}")
        for name in ("eval_batch_size", "threads", "num_classes", "train_subset", "val_subset", "test_subset"):
            at_least(name, 1, optional=True)
        at_least("val_size", 0, optional=True)
        check(self.img_size >= 8, f"--img-size must be >= 8; got {self.img_size}")
        check(self.in_chans in (None, 1, 3), f"--in-chans must be 1 or 3; got {self.in_chans}")
        for name in ("hflip", "vflip", "reprob", "mixup_prob", "mixup_switch_prob", "model_ema_decay"):
            in_range(name, 0, 1)
        for name in ("smoothing", "drop_path", "drop"):
            in_range(name, 0, 1, high_open=True)
        in_range("crop_pct", 0.05, 1)
        in_range("layer_decay", 0.01, 1, optional=True)
        check(0 < self.scale[0] <= self.scale[1] <= 1, f"--scale needs 0 < MIN <= MAX <= 1; got {self.scale}")
        check(0 < self.ratio[0] <= self.ratio[1], f"--ratio needs 0 < MIN <= MAX; got {self.ratio}")
        check(self.task in TASKS, f"--task must be one of {', '.join(TASKS)}; got {self.task!r}")
        check(self.detector in DETECTORS, f"--detector must be one of {', '.join(DETECTORS)}; got {self.detector!r}")
        check(self.segmenter in SEGMENTERS, f"--segmenter must be one of {', '.join(SEGMENTERS)}; got "
              f"{self.segmenter!r}")
        check(self.test_mode in TEST_MODES, f"--test-mode must be one of {', '.join(TEST_MODES)}; got "
              f"{self.test_mode!r}")
        for name in ("crop_size", "seg_scale", "test_stride"):
            value = getattr(self, name)
            check(len(value) == 2 and min(value) >= 1, f"--{_flag(name)} needs two sizes >= 1; got {value}")
        for name in ("short_side", "size_divisor"):
            at_least(name, 1, optional=True)
        check(0 < self.ratio_range[0] <= self.ratio_range[1], f"--ratio-range needs 0 < MIN <= MAX; got "
              f"{self.ratio_range}")
        check(bool(self.test_scales) and min(self.test_scales) > 0, f"--test-scales must be > 0; got "
              f"{self.test_scales}")
        check(0 < self.cat_max_ratio <= 1, f"--cat-max-ratio must be in (0, 1]; got {self.cat_max_ratio}")
        at_least("ignore_index", 0)
        check(math.isfinite(self.aux_weight) and self.aux_weight >= 0, f"--aux-weight must be >= 0; got "
              f"{self.aux_weight}")
        check(self.decay_rate > 0, f"--decay-rate must be > 0; got {self.decay_rate}")
        check(self.clip_grad is None or self.clip_grad > 0, f"--clip-grad must be > 0 (or unset); got {self.clip_grad}")
        in_range("distillation_alpha", 0, 1)
        check(self.distillation_tau > 0, f"--distillation-tau must be > 0; got {self.distillation_tau}")
        check(self.distillation_type == "none" or bool(self.teacher),
              f"--distillation-type {self.distillation_type} needs --teacher (a timm model name or a checkpoint)")
        check(not (self.mixup > 0 or self.cutmix > 0 or self.cutmix_minmax) or self.batch_size % 2 == 0,
              f"mixup/cutmix need an even --batch-size; got {self.batch_size}")
        for name in ("lr", "lr_base", "weight_decay", "warmup_lr", "min_lr", "color_jitter", "mixup", "cutmix"):
            value = getattr(self, name)
            check(value is None or (math.isfinite(value) and value >= 0), f"--{_flag(name)} must be >= 0; got {value}")
        for name in ("val_split", "test_split"):
            check(getattr(self, name) != self.train_split, f"--{_flag(name)} {getattr(self, name)!r} is the training "
                  "split; evaluation must read images the model does not train on")
        check(self.val_split is None or self.val_split != self.test_split,
              f"--val-split and --test-split are both {self.val_split!r}: choosing best.pth on the test split makes "
              "its test score optimistic; unset --val-split to hold out --val-size training images")
        if self.aa in ("none", "None", ""):
            self.aa = None

    @property
    def mixup_active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0 or self.cutmix_minmax is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_any(cls, config: TrainConfig | dict | str | None = None, **overrides) -> TrainConfig:
        """A TrainConfig from a TrainConfig, a dict of fields, a preset name / YAML path, or nothing (defaults)."""
        if isinstance(config, TrainConfig):
            base = config.to_dict()
        elif isinstance(config, str):
            base = dict(load_preset(config), config=config)
        else:
            base = dict(config or {})
        values = _normalize_keys({**base, **overrides}, source="config")
        return cls(**values)


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
KWARG_FIELDS = ("model_kwargs", "detector_kwargs", "segmenter_kwargs")  # KEY=VALUE flags


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _normalize_keys(values: dict, source: str) -> dict:
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in FIELD_NAMES:
            close = [n for n in FIELD_NAMES if n.split("_")[0] == name.split("_")[0]]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{source}: unknown setting {key!r}{hint} (settings are TrainConfig fields, e.g. "
                              f"lr, epochs, batch_size)")
        out[name] = value
    return out


# ------------------------------------------------------------------------------------------------------ presets
def preset_dir() -> Path:
    return Path(str(resources.files("lsnet") / "configs"))


def list_presets() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def load_preset(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Settings of a preset (name in lsnet/configs, or a YAML path), with `base:` presets merged underneath."""
    path = Path(name_or_path).expanduser()
    if not path.suffix and not path.exists():
        path = preset_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"config {name_or_path!r} not found: not a file, and not a preset "
                          f"({', '.join(list_presets())})")
    if str(path) in _seen:
        raise ConfigError(f"config {str(path)!r}: `base:` chain loops ({' -> '.join(_seen)})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {str(path)!r}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(path)!r} must be a mapping of settings; got {type(data).__name__}")
    base = data.pop("base", None)
    recorded = data.pop("config", None)  # a saved resolved config names the preset it came from
    values = load_preset(base, (*_seen, str(path))) if base else {}
    values.update(_normalize_keys(data, source=str(path)))
    if recorded and not _seen:
        values["config"] = recorded
    return values


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# -------------------------------------------------------------------------------------------------------- argparse
def _parse_kv(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE; got {text!r}")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one flag per TrainConfig field (defaults suppressed, so only given flags override presets)."""
    defaults = TrainConfig()
    groups = {key: parser.add_argument_group(title) for key, title in _GROUPS.items()}
    for f in fields(TrainConfig):
        meta = f.metadata
        default = getattr(defaults, f.name)
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS)
        help_text = meta["help"] + (f" (default: {default})" if default not in (None, [], {}) else "")
        if f.name in KWARG_FIELDS:
            kwargs.update(type=_parse_kv, nargs="*", metavar=meta["metavar"])
        elif isinstance(default, bool) or f.type in ("bool", "bool | None"):
            kwargs.update(action=argparse.BooleanOptionalAction)
        else:
            kwargs.update(type=meta["type"] or str)
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            if meta["nargs"]:
                kwargs["nargs"] = meta["nargs"]
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
        groups[meta["group"]].add_argument(f"--{_flag(f.name)}", help=help_text.replace("%", "%%"), **kwargs)
    return parser


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults < resumed checkpoint's config < preset (--config) < flags given on the command line."""
    given = {name: getattr(args, name) for name in FIELD_NAMES if hasattr(args, name)}
    for name in KWARG_FIELDS:
        if name in given:
            given[name] = dict(given[name] or [])
    values: dict[str, Any] = {}
    if given.get("resume"):
        from ..checkpoints import read_checkpoint_config  # memory-mapped: the tensors are read once, by the Trainer

        values.update({k: v for k, v in read_checkpoint_config(given["resume"]).items() if k != "resume"})
    if given.get("config"):
        preset = load_preset(given["config"])
        values.update(preset)
        given["config"] = preset.get("config", given["config"])  # a resolved config.yaml keeps its preset's name
    values.update(given)
    return TrainConfig.from_any(values)
