"""Finding the videos a command was given: files, folders (recursive) and ``.txt``/``.csv`` lists, each with the output
name its results are written under; and how many processes load them."""

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Union

from .._errors import InputError
from .._options import default_workers as default_workers
from ..video.frames import walk_videos
from ..video.reader import VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoItem:
    path: str
    name: str  # output name, relative to the output directory, without extension
    start: Optional[float] = None  # a segment of the video, in seconds (None: from its start / to its end)
    end: Optional[float] = None
    frames_fps: Optional[float] = None  # the frame rate of a frame folder, when the dataset says
    annotation: Optional[Dict[str, Any]] = field(default=None, compare=False)  # kept with its results

    @property
    def segment(self) -> bool:
        return self.start is not None or self.end is not None


def discover_videos(
    inputs: Sequence[Union[str, os.PathLike]],
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    frame_folders: bool = False,
) -> List[VideoItem]:
    """Files, directories (searched recursively by extension; names keep the sub-directories) and ``.txt``/``.csv``
    lists (one path per line, or a ``path``/``video`` column; relative paths are taken from the list's folder).
    With ``frame_folders``, a folder of frame images is a video too (named by its path; ``--decoder frames``).
    Sorted by name; two inputs with the same output name are an error."""
    items: List[VideoItem] = []
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for f in walk_videos(p, exts, frame_folders):
                name = p.name if f == p else f.relative_to(p).as_posix() if f.is_dir() else None
                items.append(VideoItem(str(f), name or f.relative_to(p).with_suffix("").as_posix()))
        elif p.suffix.lower() in (".txt", ".csv", ".lst") and p.is_file():
            for entry in _read_list(p):
                q = Path(entry)
                q = q if q.is_absolute() else p.parent / q
                items.append(VideoItem(str(q), q.stem))
        else:  # a video file; a missing one is recorded as a failure when it is processed
            items.append(VideoItem(str(p), p.stem))
    items.sort(key=lambda v: (v.name, v.path))
    seen: Dict[str, str] = {}
    for v in items:
        if v.name in seen and seen[v.name] != v.path:
            raise ValueError(
                f"{seen[v.name]} and {v.path} would both be written as '{v.name}'; pass their parent directory "
                "instead (names then keep sub-folders) or rename one"
            )
        seen[v.name] = v.path
    return list({v.name: v for v in items}.values())


def _read_list(path: Path) -> List[str]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if path.suffix.lower() != ".csv":
        return [ln.strip() for ln in lines]
    rows = list(csv.reader(lines))
    header = [c.strip().lower() for c in rows[0]]
    column = next((header.index(k) for k in ("path", "video", "filename") if k in header), None)
    return [r[column or 0].strip() for r in (rows[1:] if column is not None else rows)]


def read_name_list(path: Optional[str], what: str) -> Optional[Set[str]]:
    """The names (video paths or sample keys) a list file holds, one per line; ``what`` says which and where such a
    file comes from, for the error."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path} cannot be read ({e}); it should be {what}, one per line") from e
    return {line.strip() for line in text.splitlines() if line.strip()}


def resolved(path: Union[str, os.PathLike]) -> str:
    """A video path as video lists compare them: absolute, links resolved."""
    return str(Path(path).resolve())


def read_video_list(path: Optional[str]) -> Optional[Set[str]]:
    """The videos a list file names, one path per line (the ``bad.txt`` of ``r21d-zoo check-videos``), resolved."""
    names = read_name_list(path, "a list of video paths (e.g. the bad.txt of r21d-zoo check-videos)")
    return None if names is None else {resolved(p) for p in names}
