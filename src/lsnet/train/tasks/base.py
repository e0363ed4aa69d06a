"""The task interface: what a kind of training run (classification, detection, ...) tells the one engine.

The engine (`lsnet.train.engine.Trainer`) owns the loop and everything around it: threads, seeding, the run folder,
optimizer, schedule, EMA, AMP, clipping, samplers and loaders, atomic checkpoints, exact resume, DDP, the NaN stop,
progress bars, metrics.jsonl and the once-only test evaluation of best.pth. A task supplies what differs:

    resolve()                  fill the config's "auto" settings from the data (classes, channels, splits, ...)
    build_model(resume=)       the network on the CPU (initial weights loaded unless resuming)
    build_datasets()           train / val / test sets, read through `collate`
    build_criterion()          loss modules (called after the DDP wrap; may draw random numbers)
    unpack(), prepare()        a loader batch -> Batch on the host -> model inputs and targets on the device
    forward(), loss()          one training step: outputs, then a loss Tensor or a dict of named losses (the engine
                               sums them and logs each)
    evaluate()                 one pass over a loader -> a result (`extra`, `to_dict()`, `num_images`,
                               `images_per_sec`) that holds the selection metric `metric` (higher is better)
    val_metrics(), epoch_text(), result_text(), write_outputs(), export_metadata()
                               the epoch row and line, the final line, report.md and plots, best.safetensors metadata

`run_metadata` and `load_run_model` read a run checkpoint's stored metadata and rebuild its model (the `lsnet eval` /
`lsnet predict` of the tasks whose model is not a bare timm model).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..distributed import DistState


@dataclass
class Batch:
    """One loader batch on the host: model inputs and targets (None when none of its samples was readable)."""

    inputs: Any
    targets: Any
    size: int  # images in the batch
    skipped: int = 0  # unreadable samples left out


def _first_present(present: list[str], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in present), None)


def resolve_dense_splits(cfg: TrainConfig, present: list[str], *, train_alias: str, val_alias: str, what: str,
                         listing: str, val_hint: str) -> None:
    """Fill the splits of a detection / segmentation run from the `present` split names (train: --train-split or
    `train_alias`; val: 'val' or `val_alias`; test: 'test' or none) and check what such a run cannot take: no split to
    score on, --val-size (classification's hold-out), --in-chans other than 3. `what` names the model ('detector'),
    `listing` what `present` lists ('annotations'), `val_hint` what a --val-split names."""
    from ..errors import ConfigError

    if cfg.train_split not in present:
        cfg.train_split = _first_present(present, (cfg.train_split, train_alias)) or cfg.train_split
    cfg.val_split = cfg.val_split or _first_present(present, ("val", val_alias))
    cfg.test_split = cfg.test_split or _first_present(present, ("test",)) or "none"
    root = str(Path(cfg.data_dir).expanduser())
    if not cfg.val_split and cfg.test_split == "none":
        raise ConfigError(f"{root!r} has no validation or test split ({listing}: {', '.join(present) or 'none'}); "
                          f"nothing would score the {what}: pass --val-split NAME of {val_hint}")
    if cfg.val_size:
        raise ConfigError(f"--val-size holds out classification images; --task {cfg.task} validates on --val-split "
                          f"({val_hint}); drop --val-size")
    if cfg.in_chans not in (None, 3):
        raise ConfigError(f"--in-chans {cfg.in_chans}: --task {cfg.task} reads RGB images; drop --in-chans")
    cfg.in_chans = 3
    cfg.val_size = 0
    cfg.dataset = Path(cfg.data_dir).expanduser().resolve().name  # recorded: which folder the run read


class Task(ABC):
    """One kind of training run; one instance per process, built by the Trainer from the resolved config."""

    name: ClassVar[str]
    metric: ClassVar[str]  # the selection metric: `getattr(result, metric)`, row key f"val_{metric}"
    metric_label: ClassVar[str]  # how lines and reports name it, e.g. "top-1", "bbox AP"
    min_batch: int = 1  # training batches with fewer images are skipped (BatchNorm on pooled features needs 2)
    # parameter-name patterns (fnmatch) trained without weight decay, besides timm's norms, biases and the model's
    # own no_weight_decay(); a model that is not a timm model (a torchvision detector) cannot say them itself
    no_weight_decay: ClassVar[tuple[str, ...]] = ()
    criterion: nn.Module | None = None

    def __init__(self, cfg: TrainConfig, dist_state: DistState):
        self.cfg = cfg
        self.dist = dist_state
        self.device = dist_state.device
        self.classes: tuple[str, ...] = ()

    # ---- building
    @abstractmethod
    def resolve(self) -> None:
        """Write the data set's facts into the config's unset ("auto") settings; raise ConfigError when they clash."""

    def run_name(self) -> str:
        """The run folder's name after its date and time."""
        return f"{self.cfg.model}-{self.cfg.dataset}"

    def model_label(self) -> str:
        return self.cfg.model

    @abstractmethod
    def input_text(self) -> str:
        """What the model sees, for the start line, e.g. '3x224x224'."""

    @abstractmethod
    def build_model(self, *, resume: bool) -> nn.Module:
        """The network on the CPU; starting weights (--initial-checkpoint, ...) loaded unless `resume`."""

    @abstractmethod
    def build_datasets(self) -> tuple[Any, Any | None, Any | None, str]:
        """(train, val or None, test or None, a description of where the val images come from)."""

    @staticmethod
    def collate(batch: list):
        """The loaders' collate_fn."""
        raise NotImplementedError

    def build_criterion(self) -> None:  # noqa: B027 (optional: tasks whose model computes its loss need none)
        """Set `self.criterion` (and whatever else the loss needs)."""

    # ---- one training step
    @abstractmethod
    def unpack(self, batch) -> Batch:
        """A loader batch (what `collate` returned) as a Batch, still on the host."""

    @abstractmethod
    def prepare(self, batch: Batch) -> tuple[Any, Any]:
        """Model inputs and targets of a training batch, on `self.device` (training-time batch augmentation here)."""

    def forward(self, model: nn.Module, inputs, targets):
        return model(inputs)

    @abstractmethod
    def loss(self, inputs, outputs, targets) -> torch.Tensor | dict[str, torch.Tensor]:
        """The step's loss (a scalar), or named scalar losses whose sum is trained."""

    # ---- evaluation and what the run shows
    @abstractmethod
    def evaluate(self, model: nn.Module, loader, *, desc: str, amp_dtype: torch.dtype | None, progress: bool):
        """One pass over `loader`, summed over the ranks; the result holds `metric`."""

    def metric_value(self, result) -> float:
        return float(getattr(result, self.metric))

    def format_metric(self, value: float) -> str:
        return f"{value:.2f}"

    @abstractmethod
    def val_metrics(self, result, prefix: str = "") -> dict[str, Any]:
        """The epoch row's entries of a validation result, keys f"{prefix}val_..." (prefix 'ema_' for the EMA)."""

    @abstractmethod
    def epoch_text(self, row: dict[str, Any]) -> str:
        """The validation part of an epoch's log line ('' when the epoch was not evaluated)."""

    @abstractmethod
    def result_text(self, result, split: str) -> str:
        """The final line's score of best.pth, e.g. 'test top-1 91.20% (top-5 99.80%)'."""

    @abstractmethod
    def write_outputs(self, run_dir: Path, result, *, split: str, history: list[dict[str, Any]],
                      summary: dict[str, Any]) -> Path:
        """Plots and report.md of a finished run (eval.json is the engine's); returns the report's path."""

    @classmethod
    def evaluate_checkpoint(cls, checkpoint, **settings):
        """`lsnet eval` of a run checkpoint of this task (a `lsnet.checkpoints.Checkpoint`); classification's is
        `lsnet.train.evaluate_checkpoint` itself."""
        raise NotImplementedError(f"the {cls.name} task has no checkpoint evaluation")

    def export_metadata(self) -> dict[str, Any]:
        """Settings stored in best.safetensors beside the weights (what rebuilding and evaluating it needs)."""
        keys = ("task", "model", "dataset", "data_dir", "train_split", "val_split", "test_split", "seed",
                "model_kwargs")
        return {k: getattr(self.cfg, k) for k in keys}


def run_metadata(checkpoint, task: str, config_key: str) -> dict[str, Any]:
    """What a `--task <task>` run stored to rebuild its model: `metadata` of last.pth / best.pth, or the metadata of
    best.safetensors (it holds `config_key`, e.g. 'detector_config', and the classes, splits, ...).

    checkpoint: a path or a `lsnet.checkpoints.Checkpoint`."""
    from ...checkpoints import read_checkpoint
    from ..errors import ConfigError

    state = checkpoint if hasattr(checkpoint, "content") else read_checkpoint(checkpoint)
    meta = state.content.get("metadata") if isinstance(state.content.get("metadata"), dict) else state.config
    if not meta or meta.get("task") != task or config_key not in meta:
        raise ConfigError(f"{str(state.path)!r} is not a checkpoint of `lsnet train --task {task}` (no "
                          f"{config_key.replace('_', ' ')} stored); pass a run's best.pth, last.pth or "
                          "best.safetensors")
    return meta


def load_run_model(checkpoint, build: Callable[..., nn.Module], *, task: str, config_key: str,
                   use_ema: bool | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a `--task <task>` run's checkpoint, rebuilt by `build(**metadata[config_key])`, in eval mode,
    and the run's metadata (`run_metadata`, plus `ema_loaded`).

    use_ema: load the EMA weights (default: when the checkpoint has them)."""
    from ...checkpoints import load_checkpoint, read_checkpoint
    from ..errors import ConfigError

    state = checkpoint if hasattr(checkpoint, "content") else read_checkpoint(checkpoint)
    meta = dict(run_metadata(state, task, config_key))
    has_ema = state.content.get("model_ema") is not None
    use_ema = has_ema if use_ema is None else use_ema
    if use_ema and not has_ema:
        raise ConfigError(f"{str(state.path)!r} has no EMA weights; drop --ema")
    model = build(**meta[config_key])
    entry = "model_ema" if use_ema else ("model" if "model" in state.entries else None)
    load_checkpoint(model, state, entry=entry, new_classifier=False)
    meta["ema_loaded"] = use_ema
    return model.eval(), meta
