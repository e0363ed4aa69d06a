"""Training and evaluation on timm's building blocks (data transforms, Mixup, optimizers, schedulers, EMA).

    from lsnet.train import train, evaluate_checkpoint
    result = train("fashion_mnist_cpu")                     # preset name, dict, or TrainConfig, plus overrides
    evaluate_checkpoint(result.run_dir / "best.pth", fuse=True)

Command line: `lsnet train --config fashion_mnist_cpu`, `lsnet eval --checkpoint runs/<run>/best.pth --fuse`,
and `torchrun --nproc_per_node=N -m lsnet.train ...` (or `lsnet train --nproc N`) for DistributedDataParallel.
One engine runs every task (`--task classification | detection`, `lsnet.train.tasks`):
`lsnet train --config retinanet_lsnet_t_fashion_scenes --data-dir data/fashion-scenes`.
"""
from .config import TrainConfig, list_presets, load_preset
from .engine import Trainer, TrainResult, train
from .errors import CheckpointError, ConfigError, NonFiniteLossError, TrainingError
from .evaluate import EvalResult, evaluate, evaluate_checkpoint

__all__ = [
    "CheckpointError", "ConfigError", "EvalResult", "NonFiniteLossError", "TrainConfig", "TrainResult", "Trainer",
    "TrainingError", "evaluate", "evaluate_checkpoint", "list_presets", "load_preset", "train",
]
