"""Entry point of the `lsnet` command.

Each verb lives in `lsnet/cli/<verb>.py` and defines `add_parser(subparsers)` (returning its parser) and
`run(args) -> int`. Verb modules are imported only when listed here, and their heavy imports happen in `run`.

    lsnet demo                      # build every LSNet variant, time it, print a table
    lsnet <verb> --help
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

VERBS = ("demo", "bench", "export", "train", "eval", "erf", "inspect", "robustness")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsnet", description="LSNet and its large-kernel relatives")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        module = importlib.import_module(f"lsnet.cli.{verb.replace('-', '_')}")
        module.add_parser(subparsers).set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args._run(args) or 0)
    except Exception as err:  # a condition the user can act on becomes one line; -v keeps the traceback
        from lsnet.train.errors import USER_ERRORS

        if args.verbose or not isinstance(err, (*USER_ERRORS, FileNotFoundError)):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
