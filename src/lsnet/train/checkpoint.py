"""Writing checkpoints: atomic writes, full training state (for an exact resume), safetensors export, RNG states.

A training checkpoint (`last.pth`, `best.pth`) is a dict of tensors and plain Python values, so it loads with
`torch.load(weights_only=True)`:

    model, model_ema, optimizer, scheduler, scaler   state dicts
    epoch                                            epochs completed
    best_metric, best_epoch, history                 selection state and the per-epoch metrics rows
    rng                                              per-rank python / numpy / torch / cuda generator states
    config                                           the resolved TrainConfig as a dict
    metadata                                         the task's model facts (as in best.safetensors' metadata)

Every file is written to a temporary name in the same folder, flushed and fsynced, then moved over the old one with
`os.replace`, so a crash, `kill -9` or a full disk at any moment leaves the previous file intact. Reading any checkpoint
(these, official files, safetensors) is `lsnet.checkpoints`.
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

from ..checkpoints import CheckpointError

BEST, BEST_WEIGHTS = "best.pth", "best.safetensors"


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
