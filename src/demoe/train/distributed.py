"""Distributed training set up from the torchrun environment (RANK, LOCAL_RANK, WORLD_SIZE).

One process per device; NCCL on GPUs, gloo on CPUs. Without those variables the run is a
single process and nothing here touches torch.distributed. The context and the collectives that
inference shares live in `demoe.distributed`.
"""

from __future__ import annotations

import os

import torch
from torch import distributed as dist
from torch import nn

from demoe.distributed import (  # noqa: F401  (shared with sharded inference; re-exported here)
    DistributedContext,
    barrier,
    broadcast_object,
    cleanup_distributed,
    gather_objects,
)


def setup_distributed(device: str = "auto") -> DistributedContext:
    """Read the torchrun environment, pick the device and start the process group.

    device: "auto" (CUDA when available), "cpu" or "cuda".
    """
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("runtime.device is 'cuda' but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    elif device == "cpu":
        torch_device = torch.device("cpu")
    else:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        if torch_device.type == "cuda":
            dist.init_process_group(backend, device_id=torch_device)
        else:
            dist.init_process_group(backend)
    return DistributedContext(rank, local_rank, world_size, torch_device)


def all_reduce_mean(value: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Mean of a tensor over all processes (the tensor itself when not distributed)."""
    if not context.is_distributed:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / context.world_size


def wrap_for_training(
    model: nn.Module, context: DistributedContext, find_unused_parameters: bool
) -> nn.Module:
    """DistributedDataParallel around the model (the model itself when not distributed).

    Under CUDA DDP the router's BatchNorm layers become SyncBatchNorm so that their batch
    statistics cover the global batch, as on one device.
    """
    if not context.is_distributed:
        return model
    router = getattr(model, "router", None)
    if context.device.type == "cuda" and router is not None:
        model.router = nn.SyncBatchNorm.convert_sync_batchnorm(router)
    device_ids = [context.local_rank] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )
