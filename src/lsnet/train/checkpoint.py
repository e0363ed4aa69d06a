"""Checkpoints: atomic writes, full training state (for an exact resume), safetensors export, checked loading.

A training checkpoint (`last.pth`, `best.pth`) is a dict of tensors and plain Python values, so it loads with
`torch.load(weights_only=True)`:

    model, model_ema, optimizer, scheduler, scaler   state dicts
    epoch                                            epochs completed
    best_metric, best_epoch, history                 selection state and the per-epoch metrics rows
    rng                                              per-rank python / numpy / torch / cuda generator states
    config                                           the resolved TrainConfig as a dict

Every file is written to a temporary name in the same folder, flushed and fsynced, then moved over the old one with
`os.replace`, so a crash, `kill -9` or a full disk at any moment leaves the previous file intact.
"""
from __future__ import annotations

import errno
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError

LAST, BEST, BEST_WEIGHTS = "last.pth", "best.pth", "best.safetensors"
_PREFIXES = ("module.", "_orig_mod.")


# ---------------------------------------------------------------------------------------------- atomic writing
def _serialize(obj: Any, f) -> None:
    torch.save(obj, f)


def atomic_write(path: str | os.PathLike, write_fn) -> Path:
    """Call write_fn(file_object) on a temporary file beside `path`, fsync, then os.replace it onto `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            hint = " (disk full: free space or point --output elsewhere)" if err.errno == errno.ENOSPC else ""
            kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
            raise CheckpointError(f"could not write {str(path)!r}: {err.strerror or err}{hint}; {kept}") from err
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """torch.save `state` atomically."""
    return atomic_write(path, lambda f: _serialize(dict(state), f))


def export_safetensors(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike,
                       metadata: Mapping[str, Any] | None = None) -> Path:
    """Write model weights as .safetensors (atomically); `metadata` is stored as JSON under 'lsnet'."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    meta = {"format": "pt"}
    if metadata:
        meta["lsnet"] = json.dumps(dict(metadata), default=str)
    return atomic_write(path, lambda f: f.write(save(tensors, metadata=meta)))


# ---------------------------------------------------------------------------------------------------- reading
def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or `<run folder>/last.pth`."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found; pass a last.pth/best.pth file or a run folder "
                              "that holds last.pth")
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a .pth (torch.load, weights_only=True) or .safetensors file into a dict."""
    path = resolve_checkpoint_path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (safe_open has no iterator)
        except Exception as err:  # SafetensorError, OSError
            raise CheckpointError(f"cannot read {str(path)!r} as safetensors: {err}") from err
        config = json.loads(meta["lsnet"]) if "lsnet" in meta else None
        return {"model": tensors, **({"config": config} if config else {})}
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (truncated zip), EOFError
        raise CheckpointError(f"cannot read checkpoint {str(path)!r} with torch.load(weights_only=True): "
                              f"{err}") from err
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{str(path)!r} holds a {type(checkpoint).__name__}, not a state dict or a checkpoint")
    if not any(isinstance(checkpoint.get(k), Mapping) for k in ("model", "state_dict", "model_ema")):
        checkpoint = {"model": dict(checkpoint)}  # a bare state dict
    elif "model" not in checkpoint and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = {**checkpoint, "model": checkpoint["state_dict"]}
    return dict(checkpoint)


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The resolved config stored in a training checkpoint (empty when it has none)."""
    config = load_checkpoint(path).get("config") or {}
    return {k: v for k, v in config.items() if k != "resume"}


def strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming missing / unexpected keys and shape mismatches (at most 8 of each shown)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or mismatched):
        return

    def show(items: list[str]) -> str:
        return ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")

    parts = [f"{len(items)} {what} [{show(items)}]" for what, items in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if items]
    raise CheckpointError(f"{source} does not fit {type(model).__name__}: {'; '.join(parts)}. Check that --model, "
                          "--num-classes, --in-chans and --img-size match the run that wrote it")


def load_model_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load a state dict strictly, with a readable error instead of load_state_dict's wall of text."""
    state_dict = strip_prefixes(state_dict)
    check_state_dict(model, state_dict, source)
    model.load_state_dict(state_dict)


def read_weights(path: str | os.PathLike, prefer_ema: bool = False) -> dict[str, torch.Tensor]:
    """Model weights from any checkpoint file (training container, bare state dict, or safetensors)."""
    checkpoint = load_checkpoint(path)
    key = "model_ema" if prefer_ema and isinstance(checkpoint.get("model_ema"), Mapping) else "model"
    return strip_prefixes(checkpoint[key])


# ------------------------------------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    """python / numpy / torch / cuda generator states as tensors and plain values (weights_only-loadable)."""
    version, py_state, gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
