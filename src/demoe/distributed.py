"""Processes started by torchrun: who this process is, and the few collectives both the training
loop and sharded inference need.

torchrun describes each process in its environment (RANK, LOCAL_RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE). Without those variables a run is one process and nothing here touches
torch.distributed. Starting the process group is left to the callers: training picks NCCL or
gloo for its gradients (`demoe.train.distributed.setup_distributed`), inference only needs gloo to
agree on the inputs and merge the reports (`demoe.inference.sharding.start_ranks`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int  # global rank of this process
    local_rank: int  # rank on this node (= CUDA device index)
    world_size: int  # number of processes
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and logs."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


@dataclass(frozen=True)
class RankEnvironment:
    """What torchrun tells this process (all 0 / 1 for a plain one-process run)."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int  # processes on this node


def rank_environment() -> RankEnvironment:
    """Read RANK, LOCAL_RANK, WORLD_SIZE and LOCAL_WORLD_SIZE; ValueError if they disagree."""
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    if not (0 <= rank < world_size and 0 <= local_rank < local_world_size <= world_size):
        raise ValueError(
            f"inconsistent torchrun environment: RANK={rank} LOCAL_RANK={local_rank} "
            f"WORLD_SIZE={world_size} LOCAL_WORLD_SIZE={local_world_size}"
        )
    return RankEnvironment(rank, local_rank, world_size, local_world_size)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.is_distributed:
        if context.device.type == "cuda" and dist.get_backend() == "nccl":
            dist.barrier(device_ids=[context.local_rank])
        else:
            dist.barrier()


def gather_objects(value: Any, context: DistributedContext) -> list[Any]:
    """Every process's `value`, in rank order (a one-element list when not distributed)."""
    if not context.is_distributed:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, context: DistributedContext) -> Any:
    """Rank 0's `value` on every process."""
    if not context.is_distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
