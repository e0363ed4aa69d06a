"""Process-group setup and the few collectives the engine needs (no-ops in a single process).

`torchrun --nproc_per_node=N -m lsnet.train ...` sets RANK / WORLD_SIZE / LOCAL_RANK; the backend is NCCL on CUDA and
gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclass
class DistState:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we called init_process_group, so we destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda requested but CUDA is not available; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str = "auto") -> DistState:
    """Join the process group torchrun describes in the environment (or stay single-process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    state = DistState(rank, world_size, local_rank, resolve_device(device, local_rank))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if state.device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=state.device if backend == "nccl" else None)
        state.owns_group = True
    return state


def cleanup_distributed(state: DistState) -> None:
    if state.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, state: DistState) -> torch.Tensor:
    """Sum over ranks, in place (returns the tensor)."""
    if state.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(module: torch.nn.Module, state: DistState, src: int = 0) -> None:
    """Copy rank `src`'s buffers (BatchNorm running statistics) to every rank, in place.

    DistributedDataParallel broadcasts rank 0's buffers at the start of each forward, so after an epoch's last step
    every rank holds statistics updated by its own batch; evaluating a shard with them would score weights that no
    checkpoint holds (checkpoints are rank 0's)."""
    if state.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=src)


def reduce_device(state: DistState) -> torch.device:
    """Where collectives run: the GPU under NCCL, the CPU under gloo."""
    return state.device if state.device.type == "cuda" else torch.device("cpu")


def broadcast_object(obj: Any, state: DistState, src: int = 0) -> Any:
    if not state.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any, state: DistState) -> list[Any]:
    if not state.enabled:
        return [obj]
    out: list[Any] = [None] * state.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(state: DistState) -> None:
    if state.enabled:
        dist.barrier()
