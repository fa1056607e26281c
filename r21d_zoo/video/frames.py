"""Frame folders as videos (``--decoder frames``): one folder of numbered images per video, the mmaction2 "rawframes"
layout (``img_00001.jpg``) and its common variants (EPIC-Kitchens' ``frame_0000000001.jpg``, ``image_0001.png``,
``000001.jpg``).

A folder holds one video's frames under one name pattern; optical-flow images beside them (``flow_x_*``, ``flow_y_*``,
``x_*``, ``y_*``) are not RGB frames and are ignored. Frame ``n`` is shown from ``(n - first) / fps`` seconds, so a
missing number leaves the previous frame on screen; the video lasts ``(last - first + 1) / fps``. Folders carry no
frame rate, so it comes from an option or the dataset (:data:`DEFAULT_FRAMES_FPS` otherwise). Clips follow the PyAV
reader's sampling, padding and timing rules exactly, so jobs read frame folders unchanged.
"""

import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .._options import DEFAULT_FRAMES_FPS as DEFAULT_FRAMES_FPS, frames_fps_field as frames_fps_field
from .reader import VideoDecodeError, VideoInfo, VideoReader
from .transforms import resize_frames

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
_FRAME = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)$")
_FLOW_PREFIXES = ("flow_x", "flow_y", "x_", "y_", "flow")


def _frame_number(name: str) -> Optional[Tuple[str, int]]:
    """(prefix, number) of an RGB frame's file name, None for anything else (other files, flow images)."""
    stem, ext = os.path.splitext(name)
    match = _FRAME.match(stem) if ext.lower() in FRAME_EXTENSIONS else None
    if match is None or match.group("prefix").lower().startswith(_FLOW_PREFIXES):
        return None
    return match.group("prefix"), int(match.group("number"))


def is_frame_folder(path: Union[str, "os.PathLike[str]"]) -> bool:
    """Whether ``path`` is a folder holding at least one RGB frame image."""
    try:
        with os.scandir(path) as entries:
            return any(_frame_number(e.name) is not None and e.is_file() for e in entries)
    except (NotADirectoryError, FileNotFoundError, PermissionError):
        return False


def walk_videos(
    root: Union[str, "os.PathLike[str]"], extensions: Sequence[str], frame_folders: bool = True
) -> List[Path]:
    """The video files (by extension) and, with ``frame_folders``, the frame folders under ``root`` (``root`` itself
    included), sorted, in one walk: a frame folder's files are not listed twice nor its sub-folders searched."""
    found = []
    for folder, subfolders, files in os.walk(root):
        if frame_folders and any(_frame_number(f) is not None for f in files):
            found.append(Path(folder))
            subfolders[:] = []
            continue
        found.extend(Path(folder, f) for f in files if os.path.splitext(f)[1].lower() in extensions)
    return sorted(found)


def _list_frames(folder: str) -> List[Tuple[int, str]]:
    """(number, path) of the folder's RGB frames, by number; an error when there are none or several patterns."""
    groups: Dict[str, List[Tuple[int, str]]] = {}
    with os.scandir(folder) as entries:
        for e in entries:
            parsed = _frame_number(e.name)
            if parsed is not None:
                groups.setdefault(parsed[0], []).append((parsed[1], e.path))
    if not groups:
        raise VideoDecodeError(
            f"{folder}: a folder with no frame images ({', '.join(FRAME_EXTENSIONS)} named like img_00001.jpg); "
            "extract the frames, or pass the video file"
        )
    if len(groups) > 1:
        patterns = ", ".join(f"{p}*" for p in sorted(groups))
        raise VideoDecodeError(f"{folder}: frames under several name patterns ({patterns}); keep one video per folder")
    frames = sorted(next(iter(groups.values())))
    numbers = [n for n, _ in frames]
    if len(set(numbers)) != len(numbers):
        raise VideoDecodeError(f"{folder}: two frames share a number (e.g. img_1.jpg and img_0001.jpg); rename one")
    return frames


class FrameFolderReader(VideoReader):
    """One frame folder, read like a video. ``resize`` resizes each frame with torch (``interpolation``,
    ``antialias``, rounded back to uint8) as the PyAV reader does; ``frame_size`` (``fast_resize``) resizes with
    antialiased bilinear instead, as a decoder's scaler would."""

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]", bytes],
        resize: Union[int, Tuple[int, int], None] = None,
        frame_size: Union[int, Tuple[int, int], None] = None,
        interpolation: str = "bilinear",
        antialias: bool = False,
        fps: Optional[float] = None,
    ):
        if isinstance(path, (bytes, bytearray, memoryview)):
            raise VideoDecodeError("a frame folder cannot be read from memory; use a video decoder for shards")
        self.path = str(path)
        if not os.path.isdir(self.path):
            what = "does not exist" if not os.path.exists(self.path) else "is a file, not a folder of frames"
            raise VideoDecodeError(f"{self.path}: {what} (the frames decoder reads folders of frame images)")
        self.fps = float(fps or DEFAULT_FRAMES_FPS)
        if not (self.fps > 0 and np.isfinite(self.fps)):
            raise ValueError(f"a frame rate must be above 0, got {fps}")
        if frame_size is not None:
            resize, interpolation, antialias = frame_size, "bilinear", True
        self.resize, self.interpolation, self.antialias = resize, interpolation, antialias
        frames = _list_frames(self.path)
        first = frames[0][0]
        self._times = np.array([(n - first) / self.fps for n, _ in frames], dtype=np.float64)
        self._files = [p for _, p in frames]
        self._cache: Dict[int, torch.Tensor] = {}
        self._size: Optional[Tuple[int, int]] = None
        h, w = self._decode(0).shape[:2]
        self.end = (frames[-1][0] - first + 1) / self.fps
        self.info = VideoInfo(self.path, self.end, self.fps, w, h, 0, 0.0)
        self._size = (h, w)  # every later frame must have it

    def _decode(self, i: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self._files[i]) as image:
                frame = torch.from_numpy(np.array(image.convert("RGB")))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise VideoDecodeError(
                f"{self._files[i]}: cannot decode this frame ({e}); the image is corrupt or not a JPEG/PNG"
            ) from e
        if self._size is not None and self._size != tuple(frame.shape[:2]):
            raise VideoDecodeError(
                f"{self._files[i]}: {frame.shape[1]}x{frame.shape[0]} frame in a "
                f"{self._size[1]}x{self._size[0]} video; every frame of a folder must have one size"
            )
        return frame

    def _frames(self, indices: Sequence[int]) -> torch.Tensor:
        """The frames at ``indices``, resized; decoded ones are kept for the next, overlapping clip."""
        new = sorted({i for i in indices if i not in self._cache})
        if new:
            decoded = torch.stack([self._decode(i) for i in new])
            if self.resize is not None:
                decoded = resize_frames(decoded, self.resize, self.interpolation, self.antialias)
            self._cache.update(zip(new, decoded))
        for i in [i for i in self._cache if i < min(indices)]:  # clips are read in start order
            del self._cache[i]
        return torch.stack([self._cache[i] for i in indices])

    def _read(
        self, start: float, num_frames: int, frame_rate: Optional[float], sampling_stride: int
    ) -> Tuple[torch.Tensor, np.ndarray]:
        n = len(self._times)
        if frame_rate is not None:  # for each target time the latest frame shown then, as PyAV picks them
            eps = 1e-3 / self.fps
            targets = start + np.arange(num_frames) * sampling_stride / frame_rate
            targets = targets[targets < self.end - eps]
            picked = [max(int(np.searchsorted(self._times, t + eps, side="right")) - 1, 0) for t in targets]
        else:  # consecutive frames from the first at or after start
            first = int(np.searchsorted(self._times, start - 0.5 / self.fps, side="left"))
            picked = list(range(first, min(n, first + (num_frames - 1) * sampling_stride + 1), sampling_stride))
        if not picked:
            return torch.empty(0), np.empty(0)
        return self._frames(picked), self._times[picked]

    def _extent(self) -> str:
        return f"the video lasts {self.end:.3f}s"

    def close(self) -> None:
        self._cache = {}
