"""A synthetic action dataset whose label is the direction of motion of a textured square (left, right, up, down).

The square's position, texture and the background are random, so single frames carry no label information. With
``left`` and ``right`` only (the default), a clip played backwards is a clip of the other class, so the *set* of frames
is identically distributed for both classes and any per-frame model with temporal pooling (fR2D) is at chance, while a
model with temporal convolutions can learn the task. Adding ``up``/``down`` lets a per-frame model tell the axis
(at most 50%). Writes H.264 videos and ``train.csv`` / ``val.csv`` (``path,label``) split files:

    python -m r21d_zoo.synthetic data/motion --videos-per-class 24 --frames 16 --size 64
"""

import argparse
import csv
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}


def motion_clip(direction: str, num_frames: int, size: int, rng: np.random.Generator, speed: int = 2) -> np.ndarray:
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


def write_video(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    import av

    h, w = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        # lossless (qp 0, no chroma subsampling): a lossy codec treats the first (intra) frame differently from the
        # predicted ones, which would tell a per-frame model where the motion started
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv444p"
        stream.options = {"qp": "0"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_motion_dataset(
    out: Path,
    videos_per_class: int = 24,
    val_per_class: int = 8,
    num_frames: int = 16,
    size: int = 64,
    seed: int = 0,
    directions: Sequence[str] = ("left", "right"),
) -> Tuple[Path, Path]:
    """Write the videos under ``out/<label>/`` and return the ``train.csv`` and ``val.csv`` paths."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    rows: List[Tuple[str, str, str]] = []
    for label in directions:
        (out / label).mkdir(parents=True, exist_ok=True)
        for i in range(videos_per_class + val_per_class):
            path = write_video(out / label / f"{label}_{i:03d}.mp4", motion_clip(label, num_frames, size, rng))
            rows.append((str(path.relative_to(out)), label, "train" if i < videos_per_class else "val"))
    splits = []
    for split in ("train", "val"):
        path = out / f"{split}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            writer.writerows((p, label) for p, label, s in rows if s == split)
        splits.append(path)
    return splits[0], splits[1]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--videos-per-class", type=int, default=24)
    parser.add_argument("--val-per-class", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--directions", nargs="+", default=["left", "right"], choices=list(DIRECTIONS))
    args = parser.parse_args(argv)
    train, val = make_motion_dataset(
        args.out, args.videos_per_class, args.val_per_class, args.frames, args.size, args.seed, args.directions
    )
    print(f"wrote {train} and {val}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
