"""Labelled video datasets for fine-tuning and evaluation, decoded with the clip pipeline of :mod:`r21d_zoo.video`.

Sources (one strict reader, :func:`read_labelled`, for every command; the formats of :data:`LABEL_FORMATS`):

- a CSV of ``path,label`` rows. Labels are class names or integers; several labels separated by ``|`` or ``;`` make it
  multi-label. The first row is a header when it names a path column (``path``, ``video``, ``filename``, ``file``,
  ``video_path``) and a label column (``label``, ``labels``, ``class``, ``category``, ``target``, ``action``), or when
  ``path_column``/``label_column`` are given (then they select the columns by name); without a header the first two
  columns are path and label. A first row that names only one of the columns, or whose first cell is not a video
  file while the next row's is, is an error (an unrecognised header), never a sample.
- a UCF101-style split list (``class_folder/video [n]`` per line: the class is the parent folder, a numeric second
  column is ignored; HMDB51's per-class split files need converting to a CSV);
- a folder of class-named sub-folders.

Relative paths are taken from the list's folder. Errors name the file and line. Training draws one random clip per
video per epoch from a seed of (seed, epoch, index), so a resumed or re-sharded run sees the same clips; evaluation
decodes N uniformly spaced clips of every video.
"""

import csv
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from ..models import ClipSpec
from ..video import VideoDecodeError, open_video, random_clip, uniform_clips
from ..video.reader import DEFAULT_DECODER, VIDEO_EXTENSIONS
from .._errors import InputError
from .seeds import epoch_seed

_logger = logging.getLogger(__name__)
_MULTI_SEPARATORS = ("|", ";")
PATH_COLUMNS = ("path", "video", "filename", "file", "video_path")
Row = Tuple[int, str, str]  # (line, path, label)
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "action")


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
    missing: List[str] = field(default_factory=list)  # listed videos that do not exist (kept; they fail when read)
    excluded: Dict[str, int] = field(default_factory=dict)  # rows left out for a label outside ``classes``

    def __len__(self) -> int:
        return len(self.samples)

    def fingerprint(self) -> str:
        """Which videos, labels and classes these are, in one short line (a run records what it trained on)."""
        h = hashlib.sha256(json.dumps(self.classes).encode())
        for sample in self.samples:
            h.update(json.dumps([sample.path, list(sample.labels)]).encode())
        name = Path(self.source).name if self.source else "in memory"
        return f"{name} ({len(self)} videos, {len(self.classes)} classes, sha256 {h.hexdigest()[:12]})"

    def describe(self) -> str:
        """What was read, in one line (logged before any work starts)."""
        counts = Counter(label for s in self.samples for label in s.labels)
        present = [f"{c} {counts[i]}" for i, c in enumerate(self.classes) if counts[i]]
        shown = ", ".join(present[:10]) + (", ..." if len(present) > 10 else "")
        text = (
            f"{self.source}: {len(self)} videos, {len(present)} of {len(self.classes)} classes present ({shown})"
            f"{', multi-label' if self.multilabel else ''}"
        )
        if self.missing:
            text += f"; {len(self.missing)} missing file(s), e.g. {self.missing[0]}"
        if self.excluded:
            text += f"; {sum(self.excluded.values())} row(s) excluded for labels outside the classes: {self.excluded}"
        return text


def _is_int(s: str) -> bool:
    return s.strip().lstrip("-").isdigit()


def _is_video(cell: str) -> bool:
    return Path(cell.strip()).suffix.lower() in VIDEO_EXTENSIONS


def _csv_rows(src: Path, path_column: Optional[str], label_column: Optional[str]) -> List[Row]:
    """(line, path, label) of every data row, with the header handled as the module docstring says."""
    with open(src, newline="") as f:
        table = [
            (n, [c.strip() for c in r])
            for n, r in enumerate(csv.reader(f), 1)
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")
        ]
    if not table:
        raise InputError(f"{src}: no rows; expected 'path,label' lines (a header row is optional)")
    first = [c.lower() for c in table[0][1]]

    def find(wanted: Optional[str], known: Sequence[str], what: str) -> Optional[int]:
        names = [wanted.lower()] if wanted else list(known)
        index = next((first.index(n) for n in names if n in first), None)
        if index is None and wanted:
            raise InputError(f"{src}: no {what} column {wanted!r} in the header {table[0][1]}")
        return index

    p, lab = find(path_column, PATH_COLUMNS, "path"), find(label_column, LABEL_COLUMNS, "label")
    unlike_the_rest = len(table) > 1 and not _is_video(table[0][1][0]) and _is_video(table[1][1][0])
    if p is not None and lab is not None:
        table = table[1:]
    elif path_column or label_column or p is not None or lab is not None or unlike_the_rest:
        raise InputError(
            f"{src}:{table[0][0]}: the first row {table[0][1]} is neither 'path,label' data nor a header naming a "
            f"path column ({', '.join(PATH_COLUMNS)}) and a label column ({', '.join(LABEL_COLUMNS)}); name the "
            f"columns with --path-column / --label-column"
        )
    else:
        p, lab = 0, 1
    rows = []
    for n, r in table:
        if len(r) <= max(p, lab):
            raise InputError(f"{src}:{n}: expected a path and a label (columns {p + 1} and {lab + 1}), got {r}")
        if not r[p] or not r[lab]:
            raise InputError(f"{src}:{n}: empty {'path' if not r[p] else 'label'} in {r}")
        rows.append((n, r[p], r[lab]))
    if not rows:
        raise InputError(f"{src}: a header but no data rows")
    return rows


def _folder_rows(src: Path, path_column: Optional[str], label_column: Optional[str]) -> List[Row]:
    rows = [
        (0, str(f), f.parent.name)
        for f in sorted(src.rglob("*"))
        if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS and f.parent != src
    ]
    if not rows:
        raise InputError(f"{src}: no videos in class sub-folders (expected {src}/<class>/<video>)")
    return rows


def _list_rows(src: Path, path_column: Optional[str], label_column: Optional[str]) -> List[Row]:
    """UCF101-style list: the class is the parent folder; a numeric 2nd column (UCF's 1-based class index, HMDB's
    train/test flag) is ignored, a non-numeric one is the label."""
    rows = []
    for n, line in enumerate(src.read_text().splitlines(), 1):
        parts = line.split()
        if parts and not parts[0].startswith("#"):
            named = len(parts) > 1 and not _is_int(parts[1])
            rows.append((n, parts[0], parts[1] if named else Path(parts[0]).parent.name))
    if not rows:
        raise InputError(f"{src}: no rows; expected 'class_folder/video' lines")
    return rows


@dataclass(frozen=True)
class LabelFormat:
    """A way labelled videos are given: which sources it reads, and their (line, path, label) rows (paths as written,
    relative ones from the source's folder; line 0 when there is no line)."""

    name: str
    matches: Callable[[Path], bool]
    rows: Callable[[Path, Optional[str], Optional[str]], List[Row]]  # (source, path_column, label_column)


# Tried in order: the first that matches a source reads it. A new dataset format registers here.
LABEL_FORMATS: Dict[str, LabelFormat] = {
    f.name: f
    for f in (
        LabelFormat("folders", Path.is_dir, _folder_rows),
        LabelFormat("csv", lambda p: p.is_file() and p.suffix.lower() == ".csv", _csv_rows),
        LabelFormat("list", Path.is_file, _list_rows),
    )
}


def read_labelled(
    source: Union[str, os.PathLike],
    classes: Optional[Sequence[str]] = None,
    path_column: Optional[str] = None,
    label_column: Optional[str] = None,
    exclude_unknown: bool = False,
    format: Optional[str] = None,
) -> LabelledVideos:
    """Read labelled videos in any of :data:`LABEL_FORMATS` (see the module docstring; ``format`` names one, by
    default the first that matches the source).

    ``classes`` fixes the label space (a model's classes, or the training set's for a validation split): labels are
    mapped onto it by name, or by index when they are integers that are not names; a label outside it is an error
    naming it, or with ``exclude_unknown`` the row is left out and counted in ``excluded``. Without ``classes``, class
    names are sorted and integer labels are used as indices.
    """
    src = Path(source)
    if format is not None and format not in LABEL_FORMATS:
        raise InputError(f"unknown label format {format!r}; known: {', '.join(LABEL_FORMATS)}")
    if not src.exists():
        raise InputError(f"{src}: no such CSV, list or folder")
    reader = LABEL_FORMATS[format] if format else next((f for f in LABEL_FORMATS.values() if f.matches(src)), None)
    if reader is None:
        raise InputError(f"{src}: not a labelled-video source ({', '.join(LABEL_FORMATS)})")
    rows = reader.rows(src, path_column, label_column)
    rows = [(n, p if Path(p).is_absolute() or src.is_dir() else str(src.parent / p), lab) for n, p, lab in rows]
    multilabel = any(sep in lab for _, _, lab in rows for sep in _MULTI_SEPARATORS)

    def split(lab: str) -> List[str]:
        for sep in _MULTI_SEPARATORS:
            lab = lab.replace(sep, "|")
        return [x.strip() for x in lab.split("|") if x.strip()]

    if classes is None:
        names = sorted({x for _, _, lab in rows for x in split(lab)})
        classes = [str(i) for i in range(max(int(x) for x in names) + 1)] if all(map(_is_int, names)) else names
    classes = [str(c) for c in classes]
    index: Dict[str, int] = {c: i for i, c in enumerate(classes)}
    samples, excluded = [], Counter()
    for n, path, lab in rows:
        labels, unknown = [], []
        for x in split(lab):
            i = index.get(x, int(x) if _is_int(x) and 0 <= int(x) < len(classes) else None)
            (unknown.append(x) if i is None else labels.append(i))
        if unknown and exclude_unknown:
            excluded.update(unknown)
            continue
        if unknown:
            where = f"{src}:{n}" if n else str(path)
            shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
            raise InputError(
                f"{where}: label {unknown[0]!r} is not one of the {len(classes)} classes ({shown}); fix the label, "
                f"or leave such rows out with --exclude-unknown"
            )
        samples.append(Sample(path, tuple(labels)))
    missing = [s.path for s in samples if not Path(s.path).exists()]
    if samples and len(missing) == len(samples):
        raise InputError(
            f"{src}: none of the {len(samples)} listed videos exist (first: {missing[0]}); relative paths are read "
            f"from the list's folder"
        )
    data = LabelledVideos(samples, classes, multilabel, str(src), missing, dict(excluded))
    if not samples:
        raise InputError(f"{src}: no videos left ({data.describe()})")
    return data


@dataclass
class LabelOptions:
    """How a label file is read: which columns (by header name), and what happens to labels outside the classes."""

    path_column: Optional[str] = field(default=None, metadata=dict(help="CSV header name of the path column"))
    label_column: Optional[str] = field(default=None, metadata=dict(help="CSV header name of the label column"))
    exclude_unknown: bool = field(
        default=False, metadata=dict(help="leave out (and count) rows whose label is not a class, instead of failing")
    )

    def read(self, source: Union[str, os.PathLike], classes: Optional[Sequence[str]] = None) -> LabelledVideos:
        data = read_labelled(source, classes, self.path_column, self.label_column, self.exclude_unknown)
        _logger.info("read %s", data.describe())
        return data


class TrainClips(Dataset):
    """(uint8 clip T x H x W x C, label tensor) with a random clip per video per epoch; a video that fails to decode
    is logged and replaced by the next one (at most 10 in a row)."""

    def __init__(self, data: LabelledVideos, spec: ClipSpec, seed: int = 0, decoder: str = DEFAULT_DECODER):
        self.data, self.spec, self.seed, self.epoch, self.decoder = data, spec, seed, 0, decoder

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def fingerprint(self) -> str:
        return self.data.fingerprint()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        for attempt in range(min(10, len(self.data))):
            i = (index + attempt) % len(self.data)
            sample = self.data.samples[i]
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, i))
            try:
                with open_video(sample.path, self.spec, self.decoder) as r:
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
        decoder: str = DEFAULT_DECODER,
    ):
        self.data, self.spec, self.num_clips, self.decoder = data, spec, num_clips, decoder
        self.indices = list(range(len(data))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = self.indices[k]
        sample = self.data.samples[i]
        try:
            with open_video(sample.path, self.spec, self.decoder) as r:
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
