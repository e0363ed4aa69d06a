"""`lsnet train`: train (or resume, or distil) a model; a YAML preset's values become the flags' defaults.

    lsnet train --config fashion_mnist_cpu                                # the `make run` job: LSNet-T, Fashion-MNIST
    lsnet train --config fashion_mnist_cpu --epochs 2 --train-subset 5000 # a quicker look
    lsnet train --resume runs/<run>                                       # continue after an interruption
    lsnet train --dataset folder --data-dir ~/imagenet --config lsnet_t_in1k --nproc 8
    lsnet train --config fashion_mnist_cpu --model lsnet_t_distilled --distillation-type hard \\
        --teacher runs/<teacher run>/best.pth                             # DeiT-style hard distillation
    torchrun --nproc_per_node=2 -m lsnet.train --config fashion_mnist_cpu # the same, one process per rank
    lsnet train --list-configs

Precedence: built-in defaults < the resumed checkpoint's config < --config < flags on the command line.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from lsnet.train.config import add_train_arguments

    parser.add_argument("--nproc", type=int, default=1,
                        help="spawn this many processes with torchrun (DistributedDataParallel; gloo on CPU)")
    parser.add_argument("--list-configs", action="store_true", help="list the YAML presets and exit")
    return add_train_arguments(parser)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train, resume or distil a model", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_arguments(parser)


def _spawn(cfg, nproc: int) -> int:
    """Re-launch as `torchrun -m lsnet.train --config <resolved yaml>` so every rank sees identical settings."""
    import tempfile
    import time
    from pathlib import Path

    from lsnet.train.config import save_config

    if not cfg.resume and not cfg.experiment:
        cfg = cfg.replace(experiment=f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model}-{cfg.dataset}")
    Path(cfg.output).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix=".launch-", dir=cfg.output, delete=False) as f:
        path = f.name
    save_config(cfg, path)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "lsnet.train", "--config", path]
    print(" ".join(command), flush=True)
    try:
        return subprocess.call(command)
    finally:
        os.unlink(path)


def run(args: argparse.Namespace) -> int:
    from lsnet.train.config import list_presets, load_preset, resolve_config

    if args.list_configs:
        for name in list_presets():
            values = load_preset(name)
            print(f"{name:<28} model={values.get('model', '-')} epochs={values.get('epochs', '-')} "
                  f"img_size={values.get('img_size', '-')}")
        return 0
    try:
        cfg = resolve_config(args)
        if args.nproc > 1 and "RANK" not in os.environ:
            return _spawn(cfg, args.nproc)
        from lsnet.train import train

        train(cfg)
    except KeyboardInterrupt:
        print("interrupted; continue with `lsnet train --resume <run folder>`", file=sys.stderr)
        return 130
    return 0
