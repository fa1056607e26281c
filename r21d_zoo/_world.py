"""Which process of how many this is (torchrun's or SLURM's environment), known without joining a process group:
extraction shards and streamed datasets split work by it; :mod:`r21d_zoo.train.distributed` joins the group."""

import os
from dataclasses import dataclass


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
