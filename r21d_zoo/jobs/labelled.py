"""Labelled video datasets for fine-tuning and evaluation, decoded with the clip pipeline of :mod:`r21d_zoo.video`.

Sources: a CSV with ``path,label`` columns (labels as class names or integers; several labels separated by ``|`` or
``;`` make it multi-label), a UCF101-style split list (``class_folder/video [n]`` per line: the class is the parent
folder, a numeric second column is ignored; HMDB51's per-class split files need converting to a CSV), or a folder of
class-named sub-folders. Training draws one random clip per video per epoch from a
seed of (seed, epoch, index), so a resumed or re-sharded run sees the same clips; evaluation decodes N uniformly
spaced clips of every video.
"""

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from ..models import ClipSpec
from ..video import VideoDecodeError, open_video, random_clip, uniform_clips
from ..video.reader import DEFAULT_BACKEND, VIDEO_EXTENSIONS
from .engine import epoch_seed

_logger = logging.getLogger(__name__)
_MULTI_SEPARATORS = ("|", ";")


@dataclass(frozen=True)
class Sample:
    path: str
    labels: Tuple[int, ...]  # one label, or several for multi-label data


@dataclass
class LabelledVideos:
    samples: List[Sample]
    classes: List[str]
    multilabel: bool = False
    source: Optional[str] = None  # the file or folder they were read from

    def __len__(self) -> int:
        return len(self.samples)


def _is_int(s: str) -> bool:
    return s.strip().lstrip("-").isdigit()


def read_labelled(source: Union[str, os.PathLike], classes: Optional[Sequence[str]] = None) -> LabelledVideos:
    """Read a CSV, a split list or a class-folder tree. ``classes`` fixes the label order (pass the training set's
    classes when reading a validation split); otherwise class names are sorted, and integer labels are used as is."""
    src = Path(source)
    if src.is_dir():
        rows = [
            (str(f), f.parent.name)
            for f in sorted(src.rglob("*"))
            if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS and f.parent != src
        ]
        if not rows:
            raise ValueError(f"{src}: no videos in class sub-folders (expected {src}/<class>/<video>)")
    elif src.suffix.lower() == ".csv":
        with open(src, newline="") as f:
            table = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
        header = [c.strip().lower() for c in table[0]]
        if "path" in header and "label" in header:
            p, l = header.index("path"), header.index("label")
            table = table[1:]
        else:
            p, l = 0, 1
        rows = [(r[p].strip(), r[l].strip()) for r in table]
    elif src.is_file():  # UCF101-style list: the class is the parent folder; a numeric 2nd column (UCF's 1-based
        rows = []  # class index, HMDB's train/test flag) is ignored, a non-numeric one is the label
        for line in src.read_text().splitlines():
            parts = line.split()
            if parts:
                named = len(parts) > 1 and not _is_int(parts[1])
                rows.append((parts[0], parts[1] if named else Path(parts[0]).parent.name))
    else:
        raise FileNotFoundError(f"{src}: no such CSV, list or folder")
    rows = [((p if Path(p).is_absolute() or src.is_dir() else str(src.parent / p)), lab) for p, lab in rows]
    multilabel = any(sep in lab for _, lab in rows for sep in _MULTI_SEPARATORS)

    def split(lab: str) -> List[str]:
        for sep in _MULTI_SEPARATORS:
            lab = lab.replace(sep, "|")
        return [x.strip() for x in lab.split("|") if x.strip()]

    names = sorted({x for _, lab in rows for x in split(lab)})
    numeric = all(_is_int(x) for x in names)
    if classes is None:
        if numeric:
            classes = [str(i) for i in range(max(int(x) for x in names) + 1)]
        else:
            classes = names
    index: Dict[str, int] = {c: i for i, c in enumerate(classes)}
    samples = []
    for path, lab in rows:
        labels = []
        for x in split(lab):
            if x not in index:
                raise ValueError(f"{src}: label {x!r} of {path} is not one of the {len(classes)} classes")
            labels.append(index[x])
        samples.append(Sample(path, tuple(labels)))
    return LabelledVideos(samples, list(classes), multilabel, str(src))


class TrainClips(Dataset):
    """(uint8 clip T x H x W x C, label tensor) with a random clip per video per epoch; a video that fails to decode
    is logged and replaced by the next one (at most 10 in a row)."""

    def __init__(self, data: LabelledVideos, spec: ClipSpec, seed: int = 0, backend: str = DEFAULT_BACKEND):
        self.data, self.spec, self.seed, self.epoch, self.backend = data, spec, seed, 0, backend

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        for attempt in range(min(10, len(self.data))):
            i = (index + attempt) % len(self.data)
            sample = self.data.samples[i]
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, i))
            try:
                with open_video(sample.path, self.spec, self.backend) as r:
                    start = random_clip(r.info.duration, self.spec.clip_seconds(r.info.fps), g).start
                    clip = r.read_spec_clip(start, self.spec).frames
                return clip, label_tensor(sample, self.data)
            except VideoDecodeError as e:
                _logger.warning("skipping an unreadable training video: %s", e)
        raise RuntimeError(f"{min(10, len(self.data))} consecutive training videos failed to decode")


class EvalClips(Dataset):
    """(uint8 clips N x T x H x W x C, label tensor, index, error) with N uniformly spaced clips per video. A video
    that fails to decode comes back with an empty clip tensor and its error, so evaluation can count it."""

    def __init__(
        self,
        data: LabelledVideos,
        spec: ClipSpec,
        num_clips: int = 10,
        indices: Optional[List[int]] = None,
        backend: str = DEFAULT_BACKEND,
    ):
        self.data, self.spec, self.num_clips, self.backend = data, spec, num_clips, backend
        self.indices = list(range(len(data))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = self.indices[k]
        sample = self.data.samples[i]
        try:
            with open_video(sample.path, self.spec, self.backend) as r:
                clips = uniform_clips(r.info.duration, self.spec.clip_seconds(r.info.fps), self.num_clips)
                frames = torch.stack([f.frames for _, f in r.iter_clips(clips, self.spec)])
                return frames, label_tensor(sample, self.data), i, ""
        except VideoDecodeError as e:
            return torch.zeros(0, dtype=torch.uint8), label_tensor(sample, self.data), i, str(e)


def label_tensor(sample: Sample, data: LabelledVideos) -> torch.Tensor:
    if data.multilabel:
        target = torch.zeros(len(data.classes))
        target[list(sample.labels)] = 1.0
        return target
    return torch.tensor(sample.labels[0])
