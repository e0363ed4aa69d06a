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
import os
import sys

VERBS = ("demo", "bench", "export", "train", "eval", "predict", "erf", "inspect", "robustness", "data", "study")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the flag, the problem and where the help is."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lsnet", description="LSNet and its large-kernel relatives")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level; show tracebacks of errors")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")  # sub-parsers are Parsers too
    for verb in VERBS:
        module = importlib.import_module(f"lsnet.cli.{verb.replace('-', '_')}")
        module.add_parser(subparsers).set_defaults(_run=module.run)
    return parser


_EXTRAS = {"onnx": "onnx", "onnxscript": "onnx", "onnxruntime": "onnx", "matplotlib": "viz", "skimage": "viz",
           "corrupt_tta": "robustness", "fvcore": "flops", "triton": "triton",
           "pycocotools": "detection"}  # module -> pyproject extra
_PATH_ERRORS = {
    FileNotFoundError: "no such file or folder: {path}; check the path",
    PermissionError: "permission denied: {path}; choose a path you may read and write",
    IsADirectoryError: "{path} is a folder; pass a file path",
    NotADirectoryError: "{path}: part of the path is a file, not a folder; check the path",
}


def user_error_message(err: Exception) -> str | None:
    """The one line to print for an error the user can act on, None for anything else (a bug: keep the traceback).

    User errors are the project's error classes, ValueError (the library's convention for bad arguments: the message
    names the problem and the fix), a missing optional package, an unreadable image, a keyword the model does not take
    and a file-system error on a named path.
    """
    from lsnet.train.errors import USER_ERRORS

    if isinstance(err, (*USER_ERRORS, ValueError)):
        return str(err)
    if isinstance(err, ImportError):  # an optional package: say which extra brings it
        extra = _EXTRAS.get((err.name or "").partition(".")[0])
        if "pip install" in str(err):
            return str(err)
        return f"{err}; install it with pip install 'lsnet[{extra}]'" if extra else None
    if isinstance(err, OSError) and type(err).__name__ == "UnidentifiedImageError":  # PIL's, no filename
        return f"{err}; pass an image file PIL can read (PNG, JPEG, ...)"
    if isinstance(err, TypeError) and "got an unexpected keyword argument" in str(err):  # a model spec's KEY=VALUE
        return f"{err}; drop that KEY=VALUE from the model spec or use one of the model's arguments"
    if isinstance(err, OSError):
        if err.filename is None:  # raised with our own message, e.g. "checkpoint ... not found; pass ..."
            return str(err) if isinstance(err, FileNotFoundError) else None
        path = repr(os.fspath(err.filename))
        for kind, text in _PATH_ERRORS.items():
            if isinstance(err, kind):
                return text.format(path=path)
        return f"{err.strerror}: {path}; check the path"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args._run(args) or 0)
    except Exception as err:  # a condition the user can act on becomes one line; -v keeps the traceback
        message = None if args.verbose else user_error_message(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
