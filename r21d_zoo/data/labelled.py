"""Labelled video datasets for fine-tuning and evaluation, decoded with the clip pipeline of :mod:`r21d_zoo.video`.

Sources (one strict reader, :func:`read_labelled`, for every command; the formats of :data:`LABEL_FORMATS`):

- a CSV of ``path,label`` rows. Labels are class names or integers; several labels separated by ``|`` or ``;`` make it
  multi-label. The first row is a header when it names a path column (``path``, ``video``, ``filename``, ``file``,
  ``video_path``) and a label column (``label``, ``labels``, ``class``, ``category``, ``target``, ``action``), or when
  ``path_column``/``label_column`` are given (then they select the columns by name); without a header the first two
  columns are path and label. A first row that names only one of the columns, or whose first cell is not a video
  file while the next row's is, is an error (an unrecognised header), never a sample.
  A header naming segment columns (``start``/``end``, ``start_time``/``end_time`` ...) makes each row a segment of
  its video, in seconds.
- a UCF101-style split list (``class_folder/video [n]`` per line: the class is the parent folder, a numeric second
  column is ignored);
- a folder of class-named sub-folders;
- the official annotations of Kinetics-400/600/700 (CSV), HMDB51 (the folder of per-class split files, ``split``),
  Something-Something v2 (``train.json``/``validation.json`` beside ``labels.json``) and EPIC-Kitchens-100 (action
  CSVs: segments of long videos, labelled by verb or noun), each with its videos under ``video_root``.

A video may also be a frame folder (:mod:`r21d_zoo.video.frames`: ``<class>/<video>/img_00001.jpg`` in place of
``<class>/<video>.mp4``, ``<youtube_id>_<start>_<end>/`` for Kinetics, ``<participant>/rgb_frames/<video_id>/`` for
EPIC-Kitchens); its frame rate is ``frames_fps`` when given, else the dataset's (:attr:`LabelFormat.frames_fps`;
EPIC-Kitchens: 60 for EPIC-55 videos, 50 for the extension's, as their frames were extracted).

Relative video paths are taken from ``video_root`` (itself relative to the current folder; default: the list's
folder), and every sample's path is absolute, so a relative annotation path or root reads the same videos. Errors name
the file and line. Training draws one random clip per video per epoch from a seed of (seed, epoch, index), so a
resumed or re-sharded run sees the same clips; evaluation decodes N uniformly spaced clips of every video. A segment
is sampled like a whole video: training clips start at random inside it and evaluation clips are spread over it; a
clip longer than what is left of the segment is padded (repeating its last frame), never filled with the next action's
frames."""

import csv
import hashlib
import json
import logging
import os
import re
from collections import Counter
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

import torch
from torch.utils.data import Dataset

from ..models import ClipSpec, load_label_names
from ..video import VideoDecodeError, open_video, random_clip, uniform_clips
from ..video.frames import walk_videos
from ..video.reader import DEFAULT_DECODER, VIDEO_EXTENSIONS
from .._errors import InputError
from .inputs import VideoItem, resolved
from .seeds import epoch_seed

_logger = logging.getLogger(__name__)
_MULTI_SEPARATORS = ("|", ";")
PATH_COLUMNS = ("path", "video", "filename", "file", "video_path")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "action")
START_COLUMNS = ("start", "start_time", "start_sec", "t_start", "segment_start")
END_COLUMNS = ("end", "end_time", "end_sec", "t_end", "segment_end")


@dataclass(frozen=True)
class Sample:
    path: str
    labels: Tuple[int, ...]  # one label, or several for multi-label data
    start: Optional[float] = None  # a segment inside the video, in seconds (None: from its start / to its end)
    end: Optional[float] = None
    frames_fps: Optional[float] = None  # the dataset's frame rate for this video's frame folder, when it has one
    key: Optional[str] = None  # the dataset's own id of the sample (EPIC's narration_id, Kinetics' clip name, ...)
    annotation: Optional[Dict[str, str]] = field(default=None, compare=False)  # what else the annotation says of it

    @property
    def segment(self) -> bool:
        return self.start is not None or self.end is not None


@dataclass
class LabelledVideos:
    samples: List[Sample]
    classes: List[str]
    multilabel: bool = False
    source: Optional[str] = None  # the file or folder they were read from
    missing: List[str] = field(default_factory=list)  # listed videos that do not exist (kept; they fail when read)
    excluded: Dict[str, int] = field(default_factory=dict)  # rows left out for a label outside ``classes``
    left_out: List[str] = field(default_factory=list)  # videos an exclusion list named (e.g. check-videos' bad.txt)
    format: Optional[str] = None  # the LABEL_FORMATS entry that read them
    frames_fps: Optional[float] = None  # frame rate of frame folders, overriding the dataset's (--frames-fps)
    part: Optional[str] = None  # the part of a split folder read (HMDB51: "split 1, its train videos")

    def present(self) -> "LabelledVideos":
        """These videos without the missing ones (a training set samples only what exists, rather than stand-ins)."""
        gone = set(self.missing)
        return dataclasses.replace(self, samples=[s for s in self.samples if s.path not in gone])

    def classes_without_videos(self) -> List[str]:
        """Classes no sample is labelled with: a model trained on these videos cannot learn them."""
        seen = {label for s in self.samples for label in s.labels}
        return [c for i, c in enumerate(self.classes) if i not in seen]

    def fps_of(self, sample: Sample) -> Optional[float]:
        """The frame rate to read ``sample``'s frame folder at (None: the frames decoder's default)."""
        return self.frames_fps or sample.frames_fps

    def __len__(self) -> int:
        return len(self.samples)

    def fingerprint(self) -> str:
        """Which videos, labels and classes these are, in one short line (a run records what it trained on)."""
        h = hashlib.sha256(json.dumps(self.classes).encode())
        for sample in self.samples:
            segment = [sample.start, sample.end] if sample.segment else []
            h.update(json.dumps([sample.path, list(sample.labels), *segment]).encode())
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
        if self.left_out:
            text += f"; {len(self.left_out)} video(s) left out by --exclude, e.g. {self.left_out[0]}"
        if self.part:
            text += f"; {self.part} (--split chooses another split)"
        return text


def _is_int(s: str) -> bool:
    return s.strip().lstrip("-").isdigit()


def _is_video(cell: str) -> bool:
    return Path(cell.strip()).suffix.lower() in VIDEO_EXTENSIONS


class Row(NamedTuple):
    """One sample as a format reads it: where it was written (``file`` and 1-based ``line``; 0: no line), the video
    path as written (relative ones are taken from the source's folder), the label text, and an optional segment."""

    line: int
    path: str
    label: str
    start: Optional[float] = None
    end: Optional[float] = None
    file: Optional[str] = None  # the file the line is in, when not the source itself (per-class split files)
    frames_fps: Optional[float] = None  # the rate this video's frames were extracted at, when the dataset says
    key: Optional[str] = None  # the dataset's id of the sample
    annotation: Optional[Dict[str, str]] = None  # other fields worth keeping with results (EPIC's verb and noun)


@dataclass
class ReadOptions:
    """What a format may need besides the source: column names, the video folder, the split and its part."""

    path_column: Optional[str] = None
    label_column: Optional[str] = None
    video_root: Optional[str] = None
    split: int = 1
    subset: str = "train"  # which part of a split file: "train" or "test"

    def root(self, src: Path) -> Path:
        """The absolute folder relative video paths are read from: ``--video-root`` (itself relative to the current
        folder), else the annotation file's folder (or the source folder itself)."""
        return (Path(self.video_root) if self.video_root else (src if src.is_dir() else src.parent)).absolute()


Table = Tuple[List[Row], Optional[List[str]]]  # the rows, and the class order when the format defines one


def _table(src: Path) -> List[Tuple[int, List[str]]]:
    """(line, cells) of the non-empty, non-comment rows of a CSV."""
    with open(src, newline="", encoding="utf-8") as f:
        return [
            (n, [c.strip() for c in r])
            for n, r in enumerate(csv.reader(f), 1)
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")
        ]


def _header(src: Path) -> List[str]:
    if not (src.is_file() and src.suffix.lower() == ".csv"):
        return []
    with open(src, newline="", encoding="utf-8") as f:
        return [c.strip().lower() for c in next(csv.reader(f), [])]


def _seconds(text: str, where: str, what: str) -> float:
    """Seconds from ``12.5`` or ``HH:MM:SS.ff`` (EPIC-Kitchens' timestamps)."""
    try:
        parts = [float(p) for p in text.strip().split(":")]
        if len(parts) > 3 or any(p < 0 for p in parts):
            raise ValueError
    except ValueError:
        raise InputError(f"{where}: {what} {text!r} is not a time (seconds, or HH:MM:SS.ff)") from None
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def _segment(start: str, end: str, where: str) -> Tuple[float, float]:
    s, e = _seconds(start, where, "start"), _seconds(end, where, "end")
    if e <= s:
        raise InputError(f"{where}: the segment ends ({end}) before it starts ({start}); fix the times")
    return s, e


def _csv_rows(src: Path, opts: ReadOptions) -> Table:
    """(line, path, label[, start, end]) of every data row, with the header handled as the module docstring says."""
    table = _table(src)
    if not table:
        raise InputError(f"{src}: no rows; expected 'path,label' lines (a header row is optional)")
    first = [c.lower() for c in table[0][1]]

    def find(wanted: Optional[str], known: Sequence[str], what: str) -> Optional[int]:
        names = [wanted.lower()] if wanted else list(known)
        index = next((first.index(n) for n in names if n in first), None)
        if index is None and wanted:
            raise InputError(f"{src}: no {what} column {wanted!r} in the header {table[0][1]}")
        return index

    p, lab = find(opts.path_column, PATH_COLUMNS, "path"), find(opts.label_column, LABEL_COLUMNS, "label")
    start, end = find(None, START_COLUMNS, "start"), find(None, END_COLUMNS, "end")
    unlike_the_rest = len(table) > 1 and not _is_video(table[0][1][0]) and _is_video(table[1][1][0])
    if p is not None and lab is not None:
        table = table[1:]
        if (start is None) != (end is None):
            raise InputError(
                f"{src}: the header names a segment {'start' if end is None else 'end'} column but no "
                f"{'end' if end is None else 'start'} ({', '.join(END_COLUMNS if end is None else START_COLUMNS)})"
            )
    elif opts.path_column or opts.label_column or p is not None or lab is not None or unlike_the_rest:
        raise InputError(
            f"{src}:{table[0][0]}: the first row {table[0][1]} is neither 'path,label' data nor a header naming a "
            f"path column ({', '.join(PATH_COLUMNS)}) and a label column ({', '.join(LABEL_COLUMNS)}); name the "
            f"columns with --path-column / --label-column"
        )
    else:
        p, lab, start, end = 0, 1, None, None
    rows = []
    for n, r in table:
        needed = max(i for i in (p, lab, start, end) if i is not None)
        if len(r) <= needed:
            wanted = "a path, a label, a start and an end" if start is not None else "a path and a label"
            columns = ", ".join(str(i + 1) for i in (p, lab, start, end) if i is not None)
            raise InputError(f"{src}:{n}: expected {wanted} (columns {columns}), got {r}")
        if not r[p] or not r[lab]:
            raise InputError(f"{src}:{n}: empty {'path' if not r[p] else 'label'} in {r}")
        segment = _segment(r[start], r[end], f"{src}:{n}") if start is not None and end is not None else (None, None)
        rows.append(Row(n, r[p], r[lab], *segment))
    if not rows:
        raise InputError(f"{src}: a header but no data rows")
    return rows, None


def _folder_rows(src: Path, opts: ReadOptions) -> Table:
    src = src.absolute()
    rows = [Row(0, str(f), f.parent.name) for f in walk_videos(src, VIDEO_EXTENSIONS) if f.parent != src]
    if not rows:
        raise InputError(
            f"{src}: no videos in class sub-folders (expected {src}/<class>/<video> files or frame folders)"
        )
    return rows, None


def _list_rows(src: Path, opts: ReadOptions) -> Table:
    """UCF101-style list: the class is the parent folder; a numeric 2nd column (UCF's 1-based class index) is
    ignored, a non-numeric one is the label."""
    rows = []
    for n, line in enumerate(src.read_text().splitlines(), 1):
        parts = line.split()
        if parts and not parts[0].startswith("#"):
            named = len(parts) > 1 and not _is_int(parts[1])
            rows.append(Row(n, parts[0], parts[1] if named else Path(parts[0]).parent.name))
    if not rows:
        raise InputError(f"{src}: no rows; expected 'class_folder/video' lines")
    return rows, None


def _videos_by_stem(root: Path) -> Dict[str, List[Path]]:
    """Every video under ``root`` (files, and frame folders after them) by name without extension: one walk,
    whatever the layout."""
    if not root.is_dir():
        raise InputError(f"the video folder {root} does not exist; give it with --video-root")
    found: Dict[str, List[Path]] = {}
    for f in sorted(walk_videos(root, VIDEO_EXTENSIONS), key=lambda f: (f.is_dir(), str(f))):
        found.setdefault(f.stem if f.is_file() else f.name, []).append(f)
    return found


def _prefer(paths: List[Path], *folders: str) -> Path:
    """The path with the most of ``folders`` among its parent folders (a Kinetics label or split folder)."""
    return max(paths, key=lambda p: sum(f in p.parts for f in folders if f))


KINETICS_COLUMNS = ("youtube_id", "time_start", "time_end")


def _records(src: Path) -> Tuple[List[str], List[Tuple[int, Dict[str, str]]]]:
    """An annotation CSV with a header: its column names (lower case), and every data row as (line, column ->
    value), each with every column (else an error naming the line)."""
    table = _table(src)
    header = [c.lower() for c in table[0][1]]
    records = []
    for n, r in table[1:]:
        if len(r) < len(header):
            raise InputError(f"{src}:{n}: expected {len(header)} columns ({','.join(header)}), got {r}")
        records.append((n, dict(zip(header, r))))
    return header, records


def _kinetics_rows(src: Path, opts: ReadOptions) -> Table:
    """Kinetics-400/600/700 annotations, ``label,youtube_id,time_start,time_end,split[,is_cc]``: each row's video is
    the trimmed clip ``<youtube_id>_<start:06d>_<end:06d>.*`` anywhere under the video folder (``<split>/<label>/``,
    ``<label>/`` or flat), else the full ``<youtube_id>.*`` with the segment from the times; one that is in neither
    place is listed where the trimmed clip would be, and counted missing."""
    header, records = _records(src)
    if "label" not in header:
        raise InputError(f"{src}: no label column (the Kinetics test annotations have none; use train or validate)")
    root = opts.root(src)
    videos = _videos_by_stem(root)
    rows = []
    for n, r in records:
        where = f"{src}:{n}"
        label, youtube_id = r["label"], r["youtube_id"]
        start, end = _segment(r["time_start"], r["time_end"], where)
        split = r.get("split", "")
        if not label:
            raise InputError(f"{where}: no label; Kinetics test rows cannot be trained or scored")
        trimmed = f"{youtube_id}_{int(start):06d}_{int(end):06d}"
        folders = (split, label, label.replace(" ", "_"))
        if trimmed in videos:
            rows.append(Row(n, str(_prefer(videos[trimmed], *folders)), label, key=trimmed))
        elif youtube_id in videos:
            rows.append(Row(n, str(_prefer(videos[youtube_id], *folders)), label, start, end, key=trimmed))
        else:
            rows.append(Row(n, str(root / split / label / f"{trimmed}.mp4"), label, key=trimmed))
    if not rows:
        raise InputError(f"{src}: a header but no data rows")
    labels = {row.label for row in rows}
    kinetics400 = list(load_label_names("kinetics400"))
    return rows, kinetics400 if labels <= set(kinetics400) and len(labels) > len(kinetics400) // 2 else None


HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d)\.txt$")
HMDB_FLAGS = {"train": ("1",), "test": ("2",), "all": ("0", "1", "2")}  # 0: in neither part of the split


def _is_hmdb(p: Path) -> bool:
    return p.is_dir() and any(HMDB_SPLIT.match(f.name) for f in p.glob("*_test_split*.txt"))


def _hmdb_rows(src: Path, opts: ReadOptions) -> Table:
    """HMDB51's per-class split files (``<class>_test_split<N>.txt``: ``<video> <flag>`` lines, 1 train, 2 test, 0
    neither); videos are ``<video root>/<class>/<video>`` (default root: the split folder's parent)."""
    files = sorted(f for f in src.glob(f"*_test_split{opts.split}.txt") if HMDB_SPLIT.match(f.name))
    if not files:
        have = sorted({m.group("split") for f in src.glob("*.txt") if (m := HMDB_SPLIT.match(f.name))})
        raise InputError(f"{src}: no split {opts.split} files (*_test_split{opts.split}.txt); splits here: {have}")
    root = Path(opts.video_root).absolute() if opts.video_root else src.absolute().parent
    flag, rows = HMDB_FLAGS[opts.subset], []
    for f in files:
        cls = HMDB_SPLIT.match(f.name).group("cls")
        for n, line in enumerate(f.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise InputError(f"{f}:{n}: expected '<video> <0|1|2>', got {line.strip()!r}")
            if parts[1] in flag:
                rows.append(Row(n, str(root / cls / parts[0]), cls, file=str(f)))
    if not rows:
        raise InputError(f"{src}: split {opts.split} lists no {opts.subset} videos")
    return rows, sorted(HMDB_SPLIT.match(f.name).group("cls") for f in files)


def _is_ssv2(p: Path) -> bool:
    return (
        p.is_file() and p.suffix.lower() == ".json" and p.name != "labels.json" and (p.parent / "labels.json").exists()
    )


def _ssv2_rows(src: Path, opts: ReadOptions) -> Table:
    """Something-Something v2: ``labels.json`` (template -> class index) beside ``train.json``/``validation.json``
    (``{"id", "template", ...}`` items; the label is the template without its brackets); videos ``<id>.webm``."""
    try:
        classes = json.loads((src.parent / "labels.json").read_text(encoding="utf-8"))
        items = json.loads(src.read_text(encoding="utf-8"))
        order = sorted(classes, key=lambda k: int(classes[k]))
    except (ValueError, TypeError, AttributeError) as e:
        raise InputError(f"{src}: not Something-Something v2 annotations with a labels.json beside them ({e})")
    if not isinstance(items, list):
        raise InputError(f"{src}: expected a list of {{'id', 'template'}} objects")
    videos = _videos_by_stem(opts.root(src))
    rows = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or "id" not in item or "template" not in item:
            raise InputError(f"{src}: item {n} has no 'id' and 'template' (the test split has no labels): {item}")
        vid = str(item["id"])
        path = videos[vid][0] if vid in videos else opts.root(src) / f"{vid}.webm"
        template = item["template"].replace("[", "").replace("]", "")
        rows.append(Row(n, str(path), template, key=vid, annotation={"label": str(item.get("label", template))}))
    return rows, order


EPIC_COLUMNS = ("narration_id", "video_id", "start_timestamp", "stop_timestamp", "verb", "verb_class")


EPIC_EXTENSION_VIDEO = re.compile(r"^P\d+_1\d\d$")  # PXX_1YY: the EPIC-100 extension; PXX_YY: EPIC-55


def _epic_frames_fps(video_id: str) -> float:
    """The rate EPIC-Kitchens' rgb_frames were extracted at: 50 for the extension's videos, 60 for EPIC-55's."""
    return 50.0 if EPIC_EXTENSION_VIDEO.match(video_id) else 60.0


def _epic_rows(src: Path, opts: ReadOptions) -> Table:
    """EPIC-Kitchens-100 action annotations: each narration is a segment (``start_timestamp``/``stop_timestamp``) of
    the long video ``<video_id>.*`` found under the video folder (``<participant>/videos/``, ``<participant>/`` or
    flat); the label is its ``verb`` (or ``--label-column noun``), classes in ``verb_class``/``noun_class`` order."""
    target = (opts.label_column or "verb").lower()
    if target not in ("verb", "noun"):
        raise InputError(f"{src}: EPIC-Kitchens labels are 'verb' or 'noun' (--label-column), not {target!r}")
    header, records = _records(src)
    if f"{target}_class" not in header:
        raise InputError(f"{src}: no {target} and {target}_class columns (the EPIC test annotations have none)")
    root = opts.root(src)
    videos = _videos_by_stem(root)
    rows, names = [], {}
    for n, r in records:
        where = f"{src}:{n}"
        label, index, video = r[target], r[f"{target}_class"], r["video_id"]
        if not _is_int(index):
            raise InputError(f"{where}: {target}_class {index!r} is not a class index")
        names.setdefault(int(index), label)
        start, end = _segment(r["start_timestamp"], r["stop_timestamp"], where)
        participant = r.get("participant_id", "")
        path = _prefer(videos[video], participant, "videos") if video in videos else root / participant / f"{video}.MP4"
        action = {k: r[k] for k in ("verb", "verb_class", "noun", "noun_class") if k in r}  # the action pair
        key = r.get("narration_id")
        rows.append(Row(n, str(path), label, start, end, None, _epic_frames_fps(video), key, action))
    order = [names.get(i, f"{target}_{i}") for i in range(max(names) + 1)]
    return rows, order


@dataclass(frozen=True)
class LabelFormat:
    """A way labelled videos are given: which sources it reads, and their rows (with the class order, when the format
    defines one)."""

    name: str
    matches: Callable[[Path], bool]
    rows: Callable[[Path, ReadOptions], Table]
    example: str  # what the source looks like, for the README's table and errors
    frames_fps: Optional[float] = None  # the rate the dataset's frame folders are usually extracted at (its videos')


def _csv_with(columns: Sequence[str]) -> Callable[[Path], bool]:
    return lambda p: set(columns) <= set(_header(p))


# Tried in order: the first that matches a source reads it; --label-format names one. A new dataset format is one
# rows function registered here (and a line in the README's table).
LABEL_FORMATS: Dict[str, LabelFormat] = {
    f.name: f
    for f in (
        LabelFormat("kinetics", _csv_with(KINETICS_COLUMNS), _kinetics_rows, "validate.csv (label,youtube_id,...)"),
        LabelFormat("epic", _csv_with(EPIC_COLUMNS), _epic_rows, "EPIC_100_train.csv"),
        LabelFormat("ssv2", _is_ssv2, _ssv2_rows, "train.json beside labels.json", frames_fps=12.0),
        LabelFormat("hmdb51", _is_hmdb, _hmdb_rows, "testTrainMulti_7030_splits/ (with --split N)", frames_fps=30.0),
        LabelFormat("folders", Path.is_dir, _folder_rows, "root/<class>/<video>"),
        LabelFormat("csv", lambda p: p.is_file() and p.suffix.lower() == ".csv", _csv_rows, "path,label[,start,end]"),
        LabelFormat("list", Path.is_file, _list_rows, "trainlist01.txt (UCF101)", frames_fps=25.0),
    )
}


def read_labelled(
    source: Union[str, os.PathLike],
    classes: Optional[Sequence[str]] = None,
    path_column: Optional[str] = None,
    label_column: Optional[str] = None,
    exclude_unknown: bool = False,
    label_format: Optional[str] = None,
    video_root: Optional[str] = None,
    split: int = 1,
    subset: str = "train",
    exclude: Optional[Set[str]] = None,
    frames_fps: Optional[float] = None,
) -> LabelledVideos:
    """Read labelled videos in any of :data:`LABEL_FORMATS` (see the module docstring; ``label_format`` names one, by
    default the first that matches the source). ``video_root``: where the videos of an annotation file are (default:
    its folder; relative paths in a list or CSV are taken from it); ``split`` and ``subset`` (``"train"``, ``"test"``
    or ``"all"``): the part of a split file (HMDB51) to read; ``exclude``: videos to leave out (listed in ``left_out``),
    as :func:`~r21d_zoo.data.inputs.read_video_list` gives them (e.g. from the ``bad.txt`` of ``check-videos``);
    ``frames_fps``: the frame rate of frame folders, in place of the dataset's.

    ``classes`` fixes the label space (a model's classes, or the training set's for a validation split): labels are
    mapped onto it by name, or by index when they are integers that are not names; a label outside it is an error
    naming it, or with ``exclude_unknown`` the row is left out and counted in ``excluded``. Without ``classes``, the
    format's class order is used (Kinetics-400 labels in the shipped order, SSv2's labels.json, EPIC's class
    indices, HMDB51's class files), else class names are sorted and integer labels are used as indices.
    """
    src = Path(source)
    if label_format is not None and label_format not in LABEL_FORMATS:
        raise InputError(f"unknown label format {label_format!r}; known: {', '.join(LABEL_FORMATS)}")
    if subset not in HMDB_FLAGS:
        raise ValueError(f"subset must be one of {', '.join(HMDB_FLAGS)}, got {subset!r}")
    if not src.exists():
        raise InputError(f"{src}: no such annotation file, list or folder")
    reader = (
        LABEL_FORMATS[label_format]
        if label_format
        else next((f for f in LABEL_FORMATS.values() if f.matches(src)), None)
    )
    if reader is None:
        raise InputError(f"{src}: not a labelled-video source ({', '.join(LABEL_FORMATS)})")
    opts = ReadOptions(path_column, label_column, video_root, split, subset)
    rows, order = reader.rows(src, opts)  # paths absolute, or as written: relative to the root
    root = opts.root(src)
    rows = [r if Path(r.path).is_absolute() else r._replace(path=str(root / r.path)) for r in rows]
    multilabel = any(sep in r.label for r in rows for sep in _MULTI_SEPARATORS)

    def split_labels(lab: str) -> List[str]:
        for sep in _MULTI_SEPARATORS:
            lab = lab.replace(sep, "|")
        return [x.strip() for x in lab.split("|") if x.strip()]

    if classes is None and order is not None:
        classes = order
    if classes is None:
        names = sorted({x for r in rows for x in split_labels(r.label)})
        classes = [str(i) for i in range(max(int(x) for x in names) + 1)] if all(map(_is_int, names)) else names
    classes = [str(c) for c in classes]
    index: Dict[str, int] = {c: i for i, c in enumerate(classes)}
    samples, excluded, left_out = [], Counter(), []
    for r in rows:
        if exclude and resolved(r.path) in exclude:
            left_out.append(r.path)
            continue
        labels, unknown = [], []
        for x in split_labels(r.label):
            i = index.get(x, int(x) if _is_int(x) and 0 <= int(x) < len(classes) else None)
            (unknown.append(x) if i is None else labels.append(i))
        if unknown and exclude_unknown:
            excluded.update(unknown)
            continue
        if unknown:
            where = f"{r.file or src}:{r.line}" if r.line else str(r.path)
            shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
            raise InputError(
                f"{where}: label {unknown[0]!r} is not one of the {len(classes)} classes ({shown}); fix the label, "
                f"or leave such rows out with --exclude-unknown"
            )
        fps = r.frames_fps or reader.frames_fps
        samples.append(Sample(r.path, tuple(labels), r.start, r.end, fps, r.key, r.annotation))
    missing = [s.path for s in samples if not Path(s.path).exists()]
    if samples and len(missing) == len(samples):
        raise InputError(
            f"{src}: none of the {len(samples)} listed videos exist (first: {missing[0]}); the videos were looked for "
            f"under {root} ({'--video-root' if video_root else 'the folder of ' + src.name}); give the folder that "
            f"holds them with --video-root"
        )
    which = "all its" if subset == "all" else f"its {subset}"
    part = f"split {split}, {which} videos" if reader.name == "hmdb51" else None
    data = LabelledVideos(
        samples, classes, multilabel, str(src), missing, dict(excluded), left_out, reader.name, frames_fps, part
    )
    if not samples:
        raise InputError(f"{src}: no videos left ({data.describe()})")
    return data


def video_items(data: LabelledVideos) -> List[VideoItem]:
    """Each sample as a video to extract, named by the dataset's key (EPIC's narration_id, Kinetics' clip name, an
    SSv2 id), else by its path under the videos' common folder (without extension), a segment's times appended
    (``<name>@<start>-<end>``). A sample listed twice is extracted once; two samples under one name are an error."""
    paths = [os.path.abspath(s.path) for s in data.samples]
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    items: Dict[str, VideoItem] = {}
    for s, p in zip(data.samples, paths):
        name = s.key
        if name is None:
            relative = Path(os.path.relpath(p, root))
            name = (relative if Path(p).is_dir() else relative.with_suffix("")).as_posix()
            if s.segment:
                name += f"@{s.start or 0:g}-{'end' if s.end is None else f'{s.end:g}'}"
        item = VideoItem(s.path, name, s.start, s.end, data.fps_of(s), s.annotation)
        if items.setdefault(name, item) != item:
            raise InputError(f"{data.source}: {items[name].path} and {s.path} are both named {name!r}; rename one")
    return list(items.values())


def segment_span(sample: Union[Sample, VideoItem], duration: float) -> Tuple[float, float]:
    """(start, length) in seconds of the part of a video of ``duration`` seconds that ``sample`` covers."""
    start = sample.start or 0.0
    end = duration if sample.end is None else min(sample.end, duration)
    if start >= duration:
        raise VideoDecodeError(
            f"{sample.path}: the segment {start:g}-{sample.end:g} s starts after the video ends ({duration:g} s)"
        )
    return start, max(0.0, end - start)


def segment_end(sample: Sample, offset: float, length: float) -> Optional[float]:
    """Where a segment's clips must stop (frames after it belong to the next action); None for a whole video."""
    return offset + length if sample.end is not None else None


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
                with open_video(sample.path, self.spec, self.decoder, frames_fps=self.data.fps_of(sample)) as r:
                    offset, length = segment_span(sample, r.info.duration)
                    start = offset + random_clip(length, self.spec.clip_seconds(r.info.fps), g).start
                    clip = r.read_spec_clip(start, self.spec, end=segment_end(sample, offset, length)).frames
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
            with open_video(sample.path, self.spec, self.decoder, frames_fps=self.data.fps_of(sample)) as r:
                offset, length = segment_span(sample, r.info.duration)
                clips = uniform_clips(length, self.spec.clip_seconds(r.info.fps), self.num_clips)
                clips = [c._replace(start=c.start + offset, end=c.end + offset) for c in clips]
                end = segment_end(sample, offset, length)
                frames = torch.stack([f.frames for _, f in r.iter_clips(clips, self.spec, end=end)])
                return frames, label_tensor(sample, self.data), i, ""
        except VideoDecodeError as e:
            return torch.zeros(0, dtype=torch.uint8), label_tensor(sample, self.data), i, str(e)


def label_tensor(sample: Sample, data: LabelledVideos) -> torch.Tensor:
    if data.multilabel:
        target = torch.zeros(len(data.classes))
        target[list(sample.labels)] = 1.0
        return target
    return torch.tensor(sample.labels[0])
