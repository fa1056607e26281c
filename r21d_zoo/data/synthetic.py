"""A synthetic action dataset whose label is the direction of motion of a textured square (left, right, up, down and
the four diagonals).

The square's position, texture and the background are random, so single frames carry no label information. With
``left`` and ``right`` only (the default), a clip played backwards is a clip of the other class, so the *set* of frames
is identically distributed for both classes and any per-frame model with temporal pooling (fR2D) is at chance, while a
model with temporal convolutions can learn the task. Adding ``up``/``down`` lets a per-frame model tell the axis
(at most 50%). :func:`long_tailed_counts` gives the classes geometric (Zipf-like) sizes, for pre-training tests.
Writes H.264 videos and ``train.csv`` / ``val.csv`` (``path,label``) split files (``r21d-zoo synthetic``).
"""

import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..video import write_video

DIRECTIONS = {
    "left": (0, -1),
    "right": (0, 1),
    "up": (-1, 0),
    "down": (1, 0),
    "up_left": (-1, -1),
    "up_right": (-1, 1),
    "down_left": (1, -1),
    "down_right": (1, 1),
}


def long_tailed_counts(labels: Sequence[str], largest: int, smallest: int) -> Dict[str, int]:
    """Class sizes falling geometrically from ``largest`` (the first label) to ``smallest`` (the last)."""
    if len(labels) == 1:
        return {labels[0]: largest}
    ratio = (smallest / largest) ** (1 / (len(labels) - 1))
    return {label: max(1, round(largest * ratio**i)) for i, label in enumerate(labels)}


MOTION_SPEED = 2  # px per frame


def motion_clip(
    direction: str, num_frames: int, size: int, rng: np.random.Generator, speed: int = MOTION_SPEED
) -> np.ndarray:
    """(T, size, size, 3) uint8: a random-texture square of half the frame size moving ``speed`` px/frame over a
    random-texture background."""
    dy, dx = DIRECTIONS[direction]
    side = size // 2
    background = rng.integers(60, 190, (size // 4, size // 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    texture = rng.integers(0, 256, (side // 2, side // 2, 3), dtype=np.uint8).repeat(2, 0).repeat(2, 1)
    travel = speed * (num_frames - 1)
    if travel > size - side:
        raise ValueError(f"{num_frames} frames at {speed} px/frame do not fit in {size} px")

    def start(d: int) -> int:  # the square stays inside the frame for the whole clip
        if d > 0:
            return int(rng.integers(0, size - side - travel + 1))
        if d < 0:
            return int(rng.integers(travel, size - side + 1))
        return int(rng.integers(0, size - side + 1))

    y0, x0 = start(dy), start(dx)
    frames = np.repeat(background[None], num_frames, 0)
    for t in range(num_frames):
        y, x = y0 + dy * speed * t, x0 + dx * speed * t
        frames[t, y : y + side, x : x + side] = texture
    return frames


def write_lossless(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """Lossless H.264 (qp 0, no chroma subsampling): a lossy codec treats the first (intra) frame differently from
    the predicted ones, which would tell a per-frame model where the motion started."""
    write_video(path, frames, fps, pix_fmt="yuv444p", options={"qp": "0"})
    return Path(path)


def make_motion_dataset(
    out: Path,
    videos_per_class: int = 24,
    val_per_class: int = 8,
    num_frames: int = 16,
    size: int = 64,
    seed: int = 0,
    directions: Sequence[str] = ("left", "right"),
    train_counts: Optional[Dict[str, int]] = None,
) -> Tuple[Path, Path]:
    """Write the videos under ``out/<label>/`` and return the ``train.csv`` and ``val.csv`` paths. ``train_counts``
    (label -> training videos, e.g. :func:`long_tailed_counts`) replaces ``directions``/``videos_per_class``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    counts = train_counts or {label: videos_per_class for label in directions}
    rows: List[Tuple[str, str, str]] = []
    for label, n_train in counts.items():
        (out / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_train + val_per_class):
            path = write_lossless(out / label / f"{label}_{i:03d}.mp4", motion_clip(label, num_frames, size, rng))
            rows.append((str(path.relative_to(out)), label, "train" if i < n_train else "val"))
    splits = []
    for split in ("train", "val"):
        path = out / f"{split}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            writer.writerows((p, label) for p, label, s in rows if s == split)
        splits.append(path)
    return splits[0], splits[1]
