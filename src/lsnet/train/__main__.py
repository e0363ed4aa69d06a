"""`python -m lsnet.train [flags]`: the entry point torchrun starts on every rank (same flags as `lsnet train`).

    torchrun --standalone --nproc_per_node=2 -m lsnet.train --config fashion_mnist_cpu
"""
from __future__ import annotations

import argparse
import sys

from .launch import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m lsnet.train", description=__doc__,
                                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
