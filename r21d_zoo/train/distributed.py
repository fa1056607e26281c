"""Process-group helpers shared by extraction and training: torchrun's env vars, device choice, primary rank."""

import os
from typing import Optional

import torch
import torch.distributed as dist

from .._world import WorldInfo as WorldInfo, world_info_from_env as world_info_from_env


def init_distributed(world: Optional[WorldInfo] = None) -> WorldInfo:
    """Join the default process group when launched with several processes (nccl on GPU, gloo on CPU)."""
    if dist.is_available() and dist.is_initialized():
        return WorldInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = world or world_info_from_env()
    if world.world_size > 1:
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:  # torchrun sets them; under SLURM the job script does
            raise RuntimeError(
                f"{world.world_size} processes but {' and '.join(missing)} not set: launch with torchrun, or "
                'under SLURM export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) '
                "MASTER_PORT=29500"
            )
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend, rank=world.rank, world_size=world.world_size)
    return world


def default_device(world: WorldInfo, device: Optional[str] = None) -> torch.device:
    """``device`` if given, else this rank's GPU when there is one, else the CPU."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", world.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def all_reduce_sum(value: int) -> int:
    """Sum an integer over the process group (identity without one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(t)
    return int(t.item())
