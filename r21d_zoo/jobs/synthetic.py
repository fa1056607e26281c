"""``r21d-zoo synthetic``: write the synthetic motion-direction dataset of :mod:`r21d_zoo.data.synthetic`:

    r21d-zoo synthetic data/motion --videos-per-class 24 --frames 16 --size 64
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional

from .._io import writable_dir
from ..data.synthetic import long_tailed_counts, make_motion_dataset


Direction = Literal["left", "right", "up", "down", "up_left", "up_right", "down_left", "down_right"]


@dataclass
class SyntheticConfig:
    """Write the synthetic motion-direction dataset (videos plus train.csv / val.csv)."""

    out: str = field(metadata=dict(positional=True, help="output folder"))
    videos_per_class: int = field(default=24, metadata=dict(help="training videos per class"))
    val_per_class: int = field(default=8, metadata=dict(help="validation videos per class"))
    frames: int = field(default=16, metadata=dict(help="frames per video"))
    size: int = field(default=64, metadata=dict(help="frame side in pixels"))
    seed: int = field(default=0, metadata=dict(help="random seed"))
    directions: List[Direction] = field(default_factory=lambda: ["left", "right"], metadata=dict(help="classes"))
    smallest: Optional[int] = field(
        default=None, metadata=dict(help="long-tailed: training videos fall from --videos-per-class to this")
    )


def run(cfg: SyntheticConfig) -> int:
    writable_dir(cfg.out, "the output folder")
    counts = long_tailed_counts(cfg.directions, cfg.videos_per_class, cfg.smallest) if cfg.smallest else None
    train, val = make_motion_dataset(
        Path(cfg.out), cfg.videos_per_class, cfg.val_per_class, cfg.frames, cfg.size, cfg.seed, cfg.directions, counts
    )
    print(f"wrote {train} and {val}")
    return 0
