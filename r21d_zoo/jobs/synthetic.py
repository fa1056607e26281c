"""``r21d-zoo synthetic``: write the synthetic motion-direction dataset of :mod:`r21d_zoo.data.synthetic`:

    r21d-zoo synthetic data/motion --videos-per-class 24 --frames 16 --size 64
"""

from pathlib import Path

from .._io import writable_dir
from ..data.synthetic import long_tailed_counts, make_motion_dataset
from .configs import SyntheticConfig as SyntheticConfig


def run(cfg: SyntheticConfig) -> int:
    writable_dir(cfg.out, "OUT")
    counts = long_tailed_counts(cfg.directions, cfg.videos_per_class, cfg.smallest) if cfg.smallest else None
    train, val = make_motion_dataset(
        Path(cfg.out), cfg.videos_per_class, cfg.val_per_class, cfg.frames, cfg.size, cfg.seed, cfg.directions, counts
    )
    print(f"wrote {train} and {val}")
    return 0
