"""The one checkpoint loader (timm's pretrained path, train, eval, distillation, analysis) and the one model factory.

    from lsnet.checkpoints import create_model, load_checkpoint, model_from_checkpoint
    model = create_model("lsnet_t", num_classes=10, in_chans=1, img_size=64)
    load_checkpoint(model, "lsnet_t.pth")        # official ImageNet file -> a 64 px, 10-class, grey LSNet-T
    model, ckpt = model_from_checkpoint("runs/<run>/best.pth")     # the model the run's config names, in eval mode

Files read (always `torch.load(weights_only=True)`, never `weights_only=False`, or safetensors):
  * bare state dicts, official or timm layout, with or without 'module.' / '_orig_mod.' prefixes;
  * training containers {'model', 'model_ema', 'optimizer', 'args', ...}: official ones pickle their
    `argparse.Namespace` of arguments, the only class the loader allows beyond tensors and plain containers;
  * our run checkpoints: `last.pth` / `best.pth` (training state with 'config') and `best.safetensors` (weights,
    the config as JSON metadata under 'lsnet').
The entry read is the non-EMA one official evaluation reads ('model', 'state_dict', 'model_state_dict'), unless
`entry='model_ema'` (timm: `checkpoint_entry=`) asks for another; the choice is logged.

Fitting the file to the model (`fit_state_dict`): the model family's `checkpoint_filter_fn` always runs (official key
names -> ours; LSNet resizes its attention-bias tables to the model's img_size). Then a classifier of another size is
dropped (the model keeps its fresh one, one log line), a stem conv with other input channels is adapted with timm's
`adapt_input_conv`, and anything else that does not fit is one `CheckpointError` naming the file, the model, the first
keys / shape pairs and the fix.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

_logger = logging.getLogger(__name__)

# entries official evaluation code reads, in order (LSNet/UniConvNet 'model', timm 'state_dict', LKCA
# 'model_state_dict'); EMA entries only when asked for by name, or when a file holds nothing else
NON_EMA_ENTRIES = ("model", "state_dict", "model_state_dict", "module")
EMA_ENTRIES = ("model_ema", "state_dict_ema")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# classes beyond tensors and plain containers that weights_only loading may build: official containers' arguments
SAFE_GLOBALS = (argparse.Namespace,)
LAST = "last.pth"
_SHOWN = 5  # keys / shape pairs named in an error


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, does not fit the model, or could not be written; the message says the fix."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist."""


class UnknownModelError(ValueError):
    """A model name timm does not know."""


# --------------------------------------------------------------------------------------------------- reading
@dataclass
class Checkpoint:
    """What a checkpoint file holds. `content` is the whole file (training state included), `config` the training
    config of `lsnet train` ({} for other files)."""

    path: Path
    content: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def entries(self) -> list[str]:
        """Entries holding state dicts ([] for a bare state dict)."""
        return [k for k in (*NON_EMA_ENTRIES, *EMA_ENTRIES) if isinstance(self.content.get(k), Mapping)]

    def state_dict(self, entry: str | None = None) -> dict[str, torch.Tensor]:
        """The weights of `entry` (default: the first non-EMA entry, else the file itself), wrapper prefixes removed."""
        entries = self.entries
        if entry is not None and entry not in entries:
            raise CheckpointError(f"{str(self.path)!r} has no entry {entry!r}; entries holding weights: "
                                  f"{entries or 'none (a bare state dict)'}")
        chosen = entry or next((k for k in NON_EMA_ENTRIES if k in entries), entries[0] if entries else None)
        weights = self.content if chosen is None else self.content[chosen]
        tensors = {strip_prefixes(k): v for k, v in weights.items() if isinstance(v, torch.Tensor)}
        if not tensors:
            raise CheckpointError(f"{str(self.path)!r} holds no tensors (keys: {list(weights)[:_SHOWN]}); pass a "
                                  "state dict, a training checkpoint or a .safetensors file")
        what = "a bare state dict" if chosen is None else f"entry {chosen!r} (entries: {entries})"
        _logger.info(f"{self.path}: loading {what}")
        return tensors


def resolve_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or `<run folder>/last.pth`."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {str(path)!r} not found; pass a .pth / .safetensors file or a run "
                                      "folder holding last.pth")
    return path


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a .pth / .pt / .bin (torch.load, weights_only=True) or .safetensors file once."""
    path = resolve_path(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path, tensors=True)
    content = _torch_load(path)
    config = content.get("config")
    return Checkpoint(path, content, dict(config) if isinstance(config, Mapping) else {})


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The training config stored with a checkpoint ({} when none), without reading its tensors (memory-mapped)."""
    path = resolve_path(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path, tensors=False).config
    config = _torch_load(path, mmap=True).get("config")
    return dict(config) if isinstance(config, Mapping) else {}


def _read_safetensors(path: Path, tensors: bool) -> Checkpoint:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            content = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}  # noqa: SIM118 (no iterator)
    except Exception as err:  # SafetensorError, OSError
        raise CheckpointError(f"cannot read checkpoint {str(path)!r} as safetensors ({_first_line(err)}); "
                              "re-export it or pass a .pth file") from err
    return Checkpoint(path, content, json.loads(meta["lsnet"]) if "lsnet" in meta else {})


def _torch_load(path: Path, mmap: bool = False) -> dict[str, Any]:
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            try:
                content = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as err:
                if not mmap or "mmap" not in str(err):
                    raise
                content = torch.load(path, map_location="cpu", weights_only=True)  # a legacy (non-zip) file
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, KeyError, ...: torch raises many types
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found:
            raise CheckpointError(
                f"cannot read checkpoint {str(path)!r} with torch.load(weights_only=True): it pickles "
                f"{found.group(1)}, which is not a tensor, a plain container or argparse.Namespace; re-save only the "
                "weights, e.g. torch.save(model.state_dict(), path)") from err
        reason = str(err).split("WeightsUnpickler error:", 1)[-1].strip() or type(err).__name__  # torch's own text
        raise CheckpointError(f"cannot read checkpoint {str(path)!r} with torch.load(weights_only=True) "
                              f"({type(err).__name__}: {reason.splitlines()[0][:200]}); it is not a PyTorch "
                              "checkpoint: pass a file written by torch.save or a .safetensors file") from err
    if not isinstance(content, Mapping):
        raise CheckpointError(f"{str(path)!r} holds a {type(content).__name__}, not a state dict or a checkpoint "
                              "container; pass a file written by torch.save(model.state_dict(), path)")
    return dict(content)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def strip_prefixes(key: str) -> str:
    """'module._orig_mod.stem.0.conv.weight' -> 'stem.0.conv.weight' (DDP / torch.compile wrappers)."""
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


# --------------------------------------------------------------------------------------------------- fitting
def family_filter_fn(model: nn.Module) -> Callable[[dict, nn.Module], dict] | None:
    """The `checkpoint_filter_fn` of the module that defines the model's class (each lsnet.models family has one;
    so do many timm families), or None."""
    fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    return fn if callable(fn) else None


def _cfg_names(model: nn.Module, key: str) -> tuple[str, ...]:
    names = (getattr(model, "pretrained_cfg", None) or {}).get(key) or ()
    return (names,) if isinstance(names, str) else tuple(names)


def fit_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module, *, source: str = "checkpoint",
                   filter_fn: Callable | None = None, new_classifier: bool = True) -> dict[str, torch.Tensor]:
    """The file's weights in the model's keys and shapes; raises CheckpointError when they do not fit.

    filter_fn: the family's checkpoint_filter_fn (default: found from the model, `family_filter_fn`).
    new_classifier: a classifier of another size (or none in the model) is dropped and the model keeps its own
        (logged); with False it is an error (evaluation must not score a random head).
    The result may lack only head tensors (dropped, or not in the file: the model keeps its fresh ones, one log line);
    everything else matches `model.state_dict()`.
    """
    state_dict = {strip_prefixes(k): v for k, v in state_dict.items()}
    filter_fn = filter_fn or family_filter_fn(model)
    if filter_fn is not None:
        try:
            state_dict = dict(filter_fn(state_dict, model))
        except (ValueError, KeyError) as err:  # a family's own refusal names its fix
            raise CheckpointError(f"{source} does not fit {_model_name(model)}: {err}") from err
    own = model.state_dict()
    dropped = _drop_classifier(state_dict, own, model, source, new_classifier)
    for conv in _cfg_names(model, "first_conv"):
        key = f"{conv}.weight"
        if key in state_dict and key in own and state_dict[key].ndim == own[key].ndim == 4:
            file_chans, model_chans = state_dict[key].shape[1], own[key].shape[1]
            if file_chans != model_chans and state_dict[key].shape[2:] == own[key].shape[2:]:
                from timm.models import adapt_input_conv

                state_dict[key] = adapt_input_conv(model_chans, state_dict[key], base_chans=file_chans)
                _logger.info(f"{source}: adapted {conv} from {file_chans} to {model_chans} input channels "
                             "(timm adapt_input_conv)")
    fresh = [k for k in own if k not in state_dict and _in_head(k, model)]
    if fresh:  # one line for the whole classifier: what the file had that did not fit, what stays fresh
        what = f"{dropped} does not fit" if dropped else "has no head for"
        _logger.info(f"{source}: {what} {_model_name(model)} ({getattr(model, 'num_classes', '?')} classes); the "
                     f"model keeps its fresh {', '.join(fresh)}")
    _check_fit(state_dict, own, model, source)
    return state_dict


def _in_head(key: str, model: nn.Module) -> bool:
    """Whether `key` belongs to a classifier ('head.fc.weight') or the head module around it ('head.norm.bias')."""
    classifiers = _cfg_names(model, "classifier")
    heads = tuple({c.rsplit(".", 1)[0] + "." for c in classifiers if "." in c})  # 'head.fc' -> 'head.'
    return key.rsplit(".", 1)[0] in classifiers or key.startswith(heads)


def _drop_classifier(state_dict: dict, own: dict, model: nn.Module, source: str, new_classifier: bool) -> str:
    """Remove the file's classifier tensors that do not fit the model's (another num_classes, or none); returns
    what was dropped, in words ('' when nothing)."""
    classifiers = _cfg_names(model, "classifier")
    misfits = [k for k in state_dict if _in_head(k, model) and (k not in own or state_dict[k].shape != own[k].shape)]
    if not misfits:
        return ""
    file_classes = next((int(state_dict[k].shape[0]) for k in misfits if k.endswith(".weight")
                         and k.rsplit(".", 1)[0] in classifiers), None)
    if not new_classifier:
        raise CheckpointError(f"{source}: its classifier has {file_classes} classes but {_model_name(model)} has "
                              f"{getattr(model, 'num_classes', '?')}; build the model with num_classes={file_classes} "
                              f"(--num-classes {file_classes})")
    for key in misfits:
        del state_dict[key]
    return f"its classifier of {file_classes} classes ({len(misfits)} tensors)"


def _check_fit(state_dict: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], model: nn.Module,
               source: str) -> None:
    missing = [k for k in own if k not in state_dict and not _in_head(k, model)]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if not (missing or unexpected or mismatched):
        return

    def show(items: list[str]) -> str:
        return ", ".join(items[:_SHOWN]) + (f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")

    parts = [f"{len(items)} {what} [{show(items)}]" for what, items in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if items]
    raise CheckpointError(f"{source} does not fit {_model_name(model)}: {'; '.join(parts)}. Build the model the "
                          "file was trained as: check the model name, its model kwargs (distilled, kernel sizes, "
                          "depths) and the entry read (checkpoint_entry= / --ema)")


def _model_name(model: nn.Module) -> str:
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    return f"{arch} ({type(model).__name__})" if arch else type(model).__name__


def load_checkpoint(model: nn.Module, checkpoint: str | os.PathLike | Checkpoint, *, entry: str | None = None,
                    new_classifier: bool = True) -> nn.Module:
    """Load a checkpoint file (or a `Checkpoint` already read) into `model` in place; returns the model.

    entry: the container entry to read (default: non-EMA, see `Checkpoint.state_dict`); new_classifier: see
    `fit_state_dict`. Raises CheckpointError (one line) for files that cannot be read or do not fit.
    """
    checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint)
    weights = fit_state_dict(checkpoint.state_dict(entry), model, source=repr(str(checkpoint.path)),
                             new_classifier=new_classifier)
    model.load_state_dict(weights, strict=False)  # fit_state_dict checked every key but the dropped classifier
    return model


# ---------------------------------------------------------------------------------------------------- models
def create_model(name: str, *, num_classes: int | None = None, in_chans: int | None = None,
                 img_size: int | None = None, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """timm.create_model with our families registered; `img_size` goes to the models that take it (LSNet sizes its
    attention-bias tables from it) and is dropped for the others. None-valued settings keep the model's defaults."""
    import timm

    import lsnet.models  # noqa: F401  (registers the model families in timm)

    if not timm.is_model(name):
        raise UnknownModelError(f"unknown model {name!r}; list candidates with timm.list_models('{name[:5]}*') "
                                "(LSNet: lsnet_t, lsnet_s, lsnet_b, lsnet_t_distilled, lsnet_test)")
    kwargs = {k: v for k, v in dict(num_classes=num_classes, in_chans=in_chans, **kwargs).items() if v is not None}
    if img_size is not None and "img_size" not in kwargs:
        try:
            return timm.create_model(name, pretrained=pretrained, img_size=img_size, **kwargs)
        except TypeError as err:  # timm entrypoints take **kwargs: only the class can say it has no img_size
            if "img_size" not in str(err):
                raise
            _logger.info(f"{name} takes no img_size argument; building it without")
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def model_from_checkpoint(checkpoint: str | os.PathLike | Checkpoint, *, model: str | None = None,
                          entry: str | None = None, new_classifier: bool = True,
                          **settings: Any) -> tuple[nn.Module, Checkpoint]:
    """Build the model a checkpoint holds and load it; returns (model in eval mode, the Checkpoint read).

    model: the timm name (default: the one the run's config names; needed for files without a config).
    settings: num_classes / in_chans / img_size / model arguments, over the run's config (its num_classes, in_chans,
        img_size, model_kwargs); None keeps the config's value. entry, new_classifier: see `load_checkpoint`.
    """
    checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint)
    config = checkpoint.config
    name = model or config.get("model")
    if not name:
        raise CheckpointError(f"{str(checkpoint.path)!r} does not say which model it holds (no training config); "
                              "name it: model='lsnet_t' (--model lsnet_t on the command line)")
    kwargs = {k: config[k] for k in ("num_classes", "in_chans", "img_size") if config.get(k)}
    kwargs.update(config.get("model_kwargs") or {})
    kwargs.update({k: v for k, v in settings.items() if v is not None})
    net = create_model(name, **kwargs)
    load_checkpoint(net, checkpoint, entry=entry, new_classifier=new_classifier)
    return net.eval(), checkpoint


__all__ = [
    "Checkpoint", "CheckpointError", "CheckpointNotFoundError", "UnknownModelError", "create_model",
    "family_filter_fn", "fit_state_dict", "load_checkpoint", "model_from_checkpoint", "read_checkpoint",
    "read_checkpoint_config", "resolve_path", "strip_prefixes",
]
