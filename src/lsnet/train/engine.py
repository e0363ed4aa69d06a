"""The one training loop, for every task, built on timm's optimizer, scheduler, EMA and clipping utilities.

    from lsnet.train import train
    result = train("fashion_mnist_cpu", epochs=2)          # a preset name, a dict, or a TrainConfig (+ overrides)
    print(result.final.top1, result.run_dir)

What differs between tasks (classification, detection) is a `lsnet.train.tasks.Task`: the model, the data, one
step's loss, the evaluation and its selection metric, the report. Everything else is here, once.

Model selection is honest: every epoch is scored on the validation split (a data set's own, or training images
held out with the seed, see `lsnet.data.split_arguments`), best.pth is the best val score of the task's metric
(top-1, bbox AP), and the test split is evaluated once, at the end, with best.pth's weights.

One run folder per run: config.yaml, metrics.jsonl, last.pth (resume), best.pth + best.safetensors, eval.json, the
task's plots and report.md. Under torchrun every rank trains a shard (DistributedDataParallel); rank 0 alone logs
and writes files.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoints import LAST, load_checkpoint, read_checkpoint, resolve_path
from . import checkpoint as ckpt
from .builders import ShardSampler, create_loader
from .config import TrainConfig, save_config
from .distributed import (
    DistState,
    all_gather_object,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    broadcast_object,
    cleanup_distributed,
    init_distributed,
    reduce_device,
)
from .errors import CheckpointError, ConfigError, NonFiniteLossError, TrainingError
from .evaluate import autocast_context
from .tasks import Task, get_task


@dataclass
class TrainResult:
    """A finished run. Results are the task's (classification: `EvalResult`)."""

    run_dir: Path
    final: Any  # best.pth evaluated once on the test split (on val when there is no test split)
    val: Any  # the best epoch's validation result (None without validation, or when resumed after it)
    metric: str  # the task's selection metric, e.g. "top1", "bbox_AP"
    best_val_metric: float | None  # its val score of best.pth (None without validation: best.pth is the last epoch)
    best_epoch: int
    epochs_done: int
    train_images_per_sec: float
    wall_seconds: float
    report: Path | None
    model: nn.Module  # the trained network (unwrapped from DDP)
    eval_model: nn.Module  # what was evaluated and exported: `model`, or the EMA copy
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_val_top1(self) -> float | None:
        """Classification's best_val_metric."""
        return self.best_val_metric if self.metric == "top1" else None


def train(config: TrainConfig | dict | str | None = None, **overrides) -> TrainResult:
    """Train (or resume) a model; see TrainConfig for every setting. Joins torchrun's process group if there is one."""
    cfg = TrainConfig.from_any(config, **overrides)
    state = init_distributed(cfg.device)
    try:
        return Trainer(cfg, state).fit()
    finally:
        cleanup_distributed(state)


def _threads_for_load() -> int | None:
    """1 when other processes already keep the CPUs busy, else None (torch's default: one thread per core).

    OpenMP's threads meet at a barrier after every parallel op; when a core is taken by another process, one
    thread waits (spinning) for its descheduled partner, and a small model's thousands of short ops run 10-50x
    slower. One thread has no barriers. The choice is written into the resolved config, so a resumed run uses it.
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    if cores > 1 and load > 1.5 * cores:
        warnings.warn(f"CPUs busy (1-minute load {load:.1f} on {cores} cores): training with 1 thread to avoid "
                      "OpenMP stalls; pass --threads N to choose", stacklevel=3)
        return 1
    return None


class _ThreadGuard:
    """With --threads unset on CPU: drop to 1 thread when steps become 3x slower than the best seen, twice in a row.

    That slowdown is other processes taking the cores (see `_threads_for_load`); one thread then runs 2-20x faster.
    Runs that switch compute the rest with 1 thread (recorded in the config), so for a bit-exact resume after an
    interruption pass --threads explicitly.
    """

    window = 20

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.best, self.strikes, self.times = math.inf, 0, []

    def step(self, seconds: float) -> bool:
        """Record one step's duration; True when it just switched to 1 thread."""
        if not self.enabled:
            return False
        self.times.append(seconds)
        if len(self.times) < self.window:
            return False
        median = sorted(self.times)[self.window // 2]
        self.times.clear()
        self.best = min(self.best, median)
        self.strikes = self.strikes + 1 if median > 3 * self.best else 0
        if self.strikes < 2:
            return False
        torch.set_num_threads(1)
        self.enabled = False
        warnings.warn(f"training steps became {median / self.best:.0f}x slower (other processes are using the CPUs): "
                      "continuing with 1 thread; pass --threads N to choose", stacklevel=3)
        return True


def create_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, updates_per_epoch: int):
    """timm's scheduler for `cfg` -> (scheduler, total epochs including cooldown).

    --warmup-updates N becomes a warm-up of N / updates_per_epoch epochs (timm multiplies by updates per epoch), as
    the detection recipes warm up over 500 iterations. --sched multistep multiplies the lr by --decay-rate at each of
    --decay-milestones (epochs); timm applies a milestone m at update m * updates_per_epoch - 1, one update before
    the epoch boundary.
    """
    from timm.scheduler import create_scheduler_v2

    warmup = cfg.warmup_epochs if cfg.warmup_updates is None else cfg.warmup_updates / updates_per_epoch
    return create_scheduler_v2(
        optimizer, sched=cfg.sched, num_epochs=cfg.epochs, warmup_epochs=warmup, warmup_lr=cfg.warmup_lr,
        min_lr=cfg.min_lr, cooldown_epochs=cfg.cooldown_epochs, decay_milestones=list(cfg.decay_milestones),
        decay_rate=cfg.decay_rate, step_on_epochs=not cfg.sched_on_updates, updates_per_epoch=updates_per_epoch)


def _worker_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + rank) % (2**63)


class Trainer:
    """Builds everything from a TrainConfig, then `fit()`. One instance per process."""

    def __init__(self, cfg: TrainConfig, dist_state: DistState):
        self.start_time = time.perf_counter()
        self.cfg = cfg = cfg.replace()  # resolved values below are written into this copy only
        self.dist = dist_state
        self.device = dist_state.device
        self.main = dist_state.is_main
        auto_threads = cfg.threads is None and self.device.type == "cpu" and not dist_state.enabled
        if auto_threads:
            cfg.threads = _threads_for_load()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        cfg.threads = torch.get_num_threads()  # recorded: a resumed run computes with the same thread count
        self.thread_guard = _ThreadGuard(auto_threads and cfg.threads > 1)
        seed = cfg.seed + dist_state.rank
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

        # ---- data set facts fill the "auto" settings, so config.yaml records what actually ran
        self.task: Task = get_task(cfg.task)(cfg, dist_state)
        self.task.resolve()
        cfg.eval_batch_size = cfg.eval_batch_size or 2 * cfg.batch_size
        self.global_batch = cfg.batch_size * dist_state.world_size
        self.lr = cfg.lr if cfg.lr is not None else cfg.lr_base * self.global_batch / cfg.lr_base_size
        self.amp_dtype = getattr(torch, cfg.amp_dtype) if (cfg.amp if cfg.amp is not None
                                                           else self.device.type == "cuda") else None

        # ---- run folder (created once model and data are known to work)
        if cfg.resume:
            self.resume_path = resolve_path(cfg.resume)
            self.run_dir = self.resume_path.parent
        else:
            self.resume_path = None
            name = cfg.experiment or f"{time.strftime('%Y%m%d-%H%M%S')}-{self.task.run_name()}"
            self.run_dir = Path(cfg.output) / broadcast_object(name, dist_state)
            if (self.run_dir / LAST).exists():
                raise ConfigError(f"{str(self.run_dir)!r} already holds a run; continue it with --resume {self.run_dir}"
                                  " or pick another --experiment")
        cfg.experiment = self.run_dir.name

        # ---- model before the loaders: a wrong --model fails before any image is read
        self.model = self._build_model()
        self.num_params = sum(p.numel() for p in self.model.parameters())

        # ---- data
        self.train_loader, self.val_loader, self.test_loader, self.sampler = self._build_data()
        self.updates_per_epoch = len(self.train_loader)
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")

        # ---- optimizer, schedule, loss
        self._build_optimization()
        self.start_epoch, self.best_val_metric, self.best_epoch, self.history = 0, None, 0, []
        self.best_val = None  # the best epoch's validation result (the task's result type)
        self.best_state: dict[str, torch.Tensor] | None = None  # its weights (of eval_model), on the CPU
        self.loss_parts: dict[str, torch.Tensor] = {}  # the last step's named losses (see `_loss`)
        self.counters = {"wall_seconds": 0.0, "train_seconds": 0.0, "train_images": 0, "skipped_images": 0}
        rng_states = self._resume() if self.resume_path else None
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model: nn.Module = DistributedDataParallel(self.model, device_ids=ids)
        else:
            self.ddp_model = self.model
        self.task.build_criterion()
        if rng_states is not None:  # last: everything above may draw random numbers
            self._restore_rng(rng_states)

    # ------------------------------------------------------------------------------------------------ building
    def _build_data(self):
        cfg, dist_state, task = self.cfg, self.dist, self.task
        first = self.main or not cfg.download  # with --download, rank 0 fetches while the others wait
        if not first:
            barrier(dist_state)
        train_set, val_set, test_set, self.val_source = task.build_datasets()
        if cfg.download and self.main:
            barrier(dist_state)
        if cfg.repeated_aug:
            from timm.data.distributed_sampler import RepeatAugSampler

            sampler = RepeatAugSampler(train_set, num_replicas=dist_state.world_size, rank=dist_state.rank)
        else:
            sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=dist_state.world_size,
                                                          rank=dist_state.rank, shuffle=True, seed=cfg.seed)
        if len(sampler) < cfg.batch_size:
            raise ConfigError(f"{len(sampler)} training images per process is fewer than --batch-size {cfg.batch_size};"
                              " lower --batch-size")
        pin = self.device.type == "cuda"
        # the last incomplete training batch is dropped (as timm does): a batch of 1 cannot train BatchNorm
        train_loader = create_loader(train_set, batch_size=cfg.batch_size, sampler=sampler, workers=cfg.workers,
                                     drop_last=True, pin_memory=pin, generator=torch.Generator(),
                                     collate_fn=task.collate)

        def eval_loader(data):
            if data is None:
                return None
            return create_loader(data, batch_size=cfg.eval_batch_size, workers=cfg.workers, pin_memory=pin,
                                 sampler=ShardSampler(len(data), dist_state.rank, dist_state.world_size),
                                 generator=torch.Generator(), collate_fn=task.collate)

        self.num_train = len(train_set)
        self.num_val, self.num_test = (len(d) if d is not None else 0 for d in (val_set, test_set))
        return train_loader, eval_loader(val_set), eval_loader(test_set), sampler

    def _build_model(self) -> nn.Module:
        cfg = self.cfg
        model = self.task.build_model(resume=self.resume_path is not None)
        if cfg.sync_bn:
            if self.device.type != "cuda":
                warnings.warn("--sync-bn needs CUDA (NCCL); keeping plain BatchNorm on CPU", stacklevel=2)
            elif self.dist.enabled:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _build_optimization(self) -> None:
        from timm.optim import create_optimizer_v2
        from timm.utils import ModelEmaV3

        cfg = self.cfg
        opt_kwargs: dict[str, Any] = {}
        if cfg.opt_eps is not None:
            opt_kwargs["eps"] = cfg.opt_eps
        if cfg.opt_betas:
            opt_kwargs["betas"] = tuple(cfg.opt_betas)
        if self.task.no_weight_decay:
            from functools import partial

            from timm.optim import param_groups_weight_decay

            opt_kwargs["param_group_fn"] = partial(param_groups_weight_decay, weight_decay=cfg.weight_decay,
                                                   no_weight_decay_list=self.task.no_weight_decay)
        self.optimizer = create_optimizer_v2(self.model, opt=cfg.opt, lr=self.lr, weight_decay=cfg.weight_decay,
                                             momentum=cfg.momentum, layer_decay=cfg.layer_decay, **opt_kwargs)
        self.scheduler, self.num_epochs = create_scheduler(self.optimizer, cfg, self.updates_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = ModelEmaV3(self.model, decay=cfg.model_ema_decay, use_warmup=cfg.model_ema_warmup) \
            if cfg.model_ema else None

    @property
    def criterion(self) -> nn.Module | None:
        """The task's loss module (classification: cross-entropy, soft targets or distillation)."""
        return self.task.criterion

    # ------------------------------------------------------------------------------------------- checkpoints
    def _state(self, epoch: int, rng_states: list) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "model_ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "best_metric": self.best_val_metric,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "counters": dict(self.counters),
            "rng": rng_states,
            "world_size": self.dist.world_size,
            "config": self.cfg.to_dict(),
            "metadata": self._export_metadata(epoch),  # what rebuilding the model needs (as in best.safetensors)
        }

    def _resume(self) -> list:
        checkpoint = read_checkpoint(self.resume_path)  # the only read of the tensors (the config was memory-mapped)
        state = checkpoint.content
        missing = [k for k in ("model", "optimizer", "scheduler", "epoch") if k not in state]
        if missing:
            raise CheckpointError(f"{str(self.resume_path)!r} is not a training checkpoint (no {', '.join(missing)});"
                                  " use --initial-checkpoint to start from bare weights")
        load_checkpoint(self.model, checkpoint, entry="model", new_classifier=False)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"optimizer state in {str(self.resume_path)!r} does not fit --opt {self.cfg.opt} "
                                  f"({err}); resume with the run's own optimizer settings (--opt, --weight-decay, "
                                  "--layer-decay as in its config.yaml), or start a new run from its weights with "
                                  "--initial-checkpoint") from err
        if self.ema is not None:
            if state.get("model_ema") is not None:
                load_checkpoint(self.ema.module, checkpoint, entry="model_ema", new_classifier=False)
            else:
                self.ema.set(self.model)
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"])
        best = state.get("best_metric")
        self.best_val_metric = None if best is None else float(best)
        self.best_epoch = int(state.get("best_epoch", 0))
        self.history = list(state.get("history") or [])
        self.counters.update(state.get("counters") or {})
        if self.main:
            self._write_metrics()  # drop rows of epochs that ran after this checkpoint was written
            print(f"resumed {self.resume_path} at epoch {self.start_epoch}", flush=True)
        return list(state.get("rng") or [])

    def _restore_rng(self, rng_states: list) -> None:
        if len(rng_states) == self.dist.world_size:
            ckpt.set_rng_state(rng_states[self.dist.rank])
        else:
            warnings.warn(f"checkpoint has random states of {len(rng_states)} processes, this run has "
                          f"{self.dist.world_size}; reseeding, so the run will not match an uninterrupted one",
                          stacklevel=2)
            seed = _worker_seed(self.cfg.seed, self.start_epoch, self.dist.rank)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)

    def _write_metrics(self) -> None:
        text = "".join(json.dumps(row) + "\n" for row in self.history)
        ckpt.atomic_write(self.run_dir / "metrics.jsonl", lambda f: f.write(text.encode()))

    def _save(self, epoch: int, is_best: bool) -> None:
        rng_states = all_gather_object(ckpt.rng_state(), self.dist)  # collective: every rank calls it
        if not self.main:
            return
        last = self.run_dir / LAST
        ckpt.save_checkpoint(self._state(epoch, rng_states), last)
        if is_best:
            best = self.run_dir / ckpt.BEST
            tmp = best.with_name(f".{best.name}.tmp-{os.getpid()}")
            try:  # last.pth is never rewritten in place (os.replace), so a hard link is a cheap, atomic copy
                tmp.unlink(missing_ok=True)
                os.link(last, tmp)
                os.replace(tmp, best)
            except OSError:
                tmp.unlink(missing_ok=True)
                ckpt.save_checkpoint(self._state(epoch, rng_states), best)
            ckpt.export_safetensors(self.eval_model.state_dict(), self.run_dir / ckpt.BEST_WEIGHTS,
                                    metadata=self._export_metadata(epoch))
        self._write_metrics()

    def _export_metadata(self, epoch: int) -> dict[str, Any]:
        return {**self.task.export_metadata(), "epoch": epoch, f"val_{self.task.metric}": self.best_val_metric,
                "ema": self.ema is not None}

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    # ------------------------------------------------------------------------------------------------ training
    def _loss(self, inputs, outputs, targets) -> torch.Tensor:
        """The task's loss; named losses are summed, and kept (detached) in `loss_parts` for the log."""
        losses = self.task.loss(inputs, outputs, targets)
        if isinstance(losses, dict):
            self.loss_parts = {name: value.detach() for name, value in losses.items()}
            return sum(losses.values())
        self.loss_parts = {}
        return losses

    def _check_finite(self, loss_value: float, epoch: int, step: int) -> None:
        bad = 0.0 if math.isfinite(loss_value) else 1.0
        if self.dist.enabled:  # every rank must stop together
            bad = all_reduce_sum(torch.tensor([bad], device=self.device), self.dist).item()
        if bad == 0:
            return
        last = self.run_dir / LAST
        kept = (f"the last good checkpoint {str(last)!r} (epoch {self.history[-1]['epoch']}) is intact; resume from it"
                if last.exists() and self.history else "no checkpoint had been written yet; restart")
        raise NonFiniteLossError(
            f"loss became {loss_value} at epoch {epoch + 1}, step {step + 1} (lr {self._current_lr():.3g}); stopped "
            f"before the update. {kept} with a lower --lr, --clip-grad, or check the data")

    def _current_lr(self) -> float:
        return max(group["lr"] for group in self.optimizer.param_groups)

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        from timm.models import model_parameters
        from timm.utils import dispatch_clip_grad
        from tqdm import tqdm

        cfg, model = self.cfg, self.ddp_model
        model.train()
        self.sampler.set_epoch(epoch)
        self.train_loader.generator.manual_seed(_worker_seed(cfg.seed, epoch, self.dist.rank))
        clip_params = model_parameters(self.model, exclude_head="agc" in cfg.clip_mode) if cfg.clip_grad else None
        num_updates = epoch * self.updates_per_epoch
        bar = tqdm(total=self.updates_per_epoch, desc=f"epoch {epoch + 1}/{self.num_epochs}", dynamic_ncols=True,
                   disable=cfg.quiet or not self.main, leave=False)
        task = self.task
        loss_sum, images_seen, skipped = 0.0, 0, 0
        part_sums: dict[str, float] = {}  # named losses (detection), images-weighted
        start = step_start = time.perf_counter()
        for step, raw_batch in enumerate(self.train_loader):
            batch = task.unpack(raw_batch)
            skipped += batch.skipped
            if batch.inputs is not None and batch.size < task.min_batch:
                warnings.warn(f"epoch {epoch + 1}, step {step + 1}: dropped a training batch left with {batch.size} "
                              f"readable image (BatchNorm needs {task.min_batch})", stacklevel=2)
                batch.inputs = None
            if batch.inputs is None:
                if self.dist.enabled:
                    raise TrainingError(f"a training batch had fewer than {task.min_batch} readable images; under "
                                        "torchrun every rank must step, so remove the unreadable files")
                continue
            inputs, targets = task.prepare(batch)
            with autocast_context(self.device, self.amp_dtype):
                outputs = task.forward(model, inputs, targets)
                loss = self._loss(inputs, outputs, targets)
            parts = [loss.detach(), *self.loss_parts.values()]
            values = torch.stack([v.float() for v in parts]).tolist()  # the one host sync per step
            loss_value = values[0]
            self._check_finite(loss_value, epoch, step)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.clip_grad:
                self.scaler.unscale_(self.optimizer)
                dispatch_clip_grad(clip_params, value=cfg.clip_grad, mode=cfg.clip_mode)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            num_updates += 1
            if self.ema is not None:
                self.ema.update(self.model, step=num_updates)
            if cfg.sched_on_updates:
                self.scheduler.step_update(num_updates=num_updates)
            loss_sum += loss_value * batch.size
            images_seen += batch.size
            for name, value in zip(self.loss_parts, values[1:]):
                part_sums[name] = part_sums.get(name, 0.0) + value * batch.size
            if step % 10 == 0 or step + 1 == self.updates_per_epoch:
                rate = images_seen * self.dist.world_size / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{loss_sum / images_seen:.4f}", lr=f"{self._current_lr():.2e}",
                                img_s=f"{rate:.0f}", refresh=False)
            bar.update()
            now = time.perf_counter()
            if self.thread_guard.step(now - step_start):
                cfg.threads = 1
            step_start = now
        bar.close()
        seconds = time.perf_counter() - start
        if not cfg.sched_on_updates:
            self.scheduler.step(epoch + 1)
        totals = all_reduce_sum(torch.tensor([loss_sum, images_seen, skipped, *part_sums.values()],
                                             dtype=torch.float64, device=reduce_device(self.dist)),
                                self.dist).cpu()
        images_total = int(totals[1])
        self.counters["train_seconds"] += seconds
        self.counters["train_images"] += images_total
        self.counters["skipped_images"] += int(totals[2])
        if totals[2] and self.main:
            print(f"epoch {epoch + 1}: skipped {int(totals[2])} unreadable images", flush=True)
        row = {"train_loss": totals[0].item() / max(images_total, 1), "lr": self._current_lr(),
               "train_images_per_sec": images_total / max(seconds, 1e-9), "train_seconds": seconds,
               "skipped_images": int(totals[2])}
        if part_sums:
            row["train_losses"] = {name: total / max(images_total, 1)
                                   for name, total in zip(part_sums, totals[3:].tolist())}
        return row

    def _evaluate(self, model: nn.Module, loader, split: str):
        return self.task.evaluate(model, loader, desc=split, amp_dtype=self.amp_dtype,
                                  progress=not self.cfg.quiet and self.main)

    def _keep_best(self, result, epoch: int) -> None:
        self.best_val, self.best_epoch = result, epoch
        self.best_val_metric = self.task.metric_value(result) if result is not None else None
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.eval_model.state_dict().items()}

    def _best_model(self) -> nn.Module:
        """`eval_model` with best.pth's weights: from memory, or from best.pth when resumed after the best epoch."""
        if self.best_epoch == self.start_epoch:
            return self.eval_model
        model = copy.deepcopy(self.eval_model)
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        else:
            load_checkpoint(model, self.run_dir / ckpt.BEST, entry="model_ema" if self.ema is not None else "model",
                            new_classifier=False)
        return model

    def fit(self) -> TrainResult:
        cfg = self.cfg
        segment_start = self.start_time
        wall_before = self.counters["wall_seconds"]
        if self.main:
            val = f"{self.num_val} val ({self.val_source})" if self.val_loader is not None else "no val"
            test = f"{self.num_test} {cfg.test_split}" if self.test_loader is not None else "no test"
            print(f"{self.task.model_label()} ({self.num_params / 1e6:.2f}M params) on {cfg.dataset}: "
                  f"{self.num_train} train / {val} / {test} images at {self.task.input_text()}, "
                  f"{self.num_epochs} epochs x {self.updates_per_epoch} steps, global batch {self.global_batch}, "
                  f"lr {self.lr:.3g}, {self.dist.world_size} process(es) on {self.device}; run folder {self.run_dir}",
                  flush=True)
        for epoch in range(self.start_epoch, self.num_epochs):
            row: dict[str, Any] = {"epoch": epoch + 1, **self.train_one_epoch(epoch)}
            broadcast_buffers(self.model, self.dist)  # every rank evaluates rank 0's weights, the checkpoint's
            if self.ema is not None:
                broadcast_buffers(self.ema.module, self.dist)
            last_epoch = epoch + 1 == self.num_epochs
            result = None
            if self.val_loader is not None and (last_epoch or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)):
                result = self._evaluate(self.model, self.val_loader, "val")
                row.update(self.task.val_metrics(result))
                if self.ema is not None:
                    result = self._evaluate(self.ema.module, self.val_loader, "val (EMA)")
                    row.update(self.task.val_metrics(result, prefix="ema_"))
            if self.val_loader is None:  # no validation: best.pth is the newest epoch
                self._keep_best(None, epoch + 1)
            elif result is not None and (self.best_val_metric is None
                                         or self.task.metric_value(result) > self.best_val_metric):
                self._keep_best(result, epoch + 1)
            self.counters["wall_seconds"] = wall_before + time.perf_counter() - segment_start
            row.update({f"best_val_{self.task.metric}": self.best_val_metric, "best_epoch": self.best_epoch,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
            self.history.append(row)
            self._save(epoch + 1, is_best=self.best_epoch == epoch + 1)
            if self.main:
                print(self._epoch_line(row), flush=True)
        self.start_epoch = max(self.start_epoch, self.num_epochs)
        final, split = self._final_evaluation()
        self.counters["wall_seconds"] = wall_before + time.perf_counter() - segment_start
        return self._finish(final, split)

    def _final_evaluation(self) -> tuple[Any, str]:
        """best.pth's weights on the test split, once (or its validation result when there is no test split)."""
        if self.test_loader is not None:
            return self._evaluate(self._best_model(), self.test_loader, self.cfg.test_split), self.cfg.test_split
        if self.best_val is None:  # resumed after the best epoch
            self.best_val = self._evaluate(self._best_model(), self.val_loader, "val")
        return self.best_val, "val"

    def _epoch_line(self, row: dict[str, Any]) -> str:
        text = (f"epoch {row['epoch']}/{self.num_epochs}  train loss {row['train_loss']:.4f}  lr {row['lr']:.2e}  "
                f"{row['train_images_per_sec']:.0f} img/s  {row['train_seconds']:.0f}s")
        if row.get("train_losses"):
            text += " (" + ", ".join(f"{name} {value:.4f}" for name, value in row["train_losses"].items()) + ")"
        return text + self.task.epoch_text(row)

    def _selection(self) -> str:
        """How best.pth was chosen, e.g. 'epoch 5, val top-1 91.20%'."""
        if self.best_val_metric is None:
            return f"epoch {self.best_epoch}, the last: no validation split"
        return f"epoch {self.best_epoch}, val {self.task.metric_label} {self.task.format_metric(self.best_val_metric)}"

    def _finish(self, final, split: str) -> TrainResult:
        counters = self.counters
        images_per_sec = counters["train_images"] / max(counters["train_seconds"], 1e-9)
        report = None
        best_key = f"best_val_{self.task.metric}"
        if self.main:
            final.extra.update({"model": self.task.model_label(), "dataset": self.cfg.dataset, "split": split,
                                "checkpoint": ckpt.BEST, "best_epoch": self.best_epoch,
                                best_key: self.best_val_metric, "val_source": self.val_source,
                                "ema": self.ema is not None})
            (self.run_dir / "eval.json").write_text(json.dumps(final.to_dict(), indent=2))
            summary = dict(final_split=split, val_source=self.val_source, num_val=self.num_val,
                           best_epoch=self.best_epoch, epochs_done=self.start_epoch,
                           train_images_per_sec=images_per_sec, wall_seconds=counters["wall_seconds"],
                           train_seconds=counters["train_seconds"], params=self.num_params,
                           world_size=self.dist.world_size, device=str(self.device),
                           skipped_images=counters["skipped_images"], lr=self.lr, global_batch=self.global_batch,
                           **{best_key: self.best_val_metric})
            report = self.task.write_outputs(self.run_dir, final, split=split, history=self.history, summary=summary)
            print(f"{self.task.result_text(final, split)} of best.pth ({self._selection()}) | train "
                  f"{images_per_sec:.0f} img/s, eval {final.images_per_sec:.0f} img/s | wall "
                  f"{counters['wall_seconds'] / 60:.1f} min | report {report}", flush=True)
        return TrainResult(run_dir=self.run_dir, final=final, val=self.best_val, metric=self.task.metric,
                           best_val_metric=self.best_val_metric,
                           best_epoch=self.best_epoch, epochs_done=self.start_epoch,
                           train_images_per_sec=images_per_sec, wall_seconds=counters["wall_seconds"], report=report,
                           model=self.model, eval_model=self.eval_model, history=self.history)
