"""Which process of how many this is (torchrun's or SLURM's environment), known without joining a process group:
extraction shards and streamed datasets split work by it; :mod:`r21d_zoo.train.distributed` joins the group."""

import os
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class WorldInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_primary(self) -> bool:
        return self.rank == 0


def world_info_from_env() -> WorldInfo:
    """Rank and world size from torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) or SLURM, else a single process."""
    env = os.environ
    if "WORLD_SIZE" in env:
        return WorldInfo(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        return WorldInfo(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return WorldInfo()


def array_task_from_env() -> Optional[Tuple[int, int]]:
    """(index from 0, count) of this task of a SLURM job array (``sbatch --array``: ``SLURM_ARRAY_TASK_ID``, its
    ``_MIN``, ``_STEP`` and ``_COUNT``), or None outside one. Each array task is a job of its own, so ranks alone would
    give every task all the work."""
    env = os.environ
    if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    step = int(env.get("SLURM_ARRAY_TASK_STEP", 1)) or 1
    index = (int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))) // step
    count = int(env["SLURM_ARRAY_TASK_COUNT"])
    if not 0 <= index < count:
        raise ValueError(
            f"SLURM array task {env['SLURM_ARRAY_TASK_ID']} is index {index} of {count}: the array's environment is "
            f"inconsistent; give --shard-id and --num-shards"
        )
    return index, count
