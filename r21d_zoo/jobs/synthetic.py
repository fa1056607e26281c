"""``r21d-zoo synthetic``: write the synthetic motion-direction dataset of :mod:`r21d_zoo.data.synthetic`:

    r21d-zoo synthetic data/motion --videos-per-class 24 --frames 16 --size 64
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional

from .._bounds import Checked, at_least
from .._errors import UsageError
from .._io import writable_dir
from ..data.synthetic import MOTION_SPEED, long_tailed_counts, make_motion_dataset


Direction = Literal["left", "right", "up", "down", "up_left", "up_right", "down_left", "down_right"]


@dataclass
class SyntheticConfig(Checked):
    """Write the synthetic motion-direction dataset (videos plus train.csv / val.csv)."""

    out: str = field(metadata=dict(positional=True, help="output folder"))
    videos_per_class: int = field(default=24, metadata=dict(help="training videos per class", bound=at_least(1)))
    val_per_class: int = field(default=8, metadata=dict(help="validation videos per class", bound=at_least(0)))
    frames: int = field(default=16, metadata=dict(help="frames per video", bound=at_least(1)))
    size: int = field(default=64, metadata=dict(help="frame side in pixels, a multiple of 4", bound=at_least(8)))
    seed: int = field(default=0, metadata=dict(help="random seed", bound=at_least(0)))
    directions: List[Direction] = field(default_factory=lambda: ["left", "right"], metadata=dict(help="classes"))
    smallest: Optional[int] = field(
        default=None,
        metadata=dict(help="long-tailed: training videos fall from --videos-per-class to this", bound=at_least(1)),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size % 4:
            raise UsageError(f"--size {self.size}: must be a multiple of 4 (e.g. {self.size // 4 * 4 + 4})")
        if (self.frames - 1) * MOTION_SPEED > self.size // 2:
            raise UsageError(
                f"--frames {self.frames} do not fit in --size {self.size}: the square moves {MOTION_SPEED} px a frame "
                f"over half the frame; use --size {4 * -(-(self.frames - 1) * MOTION_SPEED // 2)} or fewer frames"
            )


def run(cfg: SyntheticConfig) -> int:
    writable_dir(cfg.out, "the output folder")
    counts = long_tailed_counts(cfg.directions, cfg.videos_per_class, cfg.smallest) if cfg.smallest else None
    train, val = make_motion_dataset(
        Path(cfg.out), cfg.videos_per_class, cfg.val_per_class, cfg.frames, cfg.size, cfg.seed, cfg.directions, counts
    )
    print(f"wrote {train} and {val}")
    return 0
