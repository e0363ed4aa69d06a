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


def add_parser(subparsers) -> argparse.ArgumentParser:
    from lsnet.train.launch import add_arguments

    parser = subparsers.add_parser("train", help="train, resume or distil a model", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from lsnet.train.launch import run as run_training

    return run_training(args)
