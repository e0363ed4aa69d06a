"""argparse types shared by the verbs: each checks one value while the command line is parsed, so a bad value stops
the command with one line (`error: lsnet VERB: argument --FLAG: ...`) before any model is built.

    parser.add_argument("--img-size", type=positive_int, default=224)
    parser.add_argument("models", nargs="+", type=model_name)
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
from pathlib import Path

# names timm resolves without its registry (Hugging Face hub and local folders)
_SOURCE_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


def _integer(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, batches, rounds, threads)."""
    return _integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (e.g. --num-classes, where 0 means no classifier)."""
    return _integer(text, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """A finite float > 0 (tolerances)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1] (shares, agreement thresholds)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def output_file(text: str) -> str:
    """A file path that can be written: not a folder, inside a folder that exists and is writable."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; pass a file path inside it, e.g. "
                                         f"{str(path / 'model.onnx')!r}")
    parent = path.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(parent)!r} does not exist; create it or pass a path in a "
                                         "folder that exists")
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"folder {str(parent)!r} is not writable; pass a path you may write")
    return text


def model_name(text: str) -> str:
    """A model name timm knows once lsnet's families are registered (a `.tag` suffix and hub names allowed)."""
    import timm

    import lsnet  # noqa: F401  (registers the model families in timm)

    if text.startswith(_SOURCE_PREFIXES) or timm.is_model(text):
        return text
    close = difflib.get_close_matches(text, timm.list_models(), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise argparse.ArgumentTypeError(f"unknown model {text!r}; {hint}list models with "
                                     f"python -c \"import lsnet, timm; print(timm.list_models('{text[:5]}*'))\"")


def model_spec(text: str) -> str:
    """A model spec `[LABEL=]NAME[:KEY=VALUE,...]` with a known NAME; returned unchanged (verbs parse it again)."""
    from lsnet.analysis.erf import parse_model_spec

    try:
        spec = parse_model_spec(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    try:
        model_name(spec.name)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"model spec {text!r}: {err}") from None
    return text


def json_mapping(text: str) -> dict:
    """A JSON file holding one object, e.g. {"lsnet_t": 74.9}."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file; pass a JSON file such as {{\"lsnet_t\": 74.9}}")
    try:
        value = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON ({err}); write it as "
                                         "{\"lsnet_t\": 74.9}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} holds a {type(value).__name__}, not an object; write it as "
                                         "{\"lsnet_t\": 74.9}")
    return value


def comma_list(choices: tuple[str, ...]):
    """An argparse type: a comma-separated list of `choices` ('eager,onnxruntime'), in the given order, no repeats."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(item.strip() for item in text.split(",")))
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"{', '.join(map(repr, unknown)) or repr(text)} not among "
                                             f"{', '.join(choices)}; pass a comma-separated list of them")
        return items

    return parse
